"""Staff identities: which Microsoft account (tenant + object id) is which user."""

from django.conf import settings
from django.db import models


class StaffIdentity(models.Model):
    """A Microsoft Entra account of the MSSP's own tenant, linked to one portal user.

    Linked on the first "Sign in with Microsoft"; grants no access by itself (access
    comes from customer assignments, directly or through a group).
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="microsoft_identity",
    )
    tenant_id = models.UUIDField(help_text="The `tid` claim: the MSSP's tenant.")
    object_id = models.UUIDField(help_text="The `oid` claim: the account, for good.")
    username = models.CharField(
        max_length=255, help_text="The `preferred_username` at the last sign-in."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_sign_in_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "partnerportal_staffidentity"
        verbose_name_plural = "staff identities"
        constraints = [
            models.UniqueConstraint(
                fields=["tenant_id", "object_id"],
                name="staffidentity_unique_tenant_object",
            )
        ]

    def __str__(self) -> str:
        return self.username

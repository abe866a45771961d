"""What every app records: the audit trail and the alarms that concern every tenant.

`AuditEvent` names a customer and a tenant by string reference: core never imports the
tenants app (the table keeps its name, `tenants_auditevent`, from before the move).
"""

from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """Who did what to which customer or tenant, and when; never edited."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Empty for the system and for anonymous visitors.",
    )
    action = models.CharField(max_length=64)
    customer = models.ForeignKey(
        "tenants.Customer",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    tenant = models.ForeignKey(
        "tenants.Tenant",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    detail = models.TextField(blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "tenants_auditevent"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.action}"


class Alarm(models.Model):
    """A problem that concerns every tenant at once, e.g. our partner credential."""

    class Kind(models.TextChoices):
        PARTNER_CREDENTIAL = "partner_credential", "Partner app credential"

    kind = models.CharField(max_length=32, choices=Kind, unique=True)
    message = models.TextField()
    raised_at = models.DateTimeField()
    cleared_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "tenants_alarm"

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.message}"

    @property
    def is_active(self) -> bool:
        return self.cleared_at is None

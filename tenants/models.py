"""Customers of the MSSP and the Microsoft Entra tenants they consented for."""

import uuid

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Q

from tenants.microsoft import sources


class CustomerQuerySet(models.QuerySet):
    def visible_to(self, user) -> "CustomerQuerySet":
        """Customers this staff member may see: all for superusers, else assigned."""
        if not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_superuser:
            return self
        return self.filter(
            Q(staff=user) | Q(staff_groups__in=user.groups.all())
        ).distinct()


class Customer(models.Model):
    """A customer organisation of the MSSP."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200, unique=True)
    contact_email = models.EmailField(blank=True)
    expected_tenant = models.CharField(
        max_length=255,
        blank=True,
        help_text="Tenant ID (GUID) or primary domain, when known before consent.",
    )
    staff = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="customers"
    )
    staff_groups = models.ManyToManyField(Group, blank=True, related_name="customers")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = CustomerQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Tenant(models.Model):
    """A customer's Microsoft Entra tenant that consented to the partner app."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        CONSENTED = "consented", "Consented, checking access"
        VERIFIED = "verified", "Verified"
        REVOKED = "revoked", "Consent revoked"
        FAILING = "failing", "Failing"

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    customer = models.ForeignKey(
        Customer, on_delete=models.PROTECT, related_name="tenants"
    )
    tenant_id = models.UUIDField(unique=True, help_text="Microsoft Entra tenant ID.")
    display_name = models.CharField(max_length=200, blank=True)
    primary_domain = models.CharField(max_length=255, blank=True)
    # A callable: the documented geos live in the registry.
    region = models.CharField(
        max_length=8,
        blank=True,
        choices=sources.geo_choices,
        help_text="Defender for Endpoint API geography (its geo host); blank for the "
        "global host.",
    )
    mcas_url = models.URLField(
        "Cloud Apps API URL",
        blank=True,
        help_text="https://<tenant>.<region>.portal.cloudappsecurity.com, from the "
        "customer's Defender portal (Settings, Cloud Apps, About).",
    )
    state = models.CharField(max_length=16, choices=State, default=State.PENDING)
    last_error = models.TextField(blank=True)
    consented_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["customer__name", "display_name"]

    def __str__(self) -> str:
        return self.display_name or str(self.tenant_id)

    @property
    def facts(self) -> sources.TenantFacts:
        """What the Microsoft client needs to know of this tenant."""
        return sources.TenantFacts(
            tenant_id=str(self.tenant_id),
            region=self.region or None,
            mcas_url=self.mcas_url or None,
        )


class ConsentLink(models.Model):
    """An admin-consent link sent to a customer; its state is stored only hashed."""

    class Outcome(models.TextChoices):
        WAITING = "waiting", "Waiting for the customer"
        CONSENTED = "consented", "Consented"
        REFUSED = "refused", "Refused by the customer's admin"
        FAILED = "failed", "Microsoft reported an error"
        REJECTED = "rejected", "Rejected: the callback did not match"

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="consent_links"
    )
    state_hash = models.CharField(max_length=64, unique=True, editable=False)
    pinned_tenant = models.UUIDField(
        null=True, blank=True, help_text="Only this tenant may consent through it."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome, default=Outcome.WAITING)
    outcome_detail = models.TextField(blank=True)
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Consent link for {self.customer} ({self.get_outcome_display()})"

    @property
    def is_open(self) -> bool:
        from django.utils import timezone

        return (
            self.used_at is None
            and self.withdrawn_at is None
            and self.expires_at > timezone.now()
        )


class Capability(models.Model):
    """What the portal proved it can read from one source of one tenant."""

    class Status(models.TextChoices):
        OK = "ok", "Connected"
        MISSING_PERMISSION = "missing_permission", "Missing permission"
        NOT_LICENSED = "not_licensed", "Not licensed or not provisioned"
        NOT_CONFIGURED = "not_configured", "Not configured"
        ERROR = "error", "Error"
        # The tenant's consent is gone: nothing can be read, whatever the last check
        # found (set on every source by ``services.mark_tenant_revoked``).
        CONSENT_REVOKED = "consent_revoked", "Consent revoked"

    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="capabilities"
    )
    # A callable: a new source in the registry needs no migration.
    source = models.CharField(max_length=32, choices=sources.choices)
    status = models.CharField(max_length=32, choices=Status)
    detail = models.TextField(blank=True)
    granted_roles = models.JSONField(default=list, blank=True)
    missing_roles = models.JSONField(default=list, blank=True)
    checked_at = models.DateTimeField()

    class Meta:
        ordering = ["tenant", "source"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "source"], name="capability_unique_tenant_source"
            )
        ]

    def __str__(self) -> str:
        return f"{self.tenant}: {self.get_source_display()} {self.get_status_display()}"

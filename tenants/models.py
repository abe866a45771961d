"""Customers of the MSSP and the Microsoft Entra tenants they consented for."""

import uuid

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Q


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
    region = models.CharField(
        max_length=8, blank=True, help_text="Defender API geography (us, eu, uk, ...)."
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

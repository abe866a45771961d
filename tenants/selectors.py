"""Reads of tenant data, always scoped to what the signed-in staff member may see."""

from django.db.models import Prefetch, QuerySet

from tenants.models import Customer, Tenant


def list_customers(*, user) -> QuerySet[Customer]:
    """Customers visible to `user`, each with its tenants prefetched."""
    return Customer.objects.visible_to(user).prefetch_related(
        Prefetch("tenants", queryset=Tenant.objects.order_by("display_name"))
    )

"""Reads of tenant data, always scoped to what the signed-in staff member may see."""

from django.db.models import Prefetch, QuerySet
from django.http import Http404

from tenants.models import Alarm, AuditEvent, Capability, ConsentLink, Customer, Tenant


def list_customers(*, user) -> QuerySet[Customer]:
    """Customers visible to `user`, each with its tenants prefetched."""
    return Customer.objects.visible_to(user).prefetch_related(
        Prefetch("tenants", queryset=Tenant.objects.order_by("display_name"))
    )


def get_customer(*, user, code) -> Customer:
    """One customer visible to `user`; 404 for any other, existing or not."""
    customer = Customer.objects.visible_to(user).filter(code=code).first()
    if customer is None:
        raise Http404("No such customer.")
    return customer


def get_tenant(*, user, code) -> Tenant:
    customers = Customer.objects.visible_to(user)
    tenant = (
        Tenant.objects.select_related("customer")
        .filter(code=code, customer__in=customers)
        .first()
    )
    if tenant is None:
        raise Http404("No such tenant.")
    return tenant


def get_consent_link(*, customer: Customer, code) -> ConsentLink:
    link = customer.consent_links.filter(code=code).first()
    if link is None:
        raise Http404("No such consent link.")
    return link


def customer_overview(*, customer: Customer) -> dict:
    """Everything the customer page shows, in a fixed number of queries."""
    tenants = list(
        customer.tenants.prefetch_related(
            Prefetch("capabilities", queryset=Capability.objects.order_by("source"))
        )
    )
    return {
        "customer": customer,
        "tenants": tenants,
        "links": list(customer.consent_links.select_related("created_by", "tenant")),
        "events": list(
            AuditEvent.objects.filter(customer=customer).select_related(
                "actor", "tenant"
            )[:50]
        ),
    }


def get_consent_progress(*, link_code) -> dict:
    """What the customer's admin may see after consenting: their own tenant only."""
    link = ConsentLink.objects.select_related("tenant").filter(code=link_code).first()
    if link is None or link.tenant is None:
        raise Http404("No such consent.")
    tenant = link.tenant
    return {
        "link": link,
        "tenant": tenant,
        "capabilities": list(tenant.capabilities.order_by("source")),
        "checking": tenant.state == Tenant.State.CONSENTED,
    }


def active_alarms() -> list[Alarm]:
    return list(Alarm.objects.filter(cleared_at__isnull=True))

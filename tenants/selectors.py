"""Reads of customers, tenants and consent, always scoped to what the signed-in staff
member may see (`Customer.objects.visible_to(user)`); `scoped` and `scope_key` give the
other apps the same scope."""

from django.db.models import CharField, Prefetch, QuerySet
from django.db.models.functions import Cast
from django.http import Http404

from core import shared
from core.models import AuditEvent
from tenants.models import Capability, ConsentLink, Customer, Tenant


def list_customers(*, user) -> QuerySet[Customer]:
    """Customers visible to `user`, each with its tenants prefetched."""
    return Customer.objects.visible_to(user).prefetch_related(
        Prefetch("tenants", queryset=Tenant.objects.order_by("display_name"))
    )


def list_customer_choices(*, user, scope: str) -> list[tuple[str, str]]:
    """(code, name) of the customers `user` may see, for the queue's menu: shared
    for a few seconds (core.shared) by the requests of one scope (`scope_key`), so a
    customer added or renamed shows there within seconds. The code comes as text:
    Postgres writes it faster than Python builds and prints UUID objects, hundreds
    of them on every queue page."""
    return shared.get_shared(
        "customer-menu",
        (scope,),
        lambda: list(
            Customer.objects.visible_to(user).values_list(
                Cast("code", output_field=CharField()), "name"
            )
        ),
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


# --- Scope ----------------------------------------------------------------------------


def scoped(queryset: QuerySet, user, path: str = "tenant__customer") -> QuerySet:
    """`queryset` narrowed to the customers `user` may see (nothing for anonymous or
    inactive users; no narrowing, hence no extra join, for superusers)."""
    if user.is_active and user.is_superuser:
        return queryset
    return queryset.filter(**{f"{path}__in": Customer.objects.visible_to(user)})


def scope_key(user) -> str:
    """Which alerts `user` sees, as a cache key: every customer's for superusers,
    else the ids of the customers they see. A key names these customers, not the
    user: a change of assignment is a new key, so nobody is shown anything outside
    their scope from the cache."""
    if user.is_active and user.is_superuser:
        return "all"
    return ",".join(
        map(
            str,
            Customer.objects.visible_to(user)
            .order_by("pk")
            .values_list("pk", flat=True),
        )
    )

"""Reads of sync health: per tenant and source, consent, capability, the last good
sync, lag, throttling and the last error in words; scoped to what the signed-in staff
member may see."""

from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django.utils.timesince import timesince

from core import shared
from sync.models import SyncState
from tenants import selectors as tenant_selectors
from tenants.microsoft import sources
from tenants.models import Capability, Customer, Tenant

# A source that has not synced successfully for this long is called stale.
STALE_AFTER = timedelta(minutes=30)


@dataclass
class SourceHealth:
    source: str
    label: str
    capability: Capability | None
    sync: SyncState | None
    problem: str


@dataclass
class TenantProblem:
    tenant: Tenant
    problems: list[str]
    sources: list[SourceHealth] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _lag_words(moment, now) -> str:
    if moment is None:
        return "never"
    return f"{timesince(moment, now)} ago"


# A tenant in these states syncs nothing, whatever its sources last looked like.
HALTED = (Tenant.State.REVOKED, Tenant.State.FAILING)


def _source_health(tenant: Tenant, now) -> list[SourceHealth]:
    caps = {c.source: c for c in tenant.capabilities.all()}
    syncs = {s.source: s for s in tenant.syncs.all()}
    rows = []
    for value, label in sources.choices():
        cap, sync = caps.get(value), syncs.get(value)
        problem = ""
        if tenant.state in HALTED:
            problem = f"Not syncing: {tenant.get_state_display().lower()}"
        elif cap is not None and cap.status != Capability.Status.OK:
            if cap.status != Capability.Status.NOT_CONFIGURED:
                problem = cap.detail or cap.get_status_display()
        elif sync is not None:
            if sync.throttled_until and sync.throttled_until > now:
                problem = (
                    f"Throttled by Microsoft until {sync.throttled_until:%H:%M:%S} UTC"
                )
            elif sync.last_error and (
                sync.last_success_at is None
                or (sync.last_error_at and sync.last_error_at >= sync.last_success_at)
            ):
                problem = sync.last_error
            elif (
                sync.last_success_at is None or sync.last_success_at < now - STALE_AFTER
            ):
                lag = _lag_words(sync.last_success_at, now)
                problem = f"Stale: last successful sync {lag}"
        elif cap is not None:
            problem = "Not syncing yet"
        if cap is None and sync is None:
            continue
        rows.append(SourceHealth(value, label, cap, sync, problem))
    return rows


def _tenant_problems(tenant: Tenant, now) -> TenantProblem:
    sources = _source_health(tenant, now)
    problems = []
    if tenant.state != Tenant.State.VERIFIED:
        problems.append(
            f"{tenant.get_state_display()}"
            + (f": {tenant.last_error}" if tenant.last_error else "")
        )
    problems += [f"{s.label}: {s.problem}" for s in sources if s.problem]
    if tenant.state == Tenant.State.VERIFIED and not sources:
        problems.append("No source is connected yet")
    return TenantProblem(tenant=tenant, problems=problems, sources=sources)


def tenant_health(*, user) -> list[TenantProblem]:
    """Every tenant `user` may see with its sources' health, problems first."""
    now = timezone.now()
    tenants = (
        tenant_selectors.scoped(Tenant.objects.all(), user, path="customer")
        .select_related("customer")
        .prefetch_related("capabilities", "syncs")
        .order_by("customer__name", "display_name")
    )
    rows = [_tenant_problems(t, now) for t in tenants]
    # Revoked and failing tenants first, then any other problem, then the rest.
    rows.sort(
        key=lambda r: (
            r.tenant.state not in HALTED,
            r.ok,
            r.tenant.customer.name,
            str(r.tenant),
        )
    )
    return rows


def list_stale_tenants(
    *, user, customer: Customer | None = None, limit: int = 8
) -> tuple[list[TenantProblem], int]:
    """Tenants whose alerts may be missing from the queue (not verified, never
    synced, stale, throttled or failing), at most `limit`, and how many in all."""
    now = timezone.now()
    tenants = tenant_selectors.scoped(Tenant.objects.all(), user, path="customer")
    if customer is not None:
        tenants = tenants.filter(customer=customer)
    # Hashed sub-plans over the small SyncState table: one pass over the tenants.
    problem_syncs = SyncState.objects.filter(
        Q(last_success_at__isnull=True)
        | Q(last_success_at__lt=now - STALE_AFTER)
        | Q(throttled_until__gt=now)
    ).values("tenant_id")
    synced = SyncState.objects.values("tenant_id")
    suspect = tenants.filter(
        ~Q(state=Tenant.State.VERIFIED) | Q(pk__in=problem_syncs) | ~Q(pk__in=synced)
    ).exclude(state=Tenant.State.PENDING)
    found = list(
        suspect.select_related("customer")
        .prefetch_related("capabilities", "syncs")
        .order_by("customer__name", "display_name")[: limit + 1]
    )
    total = len(found) if len(found) <= limit else suspect.count()
    return [_tenant_problems(t, now) for t in found[:limit]], total


def shared_stale_tenants(
    *, user, scope: str, customer: Customer | None
) -> tuple[list[TenantProblem], int]:
    """`list_stale_tenants` for the queue, shared for a few seconds (core.shared) by
    every request of the same scope (tenants.selectors.scope_key; the queue polls
    every 15 s per open tab)."""
    return shared.get_shared(
        "queue-stale",
        (scope, customer and customer.pk),
        lambda: list_stale_tenants(user=user, customer=customer),
    )


# --- What is synced -------------------------------------------------------------------


#: Capability states a source is synced in: connected, or a check that only met a
#: passing failure (throttled, unavailable); its next successful run clears that.
SYNCED_CAPABILITIES = (Capability.Status.OK, Capability.Status.ERROR)


def eligible() -> Q:
    """Sync states whose tenant is verified and whose source is connected (or its
    last check failed for a passing reason)."""
    connected = Capability.objects.filter(
        tenant=OuterRef("tenant"),
        source=OuterRef("source"),
        status__in=SYNCED_CAPABILITIES,
    )
    return Q(tenant__state=Tenant.State.VERIFIED) & Q(Exists(connected))

"""Writes of the sync app: scheduling (which (tenant, source) is due), staff's "sync
now" and token refresh, and the sync states a verified tenant's sources get."""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.dispatch import receiver
from django.utils import timezone

from core import services as core_services
from sync import selectors, tasks
from sync.models import SyncState
from tenants import microsoft, signals
from tenants.models import Tenant


def dispatch_due_syncs(*, limit: int | None = None) -> list[int]:
    """Queues one sync task per due (tenant, source); returns their SyncState ids.

    Due: eligible, ``next_due_at`` passed, not throttled, lease free. Picked rows are
    pushed ``SYNC_LEASE_SECONDS`` ahead under ``FOR UPDATE SKIP LOCKED``, so a second
    beat (or the next tick while the queue is long) does not queue them again; a
    queued run that never starts (its worker died) is due again after that.
    """
    now = timezone.now()
    limit = limit or settings.SYNC_DISPATCH_BATCH
    with transaction.atomic():
        due = (
            SyncState.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(selectors.eligible())
            .filter(next_due_at__lte=now)
            .filter(Q(throttled_until__isnull=True) | Q(throttled_until__lte=now))
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .order_by("next_due_at")
            .values_list("id", flat=True)[:limit]
        )
        ids = list(due)
        if ids:
            SyncState.objects.filter(id__in=ids).update(
                next_due_at=now + timedelta(seconds=settings.SYNC_LEASE_SECONDS)
            )
            for state_id in ids:
                tasks.sync_source.delay_on_commit(state_id)
    return ids


@transaction.atomic
def request_sync(*, actor, sync_state: SyncState) -> None:
    """Staff asked for a sync now: due now, queued now, audited."""
    SyncState.objects.filter(pk=sync_state.pk).update(
        next_due_at=timezone.now(), throttled_until=None
    )
    core_services.audit(
        action="sync.requested",
        actor=actor,
        tenant=sync_state.tenant,
        detail=sync_state.get_source_display(),
    )
    tasks.sync_source.delay_on_commit(sync_state.pk)


def refresh_tenant_tokens(*, actor, tenant: Tenant) -> None:
    """Drops the tenant's shared tokens: the next call of any worker asks Entra ID."""
    microsoft.get_client().forget_tenant(str(tenant.tenant_id))
    core_services.audit(action="sync.tokens_dropped", actor=actor, tenant=tenant)


@receiver(signals.tenant_verified)
def ensure_sync_states(
    *, tenant: Tenant, sources, again: bool = False, **kwargs
) -> None:
    """One SyncState per source the tenant can be read from; a new one is due now,
    and a tenant back from revoked or failing syncs now, not when the backoff of the
    failures before says."""
    now = timezone.now()
    for source in sources:
        SyncState.objects.get_or_create(
            tenant=tenant, source=source, defaults={"next_due_at": now}
        )
    if again:
        SyncState.objects.filter(tenant=tenant).update(
            next_due_at=now, consecutive_failures=0
        )

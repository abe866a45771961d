"""Celery tasks: take ids, re-fetch, call one service, decide about retrying."""

import logging
import random

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError
from redis import RedisError

from tenants import services
from tenants.models import Tenant

logger = logging.getLogger(__name__)

# 20 tries, TENANT_VERIFY_RETRY_SECONDS (15 s) apart: about the five minutes a new
# consent may take to replicate at Microsoft.
VERIFY_MAX_RETRIES = 20


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=VERIFY_MAX_RETRIES,
    soft_time_limit=120,
    time_limit=150,
)
def verify_tenant(self, tenant_pk: int) -> None:
    """Proves (again) that the portal can read this tenant; records what it can read."""
    tenant = Tenant.objects.select_related("customer").filter(pk=tenant_pk).first()
    if tenant is None or tenant.state == Tenant.State.PENDING:
        return
    try:
        services.verify_tenant_access(tenant=tenant)
    except services.ConsentNotYetReplicated as exc:
        if self.request.retries >= self.max_retries:
            services.mark_tenant_unverifiable(
                tenant=tenant,
                reason=f"Consent was reported, but Microsoft still refuses a token "
                f"after several minutes: {exc}",
            )
            return
        raise self.retry(countdown=settings.TENANT_VERIFY_RETRY_SECONDS) from None
    except services.TransientFailure as exc:
        if self.request.retries >= self.max_retries:
            services.mark_tenant_unverifiable(
                tenant=tenant, reason=f"Verification kept failing: {exc}"
            )
            return
        backoff = min(300, 10 * 2 ** min(self.request.retries, 5))
        countdown = exc.retry_after or backoff * random.uniform(0.8, 1.2)  # noqa: S311
        raise self.retry(countdown=countdown) from None


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=8,
    soft_time_limit=60,
    time_limit=90,
)
def write_back_triage(self, triage_action_id: int) -> None:
    """Writes one staff triage change back to Defender or Graph (re-reading first)."""
    from tenants import triage
    from tenants.microsoft import schemas
    from tenants.models import TriageAction

    action = (
        TriageAction.objects.select_related("alert__tenant", "actor")
        .filter(pk=triage_action_id)
        .first()
    )
    if action is None or action.status != TriageAction.Status.QUEUED:
        return
    try:
        triage.apply_triage(action=action)
    except (schemas.Throttled, schemas.Unavailable) as exc:
        if self.request.retries >= self.max_retries:
            triage.record_triage_failure(
                action=action, reason=f"Microsoft kept failing: {exc.message}"
            )
            return
        backoff = min(120, 5 * 2 ** min(self.request.retries, 5))
        countdown = getattr(exc, "retry_after", None) or backoff * random.uniform(
            0.8, 1.2
        )
        raise self.retry(countdown=countdown) from None


# --- Sync -----------------------------------------------------------------------------


@shared_task(ignore_result=True, soft_time_limit=30, time_limit=45)
def dispatch_due_syncs() -> None:
    """Beat's fan-out: queues one sync_source per due (tenant, source)."""
    from tenants import sync

    sync.dispatch_due_syncs()


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    # Our own infrastructure hiccups (database, Redis): try again with backoff.
    # Microsoft's failures are recorded by the service and rescheduled via
    # next_due_at, so they hold no worker slot.
    autoretry_for=(DatabaseError, RedisError),
    retry_backoff=5,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=5,
    soft_time_limit=300,
    time_limit=330,
)
def sync_source(self, sync_state_id: int) -> None:
    """One sync of one (tenant, source); safe to run twice (lease, newer-wins)."""
    from tenants import sync

    result = sync.sync_source(sync_state_id=sync_state_id)
    if result.retry_after is not None and self.request.retries < 3:
        # Throttled by Microsoft: come back when it said, not earlier.
        countdown = result.retry_after * random.uniform(1.0, 1.2)  # noqa: S311
        raise self.retry(countdown=countdown, max_retries=3)

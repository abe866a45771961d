"""Celery tasks of the sync app: beat's fan-out and one sync of one (tenant, source).
Task names are those of before the apps were split, so queued messages and beat
entries still resolve."""

import random

from celery import shared_task
from django.db import DatabaseError
from redis import RedisError

from sync import runner, services


@shared_task(
    name="tenants.tasks.dispatch_due_syncs",
    ignore_result=True,
    soft_time_limit=30,
    time_limit=45,
)
def dispatch_due_syncs() -> None:
    """Beat's fan-out: queues one sync_source per due (tenant, source)."""
    services.dispatch_due_syncs()


@shared_task(
    name="tenants.tasks.sync_source",
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
    result = runner.sync_source(sync_state_id=sync_state_id)
    if result.retry_after is not None and self.request.retries < 3:
        # Throttled by Microsoft: come back when it said, not earlier.
        countdown = result.retry_after * random.uniform(1.0, 1.2)  # noqa: S311
        raise self.retry(countdown=countdown, max_retries=3)

"""Tasks that keep an eye on the task system itself."""

import time

from celery import shared_task

from core import services


@shared_task(
    name="partnerportal.tasks.canary",
    ignore_result=False,
    acks_late=True,
    reject_on_worker_lost=True,
)
def canary(sent_at: float) -> dict:
    """Answers the health check's round trip through the broker."""
    return {"sent_at": sent_at, "answered_at": time.time()}


@shared_task(
    name="partnerportal.tasks.record_beat_heartbeat",
    acks_late=True,
    reject_on_worker_lost=True,
)
def record_beat_heartbeat() -> None:
    """Lets /healthz see that the one beat scheduler is alive."""
    services.record_beat_heartbeat()

"""Celery tasks of the alerts app: take ids, re-fetch, call one service, decide about
retrying. Task names are those of before the apps were split, so queued messages
still resolve."""

from celery import shared_task

from alerts import triage
from alerts.models import TriageAction
from core import backoff, quotas
from tenants.microsoft import schemas


@shared_task(
    name="tenants.tasks.write_back_triage",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=8,
    soft_time_limit=60,
    time_limit=90,
)
def write_back_triage(self, triage_action_id: int) -> None:
    """Writes one staff triage change back to Defender or Graph (re-reading first)."""
    action = (
        TriageAction.objects.select_related("alert__tenant", "actor")
        .filter(pk=triage_action_id)
        .first()
    )
    if action is None or action.status != TriageAction.Status.QUEUED:
        return
    try:
        triage.apply_triage(action=action)
    except (schemas.Throttled, schemas.Unavailable, quotas.QuotaExhausted) as exc:
        if self.request.retries >= self.max_retries:
            reason = (
                exc.message
                if isinstance(exc, quotas.QuotaExhausted)
                else f"Microsoft kept failing: {exc.message}"
            )
            triage.record_triage_failure(action=action, reason=reason)
            return
        countdown = getattr(exc, "retry_after", None) or backoff.backoff_seconds(
            self.request.retries + 1, base=5, cap=120
        )
        raise self.retry(countdown=countdown) from None

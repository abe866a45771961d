"""Triage: staff changes to an alert, written back to the source that owns it.

`request_triage` records the change and enqueues the write-back; `apply_triage` (run by
the task) re-reads the alert from its source first (through the source registry's
``WriteBack`` for the alert's ``source``: read, body spelling, PATCH). If it changed
there since the page staff looked at was loaded, nothing is overwritten: the action
records what changed instead. Otherwise it PATCHes, then updates the local row and
audits.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from alerts import normalize, tasks
from alerts.models import Alert, AlertChange, AlertStatus, TriageAction
from core import services as core_services
from tenants import microsoft
from tenants import quotas as tenant_quotas
from tenants.microsoft import schemas, sources

logger = logging.getLogger(__name__)

# The portal's values (alerts.normalize: Graph's spelling in snake case) and labels.
CLASSIFICATIONS = {
    "true_positive": "True positive",
    "false_positive": "False positive",
    "informational_expected_activity": "Informational, expected activity",
}
DETERMINATIONS = {
    "malware": "Malware",
    "phishing": "Phishing",
    "multi_staged_attack": "Multi-staged attack",
    "malicious_user_activity": "Malicious user activity",
    "compromised_account": "Compromised account",
    "unwanted_software": "Unwanted software",
    "apt": "Advanced persistent threat",
    "security_testing": "Security testing",
    "line_of_business_application": "Line-of-business application",
    "confirmed_activity": "Confirmed activity",
    "security_personnel": "Security personnel",
    "not_malicious": "Not malicious",
    "not_enough_data_to_validate": "Not enough data to validate",
    "other": "Other",
}
# The statuses staff may set (each write-back spells them its own way).
STATUSES = (AlertStatus.NEW, AlertStatus.IN_PROGRESS, AlertStatus.RESOLVED)
# Fields a triage action may change on the local row.
LOCAL_FIELDS = ("status", "assigned_to", "classification", "determination")


class TriageRefused(Exception):
    """The change cannot be written back (e.g. a source without a write API)."""


def _write_back(source: str) -> sources.WriteBack:
    write_back = sources.write_back_for(source)
    if write_back is None:
        raise TriageRefused(f"{source} alerts have no write-back")
    return write_back


def source_changes(source: str, changes: dict[str, str], comment: str) -> dict:
    """The PATCH body for alerts of ``source`` (an ``Alert.Source`` value) in the
    spelling of the API that takes it; ``TriageRefused`` if none does."""
    return _write_back(source).body(changes, comment)


def parse_source_time(value: Any) -> datetime | None:
    """A Microsoft timestamp as an aware datetime (the sync's own parser)."""
    return normalize.parse_time(value)


# --- staff side -----------------------------------------------------------------------


@transaction.atomic
def request_triage(
    *,
    actor,
    alert: Alert,
    based_on_updated_at: datetime,
    changes: dict[str, str],
    comment: str = "",
) -> TriageAction:
    """Records the change staff asked for and enqueues its write-back on commit."""
    if sources.write_back_for(alert.source) is None:
        raise TriageRefused(
            f"{alert.get_source_display()} alerts cannot be changed from the portal "
            "yet; use the link to the Defender portal."
        )
    action = TriageAction.objects.create(
        alert=alert,
        actor=actor,
        based_on_updated_at=based_on_updated_at,
        changes=changes,
        comment=comment,
    )
    core_services.audit(
        action="alert.triage_requested",
        actor=actor,
        tenant=alert.tenant,
        detail=f"{alert.source} alert {alert.provider_id}: {_describe(changes)}"
        + (" + comment" if comment else ""),
    )
    tasks.write_back_triage.delay_on_commit(action.pk)
    return action


def _describe(changes: dict[str, str]) -> str:
    return ", ".join(f"{k}={v or '(none)'}" for k, v in sorted(changes.items()))


# --- worker side ----------------------------------------------------------------------


def _take_call(alert: Alert) -> None:
    """One call from the tenant's quota for the alert's API, the one the sync
    counts in too; ``QuotaExhausted`` when none frees within the bound (the task
    retries when it frees)."""
    source = sources.writing_source(alert.source)
    if source is None:
        raise TriageRefused(f"{alert.source} alerts have no write-back")
    tenant_quotas.take_call(str(alert.tenant.tenant_id), source)


def _read_source(alert: Alert) -> dict[str, Any]:
    _take_call(alert)
    return _write_back(alert.source).read(
        microsoft.get_client(), alert.tenant.facts, alert.provider_id
    )


def _write_source(alert: Alert, body: dict) -> dict[str, Any]:
    _take_call(alert)
    return _write_back(alert.source).write(
        microsoft.get_client(), alert.tenant.facts, alert.provider_id, body
    )


def _updated_at(payload: dict) -> datetime | None:
    return parse_source_time(
        payload.get("lastUpdateTime") or payload.get("lastUpdateDateTime")
    )


_SHOWN_FIELDS = (
    ("status", "status"),
    ("assignedTo", "assigned to"),
    ("classification", "classification"),
    ("determination", "determination"),
)


def _conflict_detail(alert: Alert, payload: dict, updated: datetime) -> str:
    """What Defender holds now, in words, for the staff member who lost the race."""
    now_there = "; ".join(
        f"{label}: {payload.get(key) or '(none)'}" for key, label in _SHOWN_FIELDS
    )
    return (
        f"Not applied: the alert changed in {alert.get_source_display()} at "
        f"{updated:%Y-%m-%d %H:%M:%S} UTC, after you loaded it. Nothing was "
        f"overwritten. It now has {now_there}. Reload the alert and decide again."
    )


def apply_triage(*, action: TriageAction) -> TriageAction:
    """Re-reads, then writes back (or records the conflict). Transient Microsoft errors
    (`Throttled`, `Unavailable`) and an exhausted quota (`core.quotas.QuotaExhausted`)
    propagate for the task to retry; others are recorded.
    Safe to run twice: a finished action is left alone."""
    if action.status != TriageAction.Status.QUEUED:
        return action
    alert = action.alert
    try:
        current = _read_source(alert)
        updated = _updated_at(current)
        if updated is not None and updated > action.based_on_updated_at:
            return _finish(
                action,
                TriageAction.Status.CONFLICT,
                _conflict_detail(alert, current, updated),
            )
        body = source_changes(alert.source, action.changes, action.comment)
        written = _write_source(alert, body) if body else current
    except (schemas.Throttled, schemas.Unavailable):
        raise
    except schemas.MicrosoftError as exc:
        return _finish(action, TriageAction.Status.FAILED, exc.message)
    return _applied(action, written)


@transaction.atomic
def _applied(action: TriageAction, written: dict) -> TriageAction:
    locked = TriageAction.objects.select_for_update().get(pk=action.pk)
    if locked.status != TriageAction.Status.QUEUED:
        return locked
    alert = (
        Alert.objects.select_for_update()
        .select_related("tenant")
        .get(pk=action.alert_id)
    )
    diff = {}
    for field in LOCAL_FIELDS:
        if field in action.changes and getattr(alert, field) != action.changes[field]:
            diff[field] = [getattr(alert, field), action.changes[field]]
            setattr(alert, field, action.changes[field])
    updated = _updated_at(written)
    if updated is not None and updated > alert.updated_at_source:
        alert.updated_at_source = updated
    if alert.status == AlertStatus.RESOLVED and alert.resolved_at is None:
        alert.resolved_at = updated or timezone.now()
    alert.save()
    if diff:
        AlertChange.objects.create(alert=alert, updated_at_source=updated, changes=diff)
    note = ""
    if action.comment and not _write_back(alert.source).takes_comment:
        note = (
            " The comment is kept in the portal (this API takes no comment with "
            "the change)."
        )
    core_services.audit(
        action="alert.triage_applied",
        actor=action.actor,
        tenant=alert.tenant,
        detail=f"{alert.source} alert {alert.provider_id}: {_describe(action.changes)}",
    )
    return _finish(
        action,
        TriageAction.Status.APPLIED,
        f"Written to {alert.get_source_display()}.{note}",
    )


@transaction.atomic
def _finish(action: TriageAction, status: str, detail: str) -> TriageAction:
    claimed = TriageAction.objects.filter(
        pk=action.pk, status=TriageAction.Status.QUEUED
    ).update(status=status, result_detail=detail, finished_at=timezone.now())
    action.refresh_from_db()
    if claimed and status != TriageAction.Status.APPLIED:
        core_services.audit(
            action=f"alert.triage_{status}",
            actor=action.actor,
            tenant=action.alert.tenant,
            detail=detail[:500],
        )
    return action


def record_triage_failure(*, action: TriageAction, reason: str) -> TriageAction:
    """The task gave up retrying: say so on the action."""
    return _finish(action, TriageAction.Status.FAILED, reason)

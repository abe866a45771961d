"""Writes every app uses: the audit trail, the partner-credential alarm and the
scheduler's heartbeat."""

import time

from django.db import transaction
from django.utils import timezone

from core import selectors
from core.models import Alarm, AuditEvent
from core.redis import get_redis

BEAT_HEARTBEAT_KEY = "partnerportal:beat:heartbeat"
# The scheduler beats every few seconds; older than this, /healthz calls it down.
BEAT_STALE_SECONDS = 60


def audit(
    *,
    action: str,
    actor=None,
    customer=None,
    tenant=None,
    detail: str = "",
    remote_addr: str | None = None,
) -> AuditEvent:
    """Records one audit row (inside the caller's transaction)."""
    if customer is None and tenant is not None:
        customer = tenant.customer
    return AuditEvent.objects.create(
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        action=action,
        customer=customer,
        tenant=tenant,
        detail=detail,
        remote_addr=remote_addr,
    )


def raise_partner_credential_alarm(*, message: str) -> None:
    """One alarm for all tenants when our own credential fails, not one per tenant."""
    with transaction.atomic():
        alarm, created = Alarm.objects.select_for_update().get_or_create(
            kind=Alarm.Kind.PARTNER_CREDENTIAL,
            defaults={"message": message, "raised_at": timezone.now()},
        )
        if not created and (alarm.cleared_at is not None or alarm.message != message):
            alarm.message = message
            alarm.raised_at = timezone.now()
            alarm.cleared_at = None
            alarm.save()
            created = True
        if created:
            audit(action="alarm.partner_credential", detail=message)
    if created:
        selectors.forget_alarms()


def clear_partner_credential_alarm() -> None:
    with transaction.atomic():
        cleared = Alarm.objects.filter(
            kind=Alarm.Kind.PARTNER_CREDENTIAL, cleared_at__isnull=True
        ).update(cleared_at=timezone.now())
        if cleared:
            audit(
                action="alarm.partner_credential_cleared",
                detail="a token was issued again",
            )
    if cleared:
        selectors.forget_alarms()


def record_beat_heartbeat() -> None:
    """Lets /healthz see that the one beat scheduler is alive."""
    get_redis(timeout=2).set(
        BEAT_HEARTBEAT_KEY, time.time(), ex=BEAT_STALE_SECONDS * 10
    )

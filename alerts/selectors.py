"""Reads of single alerts and incidents and of the overview, scoped to what the
signed-in staff member may see; the queue itself is `alerts.queue`."""

from dataclasses import dataclass
from datetime import date, timedelta

from django.contrib.auth import get_user_model
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce, TruncDate
from django.http import Http404
from django.utils import timezone

from alerts import queue
from alerts.models import Alert, Incident, Severity, TriageAction
from tenants import selectors as tenant_selectors
from tenants.models import Customer

# --- Alert detail ---------------------------------------------------------------------


def get_alert(*, user, code) -> Alert:
    """One alert `user` may see; 404 for any other, existing or not."""
    alert = (
        tenant_selectors.scoped(Alert.objects.all(), user)
        .select_related("tenant__customer", "incident", "duplicate_of")
        .filter(code=code)
        .first()
    )
    if alert is None:
        raise Http404("No such alert.")
    return alert


def alert_detail(*, alert: Alert) -> dict:
    """Everything the alert page shows, in a fixed number of queries."""
    related = Alert.objects.none()
    if alert.incident_id or alert.incident_provider_id:
        by_incident = (
            Q(incident_id=alert.incident_id)
            if alert.incident_id
            else Q(incident_provider_id=alert.incident_provider_id)
        )
        related = (
            Alert.objects.filter(by_incident, tenant_id=alert.tenant_id)
            .exclude(pk=alert.pk)
            .filter(duplicate_of__isnull=True)
            .order_by("-updated_at_source")[:50]
        )
    return {
        "alert": alert,
        "customer": alert.tenant.customer,
        "changes": list(alert.changes.all()[:50]),
        **triage_state(alert=alert),
        "related": list(related),
        "assignees": list_assignees(customer=alert.tenant.customer),
    }


def list_assignees(*, customer: Customer) -> list:
    """Active staff who may see `customer`: assigned directly, through a group, or
    superusers."""
    return list(
        get_user_model()
        .objects.filter(is_active=True)
        .filter(
            Q(is_superuser=True) | Q(customers=customer) | Q(groups__customers=customer)
        )
        .distinct()
        .order_by("username")[:200]
    )


def triage_state(*, alert: Alert) -> dict:
    """The alert's latest triage actions and whether one still waits for Defender."""
    actions = list(alert.triage.select_related("actor")[:20])
    return {
        "triage_actions": actions,
        "triage_pending": any(a.status == TriageAction.Status.QUEUED for a in actions),
    }


# --- Incidents ------------------------------------------------------------------------

INCIDENT_PAGE_SIZE = 100


def _visible_incidents(*, user, open_only: bool):
    """The incidents `user` may see (one row per real incident, whichever APIs
    brought it), open ones only if asked."""
    incidents = tenant_selectors.scoped(Incident.objects.all(), user)
    if open_only:
        incidents = incidents.exclude(status__iregex=r"^(resolved|redirected)$")
    return incidents


def list_incidents(*, user, open_only: bool = True) -> list[Incident]:
    """Incidents `user` may see, newest update first, with their alert counts."""
    incidents = _visible_incidents(user=user, open_only=open_only)
    alert_count = (
        Alert.objects.filter(incident=OuterRef("pk"), duplicate_of__isnull=True)
        .order_by()
        .values("incident")
        .annotate(n=Count("id"))
        .values("n")
    )
    return list(
        incidents.select_related("tenant__customer")
        .annotate(alert_count=Coalesce(Subquery(alert_count), 0))
        .order_by("-updated_at_source", "-id")[:INCIDENT_PAGE_SIZE]
    )


def get_incident(*, user, code) -> Incident:
    incident = (
        tenant_selectors.scoped(Incident.objects.all(), user)
        .select_related("tenant__customer")
        .filter(code=code)
        .first()
    )
    if incident is None:
        raise Http404("No such incident.")
    return incident


def incident_detail(*, incident: Incident) -> dict:
    alerts = (
        Alert.objects.filter(
            Q(incident=incident)
            | Q(tenant_id=incident.tenant_id, incident_provider_id=incident.provider_id)
        )
        .filter(duplicate_of__isnull=True)
        .select_related("tenant__customer")
        .order_by("-updated_at_source")[:200]
    )
    return {"incident": incident, "alerts": list(alerts)}


# --- Overview -------------------------------------------------------------------------

CHART_DAYS = 14


@dataclass(frozen=True)
class ChartBar:
    day: date
    count: int
    x: float
    y: float
    height: float
    label_x: float
    value_y: float


def _chart(counts: dict[date, int], today: date) -> dict:
    """Bar geometry for an inline SVG of new alerts per day (drawn server-side)."""
    width, height, top, bottom, left = 700, 180, 16, 24, 8
    days = [today - timedelta(days=i) for i in range(CHART_DAYS - 1, -1, -1)]
    peak = max([counts.get(d, 0) for d in days] + [1])
    slot = (width - left) / CHART_DAYS
    plot = height - top - bottom
    bars = []
    for i, day in enumerate(days):
        n = counts.get(day, 0)
        h = round(plot * n / peak, 1)
        x = round(left + i * slot + slot * 0.15, 1)
        y = round(top + plot - h, 1)
        bars.append(ChartBar(day, n, x, y, h, round(x + slot * 0.35, 1), y - 3))
    return {
        "bars": bars,
        "width": width,
        "height": height,
        "bar_width": round(slot * 0.7, 1),
        "baseline": height - bottom,
        "label_y": height - 8,
        "peak": peak,
        "total": sum(b.count for b in bars),
    }


def overview(*, user) -> dict:
    """The overview page: open alerts by severity and customer, new alerts per day,
    noisy customers and open incidents (the sync app adds tenants needing
    attention)."""
    now = timezone.now()
    alerts = queue.visible_alerts(user=user)
    open_alerts = alerts.filter(status__in=queue.OPEN_STATUSES)
    by_severity = dict(
        open_alerts.order_by().values_list("severity").annotate(n=Count("id"))
    )
    severities = [
        {"severity": value, "label": label, "count": by_severity.get(value, 0)}
        for value, label in Severity.choices
    ]
    by_customer = list(
        open_alerts.order_by()
        .values("tenant__customer__code", "tenant__customer__name")
        .annotate(
            n=Count("id"),
            high=Count("id", filter=Q(severity=Severity.HIGH)),
        )
        .order_by("-n")[:10]
    )
    since = now - timedelta(days=CHART_DAYS - 1)
    start = since.replace(hour=0, minute=0, second=0, microsecond=0)
    per_day = dict(
        alerts.filter(created_at_source__gte=start)
        .order_by()
        .annotate(day=TruncDate("created_at_source"))
        .values_list("day")
        .annotate(n=Count("id"))
    )
    noisy = list(
        alerts.filter(created_at_source__gte=now - timedelta(days=7))
        .order_by()
        .values("tenant__customer__code", "tenant__customer__name")
        .annotate(n=Count("id"))
        .order_by("-n")[:5]
    )
    incidents = list_incidents(user=user, open_only=True)[:10]
    open_incidents = (
        len(incidents)
        if len(incidents) < 10
        else _visible_incidents(user=user, open_only=True).count()
    )
    return {
        "severities": severities,
        "open_total": sum(s["count"] for s in severities),
        "by_customer": by_customer,
        "chart": _chart(per_day, now.date()),
        "noisy": noisy,
        "incidents": incidents,
        "open_incidents": open_incidents,
    }

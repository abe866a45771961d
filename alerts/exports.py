"""CSV exports of what staff see; cells that a spreadsheet would run as a formula are
defused (alert text comes from customers' tenants and may be hostile)."""

import csv
from collections.abc import Iterable

from django.utils import timezone

from alerts.models import Alert

QUEUE_COLUMNS = [
    "severity",
    "status",
    "title",
    "customer",
    "tenant",
    "source",
    "category",
    "assigned_to",
    "created",
    "last_updated",
    "provider_id",
]


def _cell(value) -> str:
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def write_queue_csv(out, alerts: Iterable[Alert]) -> None:
    writer = csv.writer(out)
    writer.writerow(QUEUE_COLUMNS)
    for alert in alerts:
        created = alert.created_at_source
        writer.writerow(
            [
                _cell(v)
                for v in (
                    alert.severity,
                    alert.status,
                    alert.title,
                    alert.tenant.customer.name,
                    alert.tenant,
                    alert.source,
                    alert.category,
                    alert.assigned_to,
                    timezone.localtime(created).isoformat() if created else "",
                    timezone.localtime(alert.updated_at_source).isoformat(),
                    alert.provider_id,
                )
            ]
        )

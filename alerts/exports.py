"""CSV exports of what staff see; cells that a spreadsheet would run as a formula are
defused (alert text comes from customers' tenants and may be hostile)."""

import csv
from collections.abc import Iterable

from alerts import columns
from alerts.models import Alert


def _cell(value) -> str:
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def write_queue_csv(out, alerts: Iterable[Alert]) -> None:
    """`alerts` (`queue.export_queue`) as CSV on `out`: a header row of the exported
    columns' names (`columns.CSV_COLUMNS`), then one row per alert."""
    writer = csv.writer(out)
    writer.writerow([column.csv for column in columns.CSV_COLUMNS])
    exports = [column.export for column in columns.CSV_COLUMNS]
    for alert in alerts:
        writer.writerow([_cell(export(alert)) for export in exports])

"""The queue's columns, each declared once: the values a page's row reads for it (SQL
over the row query's alert `a`, tenant `t` and customer `c`), its header, its cell (a
template snippet reading `row`), its CSV name and value, and the sorts it offers.

`queue.QueueRow` and the row query, the table's header and cells
(`templates/alerts/partials/queue_results.html`) and the CSV export
(`alerts.exports`) are all made from COLUMNS in its order: a column is added here
and nowhere else."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any

from django.utils import timezone

from alerts.models import Alert, AlertStatus, Severity

# The sort a queue without one uses; its column's sorts come first in the menu.
DEFAULT_SORT = "-updated"


@dataclass(frozen=True)
class Field:
    """One value of a queue row: `sql` in the row query's select list, its `%s`
    placeholders taking the query's values named in `params` ("zone": the current
    time zone's name, "now": the current time), and `show` (if any) turning what
    Postgres returns into what the cell prints."""

    name: str
    sql: str
    params: tuple[str, ...] = ()
    show: Callable[[Any], Any] | None = None


@dataclass(frozen=True)
class Column:
    """One column of the queue. Without a `header` it is not in the table (CSV
    only); without a `csv` name it is not exported.

    `cell` is this column's `<td>` as a template snippet: it reads `row` (a
    `queue.QueueRow`, holding this column's `fields` besides pk, code, url and
    updated_utc) and is autoescaped like any template. `export` gives the CSV value
    from an `Alert` (tenant and customer selected with it). `sorts` are the queue
    sorts (name, menu label) this column orders by; `alerts.keyset.SORT_KEYS` and
    `queue._sorted` spell out each."""

    name: str
    header: str = ""
    header_class: str = ""
    cell: str = ""
    fields: tuple[Field, ...] = ()
    csv: str = ""
    export: Callable[[Alert], Any] | None = None
    sorts: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if bool(self.header) != bool(self.cell):
            raise ValueError(f"column {self.name}: a header needs a cell and back")
        if bool(self.csv) != (self.export is not None):
            raise ValueError(f"column {self.name}: a CSV name needs an export")


def compact_age(moment: datetime | None, now: datetime) -> str:
    """A compact age for dense tables: 45s, 12m, 5h, 3d, 8w ("—" if unknown)."""
    if not isinstance(moment, datetime):
        return "—"
    return compact_seconds((now - moment).total_seconds())


def compact_seconds(seconds: float) -> str:
    """`compact_age` of an age in seconds."""
    seconds = max(0, int(seconds))
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit == "w" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _label(choices) -> Callable[[str], str]:
    """A choice's label (the value itself if it has none)."""
    labels = dict(choices)
    return lambda value: labels.get(value, value)


def _or_dash(value: str | None) -> str:
    return value or "—"


def _local_iso(moment: datetime | None) -> str:
    return timezone.localtime(moment).isoformat() if moment else ""


COLUMNS: tuple[Column, ...] = (
    Column(
        "severity",
        header="Severity",
        header_class="c-sev",
        cell='<td class="c-sev"><span class="sev sev-{{ row.severity }}">'
        "{{ row.severity_label }}</span></td>",
        fields=(
            Field("severity", "a.severity"),
            Field("severity_label", "a.severity", show=_label(Severity.choices)),
        ),
        csv="severity",
        export=attrgetter("severity"),
        sorts=(("severity", "Severity, highest first"),),
    ),
    Column(
        "status",
        header="Status",
        cell='<td><span class="status status-{{ row.status }}">'
        "{{ row.status_label }}</span></td>",
        fields=(
            Field("status", "a.status"),
            Field("status_label", "a.status", show=_label(AlertStatus.choices)),
        ),
        csv="status",
        export=attrgetter("status"),
    ),
    Column(
        "title",
        header="Title",
        header_class="c-title",
        cell='<td class="c-title"><a href="{{ row.url }}">{{ row.title }}</a></td>',
        fields=(Field("title", "a.title", show=lambda title: title or "(no title)"),),
        csv="title",
        export=attrgetter("title"),
    ),
    Column(
        "customer",
        header="Customer",
        cell="<td>{{ row.customer_name }}</td>",
        fields=(Field("customer_name", "c.name"),),
        csv="customer",
        export=attrgetter("tenant.customer.name"),
    ),
    Column(
        "tenant",
        header="Tenant",
        cell='<td class="muted">{{ row.tenant_name }}</td>',
        fields=(
            Field(
                "tenant_name",
                "coalesce(nullif(t.display_name, ''), t.tenant_id::text)",
            ),
        ),
        csv="tenant",
        export=attrgetter("tenant"),
    ),
    Column(
        "source",
        header="Source",
        cell='<td><span class="src">{{ row.source_label }}</span></td>',
        fields=(Field("source_label", "a.source", show=_label(Alert.Source.choices)),),
        csv="source",
        export=attrgetter("source"),
    ),
    Column(
        "category",
        header="Category",
        cell="<td>{{ row.category }}</td>",
        fields=(Field("category", "a.category", show=_or_dash),),
        csv="category",
        export=attrgetter("category"),
    ),
    Column(
        "assigned_to",
        header="Assigned to",
        cell="<td>{{ row.assigned_to }}</td>",
        fields=(Field("assigned_to", "a.assigned_to", show=_or_dash),),
        csv="assigned_to",
        export=attrgetter("assigned_to"),
    ),
    # Postgres writes the shown times (in the current zone) and the age in seconds:
    # in Python, converting, formatting and ageing datetimes cost more than the rest
    # of the row.
    Column(
        "created",
        header="Created (UTC)",
        cell='<td class="mono">{{ row.created }}</td>',
        fields=(
            Field(
                "created",
                "to_char(a.created_at_source AT TIME ZONE %s, 'MM-DD HH24:MI')",
                params=("zone",),
                show=_or_dash,
            ),
        ),
        csv="created",
        export=lambda alert: _local_iso(alert.created_at_source),
    ),
    Column(
        "updated",
        header="Last updated",
        cell='<td class="mono">{{ row.updated }}</td>',
        fields=(
            Field(
                "updated",
                "to_char(a.updated_at_source AT TIME ZONE %s, 'MM-DD HH24:MI:SS')",
                params=("zone",),
            ),
        ),
        csv="last_updated",
        export=lambda alert: _local_iso(alert.updated_at_source),
        sorts=(
            ("-updated", "Last updated, newest first"),
            ("updated", "Last updated, oldest first"),
        ),
    ),
    Column(
        "age",
        header="Age",
        header_class="num",
        cell='<td class="num mono">{{ row.age }}</td>',
        fields=(
            Field(
                "age",
                "extract(epoch FROM %s - coalesce(a.created_at_source, "
                "a.first_seen_at))::float8",
                params=("now",),
                show=compact_seconds,
            ),
        ),
    ),
    Column("provider_id", csv="provider_id", export=attrgetter("provider_id")),
)

# The table's columns, the exported ones, and the values of a row, in COLUMNS order.
TABLE_COLUMNS = tuple(column for column in COLUMNS if column.header)
CSV_COLUMNS = tuple(column for column in COLUMNS if column.csv)
FIELDS = tuple(field for column in COLUMNS for field in column.fields)
# The sorts' menu labels, the default sort's column first.
SORTS = {
    name: label
    for column in sorted(COLUMNS, key=lambda c: DEFAULT_SORT not in dict(c.sorts))
    for name, label in column.sorts
}

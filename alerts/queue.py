"""The unified queue: one page of alerts across customers and sources, its severity
counts and its CSV export, always scoped to what the signed-in staff member may see."""

import time
from collections import namedtuple
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.search import SearchQueryField
from django.db import connection
from django.db.models import (
    BooleanField,
    Case,
    CharField,
    F,
    Func,
    IntegerField,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.functions import Cast
from django.urls import reverse
from django.utils import timezone

from alerts import columns, keyset, search
from alerts.models import SEVERITY_RANK, Alert, AlertStatus, Severity
from core import shared
from tenants import selectors as tenant_selectors
from tenants.models import Customer

# The sorts offered (name: menu label), declared by their columns (alerts.columns).
QUEUE_SORTS = columns.SORTS
QUEUE_RANGES = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}

QUEUE_PAGE_SIZE = 50
# Severity counts of one filter and scope are shared for this long (the page says so).
COUNTS_TTL = shared.SHARED_SECONDS
# Severity counts stop counting here ("1000+"): an exact count of a million rows
# would cost more than the whole page; past a thousand, staff filter anyway.
COUNT_CAP = 1_000
# The queue never shows these; not loading them keeps a page of rows cheap.
QUEUE_DEFERRED = (
    "raw",
    "evidence",
    "devices",
    "users",
    "entities_text",
    "description",
    "search_vector",
)
OPEN_STATUSES = (AlertStatus.NEW, AlertStatus.IN_PROGRESS)


def _tsquery(text: str) -> Cast:
    """A tsquery in PostgreSQL's input form (see `alerts.search`), as a query value."""
    return Cast(Value(text), SearchQueryField())


class Matches(Func):
    """`search_vector @@ query`: answered by the `alert_queue_search` GIN index."""

    arg_joiner = " @@ "
    template = "%(expressions)s"
    output_field = BooleanField()


class EqualsAny(Func):
    """`column = ANY(values)`: what `column IN (values)` means, but costed by Postgres
    at half an operator per value, so on the rows a search's index found it is
    checked before the phrase (one operator), which then reads only the rows it
    lets through. Only beside a search: without one, `IN` keeps the btree
    indexes' ordered scans."""

    template = "%(expressions)s)"
    arg_joiner = " = ANY("
    output_field = BooleanField()

    def __init__(self, column: str, values) -> None:
        array = ArrayField(CharField())
        super().__init__(F(column), Value(list(values), output_field=array))


def _one_of(column: str, values, *, searching: bool):
    """The filter `column` in `values` (see EqualsAny)."""
    if searching:
        return EqualsAny(column, values)
    return Q(**{f"{column}__in": values})


class MatchesAfterIndex(Func):
    """`search_vector @@ query` spelled as a function call, which Postgres checks on
    the rows the index found but never uses the index for."""

    function = "ts_match_vq"
    output_field = BooleanField()


# Words in at least this share of alerts are left to the recheck (see _search).
COMMON_WORD_SHARE = 0.05
_common_words: tuple[float, frozenset[str]] = (0.0, frozenset())


def common_words() -> frozenset[str]:
    """Words in at least COMMON_WORD_SHARE of alerts, from the planner's statistics
    (read again every 5 minutes; none before the table was first analysed)."""
    global _common_words
    expires, words = _common_words
    if expires > time.monotonic():
        return words
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT most_common_elems::text::text[], most_common_elem_freqs
               FROM pg_stats WHERE schemaname = current_schema()
               AND tablename = 'tenants_alert' AND attname = 'search_vector'"""
        )
        row = cursor.fetchone()
    words = frozenset(
        word
        for word, share in zip(*(row or ([], [])), strict=False)
        if share >= COMMON_WORD_SHARE
    )
    _common_words = (time.monotonic() + 300, words)
    return words


def _search(term: str, phrases: list[str] | None = None):
    """The filter for one search term: its words in a row (`alerts.search`: the
    words of the alerts are made the same way). The index is asked for the term's
    rarer words only: a word in most alerts (`10` of an IP, `ws` of a host name,
    `com`) costs the index a walk over most of the table for nothing. The whole
    phrase is then checked on the rows found; or, given a list `phrases`, it is
    added there for the caller to check (see _queue_rows) and left out here.

    `WS-012` finds host `ws-01234.corp`, `10.0.0.25` that IP (and 10.0.0.250),
    `e3b0c442` a hash starting so, `powershell` a title. A word is not found from
    its middle (`ontoso` does not find `contoso`): that is what made the old
    substring search slow.
    """
    phrase = search.phrase(term)
    common = common_words()
    found = search.words(term)
    rare = [word for word in found if word not in common]
    if not common or not rare or len(rare) == len(found):
        return Matches(F("search_vector"), _tsquery(phrase))
    index_words = _tsquery(search.every_word(term, lambda word: word not in common))
    if phrases is not None:
        phrases.append(phrase)
        return Matches(F("search_vector"), index_words)
    return Q(Matches(F("search_vector"), index_words)) & Q(_has_phrase(phrase))


def _has_phrase(phrase: str) -> MatchesAfterIndex:
    """The check of a phrase (a tsquery) on rows an index found (see _search)."""
    return MatchesAfterIndex(F("search_vector"), _tsquery(phrase))


def severity_rank() -> Case:
    """High 4 … unknown 0, as spelled in the `alert_queue_rank` index (0004)."""
    return Case(
        *(
            When(severity=value, then=Value(rank))
            for value, rank in SEVERITY_RANK.items()
            if rank
        ),
        default=Value(0),
        output_field=IntegerField(),
    )


@dataclass(frozen=True)
class SeverityCount:
    severity: str
    label: str
    count: int
    capped: bool
    selected: bool


class QueueRow(
    namedtuple(
        "QueueRow",
        [
            "pk",
            "code",
            "url",
            "updated_utc",  # naive, UTC: only the page's last row needs it aware
            *(field.name for field in columns.FIELDS),
            "severity_rank",
        ],
    )
):
    """One line of the queue: pk, code, detail url and updated_utc, then the values
    of the columns' fields (alerts.columns.FIELDS, as the cells print them, so the
    template only prints), then severity_rank (None unless sorted by severity).
    A named tuple: made in C from positions, where a dataclass of 18 fields took
    about as long as the rest of its row."""

    __slots__ = ()

    def __getitem__(self, key):
        # Templates look `row.title` up as row["title"] first: answering it spares a
        # TypeError per value printed.
        return getattr(self, key) if isinstance(key, str) else super().__getitem__(key)

    @property
    def updated_at_source(self) -> datetime:
        return self.updated_utc.replace(tzinfo=UTC)


@dataclass(frozen=True)
class QueuePage:
    alerts: list[QueueRow]
    next_cursor: str | None
    counts: list[SeverityCount]
    counts_as_of: datetime
    customer: Customer | None
    # The user's scope as a cache key (tenants.selectors.scope_key), for the page's
    # other parts (the sync app's stale-tenant banner).
    scope: str


def visible_alerts(*, user) -> QuerySet[Alert]:
    """Alerts `user` may see, duplicates (the same alert through another source)
    left out."""
    return tenant_selectors.scoped(
        Alert.objects.filter(duplicate_of__isnull=True), user
    )


def _filtered_alerts(
    *, user, filters: dict, customer, phrases: list[str] | None = None
) -> QuerySet[Alert]:
    """Every filter of the queue except severity (the counts facet over it); the
    search phrases the index cannot check left to the caller if given `phrases`
    (see _search)."""
    alerts = visible_alerts(user=user)
    searching = bool(filters.get("q"))
    if customer is not None:
        alerts = alerts.filter(tenant__customer=customer)
    if filters.get("status"):
        alerts = alerts.filter(
            _one_of("status", filters["status"], searching=searching)
        )
    if filters.get("source"):
        alerts = alerts.filter(
            _one_of("source", filters["source"], searching=searching)
        )
    if filters.get("category"):
        alerts = alerts.filter(category__iexact=filters["category"])
    if filters.get("assigned") == "me":
        names = {n for n in (user.email, user.get_username()) if n}
        alerts = alerts.filter(assigned_to__in=names)
    elif filters.get("assigned") == "unassigned":
        alerts = alerts.filter(assigned_to="")
    if filters.get("range"):
        since = timezone.now() - QUEUE_RANGES[filters["range"]]
        alerts = alerts.filter(updated_at_source__gte=since)
    for term in filters.get("q") or ():
        alerts = alerts.filter(_search(term, phrases))
    return alerts


def _with_severity(alerts: QuerySet[Alert], filters: dict) -> QuerySet[Alert]:
    """`alerts` (see _filtered_alerts) narrowed by the severity filter, if any."""
    if not filters.get("severity"):
        return alerts
    return alerts.filter(
        _one_of("severity", filters["severity"], searching=bool(filters.get("q")))
    )


def list_queue(*, user, filters: dict) -> QueuePage:
    """One page of the unified queue for `user` with the severity counts of the same
    filter; a customer filter outside the user's scope is a 404."""
    customer = None
    if filters.get("customer"):
        customer = tenant_selectors.get_customer(user=user, code=filters["customer"])
    phrases: list[str] = []
    found = _filtered_alerts(
        user=user, filters=filters, customer=customer, phrases=phrases
    )
    # The counts need every match; the rows check the phrases on their own.
    base = found.filter(*(_has_phrase(phrase) for phrase in phrases))
    sort = filters.get("sort") or "-updated"
    alerts, order = _sorted(_with_severity(found, filters), sort)
    if filters.get("after"):
        keys = [*keyset.SORT_KEYS[sort], "id"]
        op = ">" if sort == "updated" else "<"
        alerts = alerts.filter(
            keyset.RowCompare([F(c) for c in keys], op, filters["after"])
        )
    rows = _queue_rows(alerts, order, phrases)
    next_cursor = None
    if len(rows) > QUEUE_PAGE_SIZE:
        rows = rows[:QUEUE_PAGE_SIZE]
        next_cursor = keyset.encode(sort, rows[-1])
    scope = tenant_selectors.scope_key(user)
    counts, counts_as_of = _severity_counts(
        base,
        names=(scope, *_filter_names(user, filters, customer)),
        selected=filters.get("severity") or [],
        searching=bool(filters.get("q")),
    )
    return QueuePage(
        alerts=rows,
        next_cursor=next_cursor,
        counts=counts,
        counts_as_of=counts_as_of,
        customer=customer,
        scope=scope,
    )


# The page's rows, read around the ids the filtered query chose: Postgres joins tenant
# and customer names to these rows only, not to every match before the sort (a search
# can match thousands). Written out rather than as `pk__in=<subquery>`: Django clones
# and relabels the whole inner query for that, which cost more than running it.
# `fields` are the columns' (alerts.columns.FIELDS). The sort time is read as a naive
# UTC timestamp, which psycopg parses in C (Django's timestamptz loader is pure
# Python, Django ticket #36960).
_ROW_SQL = """
    SELECT a.id, a.code::text, a.updated_at_source AT TIME ZONE 'UTC',
           {fields}{rank}
    FROM ({chosen}) AS page
    JOIN tenants_alert a ON a.id = page.pk
    JOIN tenants_tenant t ON t.id = a.tenant_id
    JOIN tenants_customer c ON c.id = t.customer_id
    ORDER BY {order}
"""
_FIELDS_SQL = ",\n           ".join(field.sql for field in columns.FIELDS)
# The query's values the fields' placeholders take, in order (columns.Field.params).
_FIELD_PARAMS = [name for field in columns.FIELDS for name in field.params]
# The fields shown otherwise than Postgres returns them, by position among the fields.
_FIELD_SHOWS = [
    (index, field.show)
    for index, field in enumerate(columns.FIELDS)
    if field.show is not None
]
# A search's phrases (see _search), checked on the rows its index part found in the
# page's order, until the page is full: a page needs the newest 51 that have the
# phrase, not every one (a check costs a few microseconds, and a short term's rarer
# word can find thousands of rows: 54 checks instead of 500 for a host prefix at 1M
# alerts). The rows are sorted with their words; OFFSET 0 keeps Postgres from
# moving the check into the sorted subquery, before the sort. Where the phrase is
# in almost none of the rows found, every row is still checked, after a wider
# sort: about 1.6 times the time of checking before the sort (190 ms where that
# took 120 ms, for a reversed phrase over 111,000 of 1M alerts).
_PHRASE_SQL = """
    SELECT candidate.pk{rank} FROM ({ordered} OFFSET 0) AS candidate
    WHERE ts_match_vq(candidate.search_vector, %s::tsquery)
    LIMIT {limit}
"""
# The sort orders of `_sorted`, spelled for _ROW_SQL.
_ROW_ORDER = {
    "-severity_rank": "page.severity_rank DESC",
    "-updated_at_source": "a.updated_at_source DESC",
    "updated_at_source": "a.updated_at_source",
    "-id": "a.id DESC",
    "id": "a.id",
}
# Any UUID: the detail URL is reversed once per page and the code swapped in per row.
_URL_PLACEHOLDER = UUID(int=0)


def _queue_rows(
    alerts: QuerySet, order: list, phrases: Sequence[str] = ()
) -> list[QueueRow]:
    """The first QUEUE_PAGE_SIZE + 1 of `alerts` in `order` (see _sorted) that have
    every phrase of `phrases` (tsqueries): the values alerts.columns declares."""
    ranked = "-severity_rank" in order
    keys = ["pk", *(["severity_rank"] if ranked else [])]
    chosen = alerts.order_by(*order)
    if phrases:
        ordered_sql, params = chosen.values(
            *keys, "search_vector"
        ).query.sql_with_params()
        chosen_sql = _PHRASE_SQL.format(
            ordered=ordered_sql,
            rank=", candidate.severity_rank" if ranked else "",
            limit=QUEUE_PAGE_SIZE + 1,
        )
        params = (*params, " & ".join(f"({phrase})" for phrase in phrases))
    else:
        chosen_sql, params = chosen.values(*keys)[
            : QUEUE_PAGE_SIZE + 1
        ].query.sql_with_params()
    # Only this module's constants and Django's own SQL of the filter (its values
    # are parameters) are formatted in.
    sql = _ROW_SQL.format(
        chosen=chosen_sql,
        fields=_FIELDS_SQL,
        rank=", page.severity_rank" if ranked else "",
        order=", ".join(_ROW_ORDER[name] for name in order),
    )
    url = reverse("alerts:alert_detail", kwargs={"code": _URL_PLACEHOLDER})
    placeholder = str(_URL_PLACEHOLDER)
    values = {"zone": timezone.get_current_timezone_name(), "now": timezone.now()}
    with connection.cursor() as cursor:
        cursor.execute(sql, [*(values[name] for name in _FIELD_PARAMS), *params])
        found = cursor.fetchall()
    rows = []
    for pk, code, updated_utc, *shown in found:
        for index, show in _FIELD_SHOWS:
            shown[index] = show(shown[index])
        if not ranked:
            shown.append(None)
        rows.append(
            QueueRow(pk, code, url.replace(placeholder, code), updated_utc, *shown)
        )
    return rows


def _sorted(alerts: QuerySet, sort: str) -> tuple[QuerySet, list]:
    if sort == "severity":
        alerts = alerts.annotate(severity_rank=severity_rank())
        return alerts, ["-severity_rank", "-updated_at_source", "-id"]
    if sort == "updated":
        return alerts, ["updated_at_source", "id"]
    return alerts, ["-updated_at_source", "-id"]


# Not a severity: no form lets a NUL character through.
_SEVERITY_STAND_IN = "\x00severity"


def _filter_names(user, filters: dict, customer) -> tuple:
    """Everything of the filter the severity counts depend on (see _filtered_alerts):
    not the severity they facet over, nor the sort or the page."""
    names = (
        customer and customer.pk,
        tuple(filters.get("status") or ()),
        tuple(filters.get("source") or ()),
        (filters.get("category") or "").lower(),
        filters.get("assigned") or "",
        filters.get("range") or "",
        tuple(filters.get("q") or ()),
    )
    if filters.get("assigned") == "me":
        names += (user.email, user.get_username())
    return names


def _severity_counts(
    alerts: QuerySet, *, names: tuple, selected: list[str], searching: bool
) -> tuple[list[SeverityCount], datetime]:
    """Counts per severity of `alerts` and when they were counted: shared for
    COUNTS_TTL seconds by every request of the same filter and scope (`names`; the
    queue polls every 15 s per open tab), so the page says "as of" that time."""
    counts, as_of = shared.get_shared(
        "queue-counts",
        names,
        lambda: (_count_severities(alerts, searching=searching), timezone.now()),
    )
    return [
        SeverityCount(
            severity=value,
            label=label,
            count=count,
            capped=capped,
            selected=value in selected,
        )
        for (value, label), (count, capped) in zip(
            Severity.choices, counts, strict=True
        )
    ], as_of


def _count_severities(alerts: QuerySet, *, searching: bool) -> list[tuple[int, bool]]:
    """(count, capped) per severity in Severity order, each exact up to COUNT_CAP,
    in one query.

    Without a search each count is an index-only scan. With one, a single pass reads
    at most COUNT_CAP + 1 matches; past that, each count is a lower bound ("+").
    """
    if searching:
        seen = list(
            alerts.order_by().values_list("severity", flat=True)[: COUNT_CAP + 1]
        )
        capped = len(seen) > COUNT_CAP
        return [(seen.count(value), capped) for value, _label in Severity.choices]
    # Compiled once with a stand-in severity, then repeated per severity with only
    # that parameter swapped: compiling five querysets cost more than running them.
    sql, template_params = (
        alerts.filter(severity=_SEVERITY_STAND_IN)
        .order_by()
        .values("id")[: COUNT_CAP + 1]
        .query.sql_with_params()
    )
    if template_params.count(_SEVERITY_STAND_IN) != 1:
        raise RuntimeError("the severity parameter is not where the counts expect it")
    where = template_params.index(_SEVERITY_STAND_IN)
    params = []
    for value, _label in Severity.choices:
        params += [*template_params[:where], value, *template_params[where + 1 :]]
    # Django's own SQL and placeholders, nested; no user text enters the string.
    part = f"(SELECT count(*) FROM ({sql}) AS s)"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join([part] * len(Severity.choices)), params)
        counts = cursor.fetchone()
    return [(min(count, COUNT_CAP), count > COUNT_CAP) for count in counts]


def export_queue(*, user, filters: dict, limit: int = 10_000) -> QuerySet[Alert]:
    """The queue's rows for a CSV export of the same filter, at most `limit`."""
    customer = None
    if filters.get("customer"):
        customer = tenant_selectors.get_customer(user=user, code=filters["customer"])
    alerts = _filtered_alerts(user=user, filters=filters, customer=customer)
    alerts, order = _sorted(
        _with_severity(alerts, filters), filters.get("sort") or "-updated"
    )
    return (
        alerts.select_related("tenant__customer")
        .defer(*QUEUE_DEFERRED)
        .order_by(*order)[:limit]
    )

"""How alerts and incidents are stored: a page of rows written in one go (COPY in
PostgreSQL's binary form for new alerts, one upsert for the others, where a newer
source update time wins and an older copy never overwrites a newer one), what changed
recorded as AlertChange rows, and the copies of one alert in several sources linked.

The same alert through two sources (an MDE alert is also a Graph alert with the same
id and an alert of an XDR incident; a Cloud Apps alert appears in Graph and XDR with
its id as ``providerAlertId``) is stored once per source and linked: the copy from the
highest ranked source below is the primary, every other copy points to it through
``Alert.duplicate_of``, and counts use primaries only. An incident, whose XDR and
Graph copies carry the same number, is one row per (tenant, provider id) instead, with
each source's payload and update time kept apart (``upsert_incidents``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson
from django.db import connection, transaction
from django.db.models import BooleanField, Q
from django.db.models.expressions import RawSQL
from psycopg import postgres
from psycopg.adapt import Dumper
from psycopg.pq import Format

from alerts import search
from alerts.models import SEARCHED_FIELDS, Alert, AlertChange

#: Which copy of one alert is the primary: the highest rank present.
ALERT_SOURCE_RANK = {"mde": 3, "graph": 2, "xdr": 1, "mcas": 0}
#: Fields whose change is recorded as an AlertChange.
TRACKED_FIELDS = (
    "status",
    "severity",
    "classification",
    "determination",
    "assigned_to",
)


_ALERT_COLUMNS = (
    ("source", "varchar(16)"),
    ("provider_id", "varchar(128)"),
    ("title", "text"),
    ("description", "text"),
    ("severity", "varchar(16)"),
    ("status", "varchar(16)"),
    ("category", "varchar(128)"),
    ("classification", "varchar(64)"),
    ("determination", "varchar(64)"),
    ("assigned_to", "varchar(255)"),
    ("created_at_source", "timestamptz"),
    ("updated_at_source", "timestamptz"),
    ("first_activity_at", "timestamptz"),
    ("last_activity_at", "timestamptz"),
    ("resolved_at", "timestamptz"),
    ("incident_provider_id", "varchar(128)"),
    ("devices", "jsonb"),
    ("users", "jsonb"),
    ("evidence", "jsonb"),
    ("evidence_summary", "varchar(500)"),
    ("entities_text", "text"),
    ("portal_url", "varchar(500)"),
    ("raw", "jsonb"),
    ("search_vector", "tsvector"),
)
_JSON_COLUMNS = {"devices", "users", "evidence", "raw"}


#: First key of the advisory lock that serialises one tenant's page writes.
TENANT_WRITE_LOCK = 0x53594E43  # "SYNC"


def lock_tenant_writes(tenant_pk: int) -> None:
    """Waits for, and holds until the transaction ends, the right to write pages of
    this tenant. The sources of one tenant sync in parallel and write copies of the
    same alerts: linking those copies must see the other runs' committed rows, or two
    runs each find their copy alone and both stay primaries; in a fixed order the
    cross-updates of incident and duplicate links also cannot deadlock."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)", [TENANT_WRITE_LOCK, tenant_pk]
        )


def newest_per_key(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (source, provider id), the newest; sorted, so concurrent upserts
    lock rows in the same order (no deadlocks)."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["source"], row["provider_id"])
        if (
            key not in best
            or row["updated_at_source"] >= best[key]["updated_at_source"]
        ):
            best[key] = row
    return [best[key] for key in sorted(best)]


def stage(cursor, table: str, columns, rows: list[dict[str, Any]]) -> None:
    """Rows into a temporary table with COPY (much faster than INSERT ... VALUES)."""
    definition = ", ".join(f"{name} {kind}" for name, kind in columns)
    cursor.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {table} ({definition}) ON COMMIT DELETE ROWS"
    )
    cursor.execute(f"TRUNCATE {table}")
    names = [name for name, _ in columns]
    _copy_in(cursor, table, columns, (_values(row, names) for row in rows))


# COPY in PostgreSQL's binary form: Python escapes no text and formats no times, and
# PostgreSQL parses no text but the JSON. In bench/ingest.py that took about a fifth
# off the sync's CPU (PostgreSQL about 140 to 102 µs an alert, the workers about 102
# to 90). Each value goes out as its column's type: psycopg's dumpers for numbers,
# text and times, and these for what we make ready ourselves.


class _Ready(Dumper):
    """A value already in its type's binary form, written as it is."""

    format = Format.BINARY

    def dump(self, obj: bytes) -> bytes:
        return obj


class _TsvectorBytes(_Ready):
    """A search vector from `search.document_bytes`."""

    oid = postgres.types["tsvector"].oid


class _UuidBytes(_Ready):
    """A uuid's 16 bytes, as PostgreSQL's uuid_send writes them."""

    oid = postgres.types["uuid"].oid


class _JsonbBytes(Dumper):
    """JSON text (`_json_bytes`) as jsonb's binary form: a version byte, the text."""

    format = Format.BINARY
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: bytes) -> bytes:
        return b"\x01" + obj


def _copy_in(cursor, table: str, columns, rows) -> None:
    """COPYs `rows` (lists of values in the order of `columns`, (name, type) pairs)
    into `table` in binary form: JSON columns take `_json_bytes`, the search vector
    `search.document_bytes`, a code its 16 bytes."""
    for dumper in (_TsvectorBytes, _UuidBytes, _JsonbBytes):
        cursor.adapters.register_dumper(None, dumper)
    # Only our own constant table and column names are formatted in.
    names = ", ".join(name for name, _ in columns)
    with cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([kind.split("(")[0] for _, kind in columns])
        for row in rows:
            copy.write_row(row)


def _values(row: dict[str, Any], names: list[str]) -> list[Any]:
    """The row's values of `names` as `_copy_in` takes them."""
    return [
        _json_bytes(row[name]) if name in _JSON_COLUMNS else row[name] for name in names
    ]


_json_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _json_bytes(value: Any) -> bytes:
    """Compact JSON in UTF-8, for a jsonb column or a JSON parameter. orjson is
    several times faster than ``json``; what it refuses (integers beyond 64 bits,
    lone surrogates) ``json`` writes, as before. orjson writes NaN, which jsonb cannot
    hold, as null."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return _json_encode(value).encode()


def _dumps_json(value: Any) -> str:
    """`_json_bytes` as text, for a query parameter."""
    return _json_bytes(value).decode()


def upsert_alerts(
    tenant_pk: int, rows: list[dict[str, Any]]
) -> tuple[int, int, list[Written]]:
    """Inserts new alerts and updates known ones where the incoming copy is newer.

    An older copy never overwrites a newer one, and a copy of the same time only when
    its payload differs (so re-reading the overlap window changes nothing). Writes an
    AlertChange for every tracked field that changed. Returns (created, updated, the
    rows written).

    Holds the tenant's write lock (``lock_tenant_writes``) to its transaction's end:
    no other writer can add this tenant's alerts meanwhile, so the alerts not stored
    yet are COPY'd straight into the table (a backfill's case, and the costly one),
    and only the known ones go through the upsert.
    """
    rows = [
        dict(
            row,
            search_vector=search.document_bytes(*(row[f] for f in SEARCHED_FIELDS)),
        )
        for row in newest_per_key(rows)
    ]
    if not rows:
        return 0, 0, []
    with transaction.atomic():
        lock_tenant_writes(tenant_pk)
        known = _stored_alert_keys(tenant_pk, rows)
        written = _insert_alerts(
            tenant_pk, [r for r in rows if (r["source"], r["provider_id"]) not in known]
        )
        again, updated, changed = _update_alerts(
            tenant_pk, [r for r in rows if (r["source"], r["provider_id"]) in known]
        )
    return len(written) + again, updated, written + changed


# A page's worth of values (keys, ids) as one JSON text parameter, `= ANY` of this
# array: psycopg binds on the client here and writes a list parameter out value by
# value in Python, 2,000 of them on every page, where one string is escaped in C.
# An array, not a join with the JSON's elements or IN (SELECT ...): the planner
# guesses those at 100 rows and may read all of a tenant's alerts instead of one
# index lookup a value.
_JSON_ARRAY = "ARRAY(SELECT json_array_elements_text(%s::json))"


def _stored_alert_keys(tenant_pk: int, rows: list[dict[str, Any]]) -> set[tuple]:
    """The (source, provider id) of `rows` this tenant already has."""
    wanted = {(r["source"], r["provider_id"]) for r in rows}
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT source, provider_id FROM tenants_alert
            WHERE tenant_id = %s AND source = ANY(%s)
              AND provider_id = ANY({_JSON_ARRAY})
            """,  # noqa: S608 - a constant of this module
            [
                tenant_pk,
                sorted({source for source, _ in wanted}),
                _dumps_json(sorted({pid for _, pid in wanted})),
            ],
        )
        return wanted.intersection(cursor.fetchall())


def _insert_alerts(tenant_pk: int, rows: list[dict[str, Any]]) -> list[Written]:
    """New alerts, COPY'd in with ids and codes taken beforehand (a COPY returns
    none); first seen and synced at the transaction's time, as now()."""
    if not rows:
        return []
    names = [name for name, _ in _ALERT_COLUMNS]
    with connection.cursor() as cursor:
        raw_cursor = cursor.cursor
        # The codes are made here, not by the column's default: a COPY that must
        # evaluate a volatile default (gen_random_uuid()) stores its rows one by one
        # instead of a page of them at a time. The sequence is looked up once:
        # OFFSET 0 keeps the subquery from being merged into the outer query, where
        # the lookup ran for every row (2.5 µs).
        raw_cursor.execute(
            """
            SELECT now(), array_agg(nextval(sequence)),
                   array_agg(uuid_send(gen_random_uuid()))
            FROM (SELECT pg_get_serial_sequence('tenants_alert', 'id')::regclass
                  AS sequence OFFSET 0) AS table_sequence,
                 generate_series(1, %s)
            """,
            [len(rows)],
        )
        now, ids, codes = raw_cursor.fetchone()
        _copy_in(
            raw_cursor,
            "tenants_alert",
            [
                ("id", "int8"),
                ("code", "uuid"),
                ("tenant_id", "int8"),
                *_ALERT_COLUMNS,
                ("first_seen_at", "timestamptz"),
                ("last_synced_at", "timestamptz"),
            ],
            (
                [pk, code, tenant_pk, *_values(row, names), now, now]
                for pk, code, row in zip(ids, codes, rows, strict=True)
            ),
        )
    return [
        Written(pk, row["source"], row["provider_id"], _origin(row["raw"]))
        for pk, row in zip(ids, rows, strict=True)
    ]


def _update_alerts(
    tenant_pk: int, rows: list[dict[str, Any]]
) -> tuple[int, int, list[Written]]:
    """Known alerts: each row where the incoming copy is newer (see upsert_alerts),
    with an AlertChange per changed tracked field. (Created, updated, rows written.)"""
    if not rows:
        return 0, 0, []
    names = [name for name, _ in _ALERT_COLUMNS]
    updates = ", ".join(
        f"{name} = EXCLUDED.{name}"
        for name in names
        if name not in ("source", "provider_id")
    )
    tracked = ", ".join(f"a.{name}" for name in TRACKED_FIELDS)
    returned = ", ".join(f"up.{name}" for name in TRACKED_FIELDS)
    old_fields = ", ".join(f"old.{name} AS old_{name}" for name in TRACKED_FIELDS)
    with connection.cursor() as cursor:
        raw_cursor = cursor.cursor
        stage(raw_cursor, "sync_alert_stage", _ALERT_COLUMNS, rows)
        # Only our own constant column names are formatted in; values are parameters.
        # ON CONFLICT, not UPDATE: a known alert deleted meanwhile is inserted again.
        raw_cursor.execute(
            f"""
            WITH old AS (
                SELECT a.id, {tracked}
                FROM tenants_alert a
                JOIN sync_alert_stage s
                  ON a.tenant_id = %(tenant)s
                 AND a.source = s.source AND a.provider_id = s.provider_id
            ), up AS (
                INSERT INTO tenants_alert
                    (code, tenant_id, {", ".join(names)}, first_seen_at, last_synced_at)
                SELECT gen_random_uuid(), %(tenant)s, {", ".join(names)}, now(), now()
                FROM sync_alert_stage ORDER BY source, provider_id
                ON CONFLICT (tenant_id, source, provider_id) DO UPDATE
                SET {updates}, last_synced_at = EXCLUDED.last_synced_at
                WHERE EXCLUDED.updated_at_source > tenants_alert.updated_at_source
                   OR (EXCLUDED.updated_at_source = tenants_alert.updated_at_source
                       AND EXCLUDED.raw IS DISTINCT FROM tenants_alert.raw)
                RETURNING id, (xmax = 0) AS inserted, updated_at_source,
                          source, provider_id, {", ".join(TRACKED_FIELDS)}
            )
            SELECT up.id, up.inserted, up.updated_at_source, up.source,
                   up.provider_id, {returned}, {old_fields}
            FROM up LEFT JOIN old ON old.id = up.id
            """,  # noqa: S608
            {"tenant": tenant_pk},
        )
        result = raw_cursor.fetchall()
    origins = {(row["source"], row["provider_id"]): _origin(row["raw"]) for row in rows}
    created = updated = 0
    changes = []
    written = []
    n = len(TRACKED_FIELDS)
    for record in result:
        alert_id, inserted, updated_at, source, provider_id = record[:5]
        written.append(
            Written(alert_id, source, provider_id, origins.get((source, provider_id)))
        )
        if inserted:
            created += 1
            continue
        updated += 1
        new, old = record[5 : 5 + n], record[5 + n : 5 + 2 * n]
        diff = {
            name: [before, after]
            for name, before, after in zip(TRACKED_FIELDS, old, new, strict=True)
            if before != after
        }
        if diff:
            changes.append(
                AlertChange(
                    alert_id=alert_id, updated_at_source=updated_at, changes=diff
                )
            )
    if changes:
        AlertChange.objects.bulk_create(changes)
    return created, updated, written


@dataclass(frozen=True)
class Written:
    """An alert row an upsert wrote, and the producing product's id it names."""

    id: int
    source: str
    provider_id: str
    origin: str | None


def _origin(raw: Any) -> str | None:
    value = raw.get("providerAlertId") if isinstance(raw, dict) else None
    return str(value) if value else None


def upsert_incidents(
    tenant_pk: int, rows: list[dict[str, Any]]
) -> tuple[int, int, list[int]]:
    """Incidents stored one row per (tenant, provider id) whichever source sent them
    (``alerts.incident_storage``): (created, updated, ids of this batch's incidents,
    written or not, to link alerts to)."""
    # Imported here: that module builds on this one's staging.
    from alerts import incident_storage

    return incident_storage.upsert_incidents(tenant_pk, rows)


def link_alerts(
    tenant_pk: int, *, written: list[Written], incident_ids: list[int]
) -> None:
    """Points alerts at their incident (one row per incident, whichever source
    brought it) and marks every copy of one alert but the primary as its
    duplicate."""
    alert_ids = [w.id for w in written]
    with connection.cursor() as cursor:
        if alert_ids:
            cursor.execute(
                f"""
                UPDATE tenants_alert a SET incident_id = i.id
                FROM tenants_incident i
                WHERE a.id = ANY({_JSON_ARRAY}::bigint[])
                  AND a.incident_provider_id <> ''
                  AND i.tenant_id = a.tenant_id
                  AND i.provider_id = a.incident_provider_id
                  AND a.incident_id IS DISTINCT FROM i.id
                """,  # noqa: S608 - a constant of this module
                [_dumps_json(alert_ids)],
            )
        if incident_ids:
            cursor.execute(
                """
                UPDATE tenants_alert a SET incident_id = i.id
                FROM tenants_incident i
                WHERE i.id = ANY(%s) AND a.tenant_id = i.tenant_id
                  AND a.incident_provider_id = i.provider_id
                  AND a.incident_id IS DISTINCT FROM i.id
                """,
                [incident_ids],
            )
    if written:
        _link_duplicates(tenant_pk, written)


def _link_duplicates(tenant_pk: int, written: list[Written]) -> None:
    """Finds every copy of the written alerts in the tenant and points all but the
    highest ranked one at it. Reads ``raw`` only when Cloud Apps copies are involved
    (their link goes through Graph's / XDR's ``providerAlertId``)."""
    keys = {w.provider_id for w in written if w.source != "mcas"}
    origins = {w.origin for w in written if w.source != "mcas" and w.origin}
    mcas_ids = {w.provider_id for w in written if w.source == "mcas"}
    if not origins and not mcas_ids and not _copies_elsewhere(tenant_pk, written, keys):
        # No other source holds any of these alerts: each is alone in its group and
        # a primary, as an alert is from its first write until a copy appears (the
        # upserts never set duplicate_of; a deleted primary leaves NULL behind).
        return
    group_filter = Q(source__in=("mde", "graph", "xdr")) & Q(
        RawSQL(  # noqa: S611 - a constant of this module; the keys are a parameter
            f"provider_id = ANY({_JSON_ARRAY})",
            [_dumps_json(sorted(keys))],
            output_field=BooleanField(),
        )
    )
    if origins:
        group_filter |= Q(source="mcas", provider_id__in=origins)
    if mcas_ids:
        # The written Cloud Apps copies are members too: without them a new one
        # whose Graph copy is already stored counts as "alone" and stays a primary.
        group_filter |= Q(source="mcas", provider_id__in=mcas_ids) | Q(
            source__in=("graph", "xdr"), raw__providerAlertId__in=list(mcas_ids)
        )
    members = list(
        Alert.objects.filter(tenant_id=tenant_pk)
        .filter(group_filter)
        .values_list("id", "source", "provider_id", "duplicate_of_id")
    )
    if len(members) == len(written) and all(m[3] is None for m in members):
        return  # every copy is alone and a primary already (e.g. new MDE alerts)
    # Key of a copy: the Defender alert id; a Cloud Apps copy joins the group of the
    # Graph / XDR copy that names it as providerAlertId.
    mcas_group: dict[str, str] = {}
    if any(source == "mcas" for _, source, _, _ in members):
        known = {(w.source, w.provider_id): w.origin for w in written}
        unknown = [
            row_id
            for row_id, source, pid, _ in members
            if source in ("graph", "xdr") and (source, pid) not in known
        ]
        for source, pid, origin in Alert.objects.filter(id__in=unknown).values_list(
            "source", "provider_id", "raw__providerAlertId"
        ):
            known[(source, pid)] = str(origin) if origin else None
        for _, source, pid, _ in members:
            origin = known.get((source, pid))
            if source != "mcas" and origin:
                mcas_group.setdefault(origin, pid)
    groups: dict[str, list[tuple[int, str, int | None]]] = {}
    for row_id, source, pid, dup in members:
        key = mcas_group.get(pid, f"mcas:{pid}") if source == "mcas" else pid
        groups.setdefault(key, []).append((row_id, source, dup))
    fixes: list[Alert] = []
    for copies in groups.values():
        if len(copies) == 1 and copies[0][2] is None:
            continue
        primary = max(copies, key=lambda c: (ALERT_SOURCE_RANK[c[1]], -c[0]))[0]
        for row_id, _, dup in copies:
            wanted = None if row_id == primary else primary
            if dup != wanted:
                fixes.append(Alert(id=row_id, duplicate_of_id=wanted))
    if fixes:
        Alert.objects.bulk_update(fixes, ["duplicate_of"])


def _copies_elsewhere(tenant_pk: int, written: list[Written], keys: set[str]) -> bool:
    """Whether a source other than the written rows' one holds a copy of any of
    `keys` (True when the written rows are of several sources): index probes only,
    where reading every member back (the written rows included) cost a backfill
    about a tenth of its database time."""
    sources = {w.source for w in written}
    if len(sources) != 1:
        return True  # copies may be among the written rows: not decided here
    others = sorted({"mde", "graph", "xdr"} - sources)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT EXISTS (
                SELECT 1 FROM tenants_alert
                WHERE tenant_id = %s AND source = ANY(%s)
                  AND provider_id = ANY({_JSON_ARRAY}))
            """,  # noqa: S608 - a constant of this module
            [tenant_pk, others, _dumps_json(sorted(keys))],
        )
        return cursor.fetchone()[0]

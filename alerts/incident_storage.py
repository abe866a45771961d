"""How incidents are stored: one row per (tenant, provider id), whichever of
Defender XDR and Graph sent it (XDR's ``incidentId`` is Graph's incident ``id``).
The row's fields are the newest copy's; each source's own payload and update time
are kept apart in ``raw`` and ``seen_in``."""

from __future__ import annotations

from typing import Any

from django.db import connection

from alerts.storage import newest_per_key, stage

_INCIDENT_COLUMNS = (
    ("source", "varchar(16)"),
    ("provider_id", "varchar(128)"),
    ("title", "text"),
    ("severity", "varchar(16)"),
    ("status", "varchar(32)"),
    ("classification", "varchar(64)"),
    ("determination", "varchar(64)"),
    ("assigned_to", "varchar(255)"),
    ("created_at_source", "timestamptz"),
    ("updated_at_source", "timestamptz"),
    ("portal_url", "varchar(500)"),
    ("raw", "jsonb"),
)


def upsert_incidents(
    tenant_pk: int, rows: list[dict[str, Any]]
) -> tuple[int, int, list[int]]:
    """Stores incidents one row per (tenant, provider id), whichever source sent
    them (XDR's ``incidentId`` is Graph's incident ``id``): the row's fields are the
    newest copy's, and each source's own payload and update time are kept apart in
    ``raw`` and ``seen_in``, so an older copy never overwrites a newer one and one
    source's sync never wipes what another brought. (Created, updated, ids of this
    batch's incidents, written or not, to link alerts to.)"""
    rows = newest_per_key(rows)
    created = updated = 0
    ids: set[int] = set()
    # One statement per source: an upsert may not touch one row twice.
    for source in sorted({row["source"] for row in rows}):
        c, u, written = _upsert_incident_copies(
            tenant_pk, [row for row in rows if row["source"] == source]
        )
        created, updated = created + c, updated + u
        ids.update(written)
    return created, updated, sorted(ids)


#: The incident fields the newest copy gives (``raw`` is kept per source).
_INCIDENT_FIELDS = tuple(
    name for name, _ in _INCIDENT_COLUMNS if name not in ("provider_id", "raw")
)
#: Whether the incoming copy is newer than the one the row's fields show (a copy of
#: another source as old as those leaves them: no flip-flop between equal copies).
_INCIDENT_COPY_NEWER = """(
    EXCLUDED.updated_at_source > tenants_incident.updated_at_source
    OR (EXCLUDED.updated_at_source = tenants_incident.updated_at_source
        AND EXCLUDED.source = tenants_incident.source))"""
#: Whether the incoming copy is newer than what the row holds of its own source.
_INCIDENT_SOURCE_NEWER = """(
    tenants_incident.seen_in -> EXCLUDED.source IS NULL
    OR EXCLUDED.updated_at_source
       > (tenants_incident.seen_in ->> EXCLUDED.source)::timestamptz
    OR (EXCLUDED.updated_at_source
        = (tenants_incident.seen_in ->> EXCLUDED.source)::timestamptz
        AND EXCLUDED.raw -> EXCLUDED.source
            IS DISTINCT FROM tenants_incident.raw -> EXCLUDED.source))"""


def _incoming(name: str) -> str:
    """The incoming copy's value of an incident field; a creation time the copy does
    not know leaves the row's."""
    if name == "created_at_source":
        return (
            "COALESCE(EXCLUDED.created_at_source, tenants_incident.created_at_source)"
        )
    return f"EXCLUDED.{name}"


def _upsert_incident_copies(
    tenant_pk: int, rows: list[dict[str, Any]]
) -> tuple[int, int, list[int]]:
    """``upsert_incidents`` for the rows of one source."""
    fields = ", ".join(_INCIDENT_FIELDS)
    newer = " ".join(_INCIDENT_COPY_NEWER.split())
    updates = ", ".join(
        f"{name} = CASE WHEN {newer} THEN {_incoming(name)} "
        f"ELSE tenants_incident.{name} END"
        for name in _INCIDENT_FIELDS
    )
    with connection.cursor() as cursor:
        raw_cursor = cursor.cursor
        stage(raw_cursor, "sync_incident_stage", _INCIDENT_COLUMNS, rows)
        # Only our own constant column names are formatted in; values are parameters.
        # The fields move only for a copy newer than the row's; the source's payload
        # and time for one newer than that source's.
        raw_cursor.execute(
            f"""
            INSERT INTO tenants_incident
                (code, tenant_id, provider_id, {fields}, raw, seen_in,
                 first_seen_at, last_synced_at)
            SELECT gen_random_uuid(), %(tenant)s, provider_id, {fields},
                   jsonb_build_object(source, raw),
                   jsonb_build_object(source, to_jsonb(updated_at_source)),
                   now(), now()
            FROM sync_incident_stage ORDER BY provider_id
            ON CONFLICT (tenant_id, provider_id) DO UPDATE
            SET {updates},
                raw = tenants_incident.raw || EXCLUDED.raw,
                seen_in = tenants_incident.seen_in || EXCLUDED.seen_in,
                last_synced_at = EXCLUDED.last_synced_at
            WHERE {_INCIDENT_SOURCE_NEWER}
            RETURNING (xmax = 0)
            """,  # noqa: S608
            {"tenant": tenant_pk},
        )
        written = [row[0] for row in raw_cursor.fetchall()]
        raw_cursor.execute(
            """
            SELECT i.id FROM tenants_incident i JOIN sync_incident_stage s
              ON i.tenant_id = %(tenant)s AND i.provider_id = s.provider_id
            """,
            {"tenant": tenant_pk},
        )
        ids = [row[0] for row in raw_cursor.fetchall()]
    created = sum(1 for inserted in written if inserted)
    return created, len(written) - created, ids

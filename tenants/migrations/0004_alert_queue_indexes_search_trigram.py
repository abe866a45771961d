"""Indexes for the unified queue: keyset order, severity facets and rank, free text.

Postgres-only (partial, expression and INCLUDE indexes), so plain SQL.
Every index skips duplicates (`duplicate_of` set), which the queue never shows; the
queue's SQL (tenants/selectors.py) spells these expressions exactly, or Postgres would
not use them.

This migration first also made a GIN trigram index (and the pg_trgm extension) for
free text; 0007 replaced it with word search before any release. It is left out
here so that a PostgreSQL without pg_trgm (the embedded one of `make test`) migrates;
0007 drops it where an earlier run made it.
"""

from django.db import migrations

SEVERITY_RANK_SQL = (
    "CASE WHEN severity = 'high' THEN 4 WHEN severity = 'medium' THEN 3 "
    "WHEN severity = 'low' THEN 2 WHEN severity = 'informational' THEN 1 ELSE 0 END"
)
INDEXES = {
    "alert_queue_recent": (
        "ON tenants_alert (updated_at_source DESC, id DESC) INCLUDE (tenant_id) "
        "WHERE duplicate_of_id IS NULL"
    ),
    "alert_queue_severity": (
        "ON tenants_alert (severity, updated_at_source DESC, id DESC) "
        "INCLUDE (status, tenant_id) WHERE duplicate_of_id IS NULL"
    ),
    "alert_queue_rank": (
        f"ON tenants_alert (({SEVERITY_RANK_SQL}) DESC, updated_at_source DESC, "
        "id DESC) WHERE duplicate_of_id IS NULL"
    ),
}


class Migration(migrations.Migration):
    dependencies = [("tenants", "0003_sync_alerts_incidents_triage")]

    operations = [
        *[
            migrations.RunSQL(
                f"CREATE INDEX {name} {definition}",
                reverse_sql=f"DROP INDEX IF EXISTS {name}",
            )
            for name, definition in INDEXES.items()
        ],
    ]

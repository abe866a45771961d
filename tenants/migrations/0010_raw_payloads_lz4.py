"""Raw payloads compressed with lz4 where the server has it.

An alert's payload (2-3 kB of JSON) is compressed as it is stored; lz4 costs a
fraction of PostgreSQL's default pglz for a slightly larger result, which matters
to a sync writing thousands of alerts a second. Rows already stored keep their
compression until rewritten. A server built without lz4 keeps pglz.
"""

from django.db import migrations

TABLES = ("tenants_alert", "tenants_incident")


def has_lz4(cursor) -> bool:
    cursor.execute(
        "SELECT 'lz4' = ANY(enumvals) FROM pg_settings"
        " WHERE name = 'default_toast_compression'"
    )
    row = cursor.fetchone()
    return bool(row and row[0])


def compress_with(method: str, columns=tuple((table, "raw") for table in TABLES)):
    """A migration step: `method` for each (table, column); lz4 only where the
    server has it (0012 uses it too)."""

    def apply(apps, schema_editor):
        with schema_editor.connection.cursor() as cursor:
            if method == "lz4" and not has_lz4(cursor):
                return
            for table, column in columns:
                cursor.execute(
                    f'ALTER TABLE "{table}" ALTER COLUMN "{column}"'
                    f" SET COMPRESSION {method}"
                )

    return apply


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0009_alert_foreign_key_indexes_where_set"),
    ]

    operations = [
        migrations.RunPython(compress_with("lz4"), compress_with("default")),
    ]

"""An alert's other long columns compressed with lz4 too, where the server has it.

Once an alert's row is long enough to be compressed, PostgreSQL compresses its
longest values first: after the raw payload (lz4 since 0010), the evidence, the
search words and the entity text were still compressed with pglz, about 2% of the
machine's CPU during a backfill. Rows already stored keep their compression until
rewritten. A server built without lz4 keeps pglz.
"""

import importlib

from django.db import migrations

COLUMNS = (
    "description",
    "devices",
    "users",
    "evidence",
    "entities_text",
    "search_vector",
)

compress_with = importlib.import_module(
    "tenants.migrations.0010_raw_payloads_lz4"
).compress_with
ALERT_COLUMNS = tuple(("tenants_alert", column) for column in COLUMNS)


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0011_alert_search_words_from_the_portal"),
    ]

    operations = [
        migrations.RunPython(
            compress_with("lz4", ALERT_COLUMNS), compress_with("default", ALERT_COLUMNS)
        ),
    ]

"""`Alert.search_vector` written by the portal (tenants.search), no longer generated.

The generated column ran PostgreSQL's text search parser over every alert the sync
wrote, about a fifth of the database's time per alert; the words are now made in
the worker, by the same function that makes a search term's words. DROP EXPRESSION
keeps the column and its index; the existing rows get their words again by the
same rule (runs of letters and digits, lowercased, numbered), here in SQL, so a
hash that the old parser cut in two (at `82e6`, read as a number) is one word again.
"""

import django.contrib.postgres.search
from django.db import migrations

# A word's positions count from the first word (splitting a text that starts with a
# break yields an empty first piece, which takes no position), at most 256 of them.
BACKFILL = """
UPDATE tenants_alert a SET search_vector = coalesce((
    SELECT string_agg(quote_literal(w.word) || ':' || w.positions, ' ')::tsvector
    FROM (
        SELECT word, array_to_string((array_agg(
            DISTINCT least(n, 16383) ORDER BY least(n, 16383)))[1:256], ',') AS positions
        FROM (
            SELECT word, row_number() OVER (ORDER BY k) AS n
            FROM regexp_split_to_table(
                lower(title || ' ' || description || ' ' || entities_text),
                '[^[:alnum:]]+'
            )
                 WITH ORDINALITY AS s(word, k)
            WHERE word <> ''
        ) numbered
        WHERE octet_length(word) <= 2046
        GROUP BY word
    ) w
), ''::tsvector)
"""
GENERATED = """
ALTER TABLE tenants_alert DROP COLUMN search_vector;
ALTER TABLE tenants_alert ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
    to_tsvector('simple'::regconfig, regexp_replace(
        title || ' ' || description || ' ' || entities_text, '[^[:alnum:]]+', ' ', 'g'
    ))
) STORED;
CREATE INDEX alert_queue_search ON tenants_alert USING gin (search_vector)
    WHERE duplicate_of_id IS NULL;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0010_raw_payloads_lz4"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    "ALTER TABLE tenants_alert ALTER COLUMN search_vector"
                    " DROP EXPRESSION",
                    GENERATED,
                ),
                migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="alert",
                    name="search_vector",
                    field=django.contrib.postgres.search.SearchVectorField(
                        editable=False, null=True
                    ),
                ),
            ],
        ),
    ]

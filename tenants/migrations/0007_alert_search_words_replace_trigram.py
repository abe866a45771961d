"""Queue search by words: a stored tsvector of title, description and entities with a
GIN index, in place of the trigram index on the same text.

Trigrams of hex-heavy entity text (hashes, host names with numbers) are few and
common, so a host-name search read thousands of candidates per query (85-330 ms at a
million alerts). Words are rare and exact: the same search is a few milliseconds.
The column is GENERATED ... STORED, so the sync's upsert needs no change; adding it
rewrites the table once (about two minutes at a million alerts, writes wait).
"""

import django.contrib.postgres.indexes
import django.contrib.postgres.search
from django.contrib.postgres.search import SearchVectorField
from django.db import migrations, models
from django.db.models import Func


class SearchDocument(Func):
    """The expression this migration generated `Alert.search_vector` with, in the
    database (to_tsvector's parser, which also splits a hash at what reads as a
    number such as `82e6`). Since 0011 the words come from `alerts.search`; the
    class lived in tenants.models until the apps were split."""

    template = (
        "to_tsvector('simple'::regconfig, "
        "regexp_replace(%(expressions)s, '[^[:alnum:]]+', ' ', 'g'))"
    )
    arg_joiner = " || ' ' || "
    output_field = SearchVectorField()


SEARCH_TEXT_SQL = "UPPER(title || ' ' || description || ' ' || entities_text)"


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0006_alert_search_text_statistics"),
    ]

    operations = [
        # The trigram index and its planner statistics served the old substring
        # search only; they cost every upsert and most of the table's index space.
        # Dropped first, so the rewrite below does not rebuild them.
        # Only databases migrated before 0004 lost the trigram index have it, so
        # going back does not make it again (it would need pg_trgm).
        migrations.RunSQL(
            "DROP INDEX IF EXISTS alert_queue_search_trgm",
            reverse_sql=migrations.RunSQL.noop,
        ),
        migrations.RunSQL(
            "DROP STATISTICS IF EXISTS alert_search_text_stats",
            reverse_sql=(
                f"CREATE STATISTICS alert_search_text_stats ON ({SEARCH_TEXT_SQL}) "
                "FROM tenants_alert"
            ),
        ),
        migrations.AddField(
            model_name="alert",
            name="search_vector",
            field=models.GeneratedField(
                db_persist=True,
                expression=SearchDocument("title", "description", "entities_text"),
                output_field=django.contrib.postgres.search.SearchVectorField(),
            ),
        ),
        migrations.AddIndex(
            model_name="alert",
            index=django.contrib.postgres.indexes.GinIndex(
                condition=models.Q(("duplicate_of__isnull", True)),
                fields=["search_vector"],
                name="alert_queue_search",
            ),
        ),
    ]

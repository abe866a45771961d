"""Planner statistics on the queue's search expression.

Without them Postgres guesses that any `LIKE '%word%'` on the search text matches a
few rows, and for a common word ("powershell", one alert in six) reads every match
through the trigram index and sorts them: seconds at a million alerts. With them it
walks the newest-first index and stops after a page.
"""

from django.db import migrations

SEARCH_TEXT_SQL = "UPPER(title || ' ' || description || ' ' || entities_text)"


class Migration(migrations.Migration):
    dependencies = [("tenants", "0005_sync_paging_incident_index")]

    operations = [
        migrations.RunSQL(
            f"CREATE STATISTICS alert_search_text_stats ON ({SEARCH_TEXT_SQL}) "
            "FROM tenants_alert",
            reverse_sql="DROP STATISTICS IF EXISTS alert_search_text_stats",
        ),
    ]

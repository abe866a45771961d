"""Severity counts of a scoped staff member: an index on (tenant, severity)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0007_alert_search_words_replace_trigram"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="alert",
            index=models.Index(
                condition=models.Q(("duplicate_of__isnull", True)),
                fields=["tenant", "severity"],
                include=("status",),
                name="alert_queue_tenant_severity",
            ),
        ),
    ]

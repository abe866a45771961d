"""The alert's foreign keys without full indexes of their own.

The tenant key leads the unique constraint and `alert_tenant` already; incident and
duplicate links are indexed only where set (most alerts have neither), so a new
alert no longer pays for three index entries that nothing reads. The constraints
stay as they are (Django would drop and re-add them, validating a million rows).
Built and dropped CONCURRENTLY: a deployed table stays writable meanwhile.
"""

import django.db.models.deletion
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

# Django's names for the indexes 0003 made with the foreign keys.
FULL_INDEXES = {
    "tenants_alert_tenant_id_3f6dd742": "tenant_id",
    "tenants_alert_incident_id_1e9c6e70": "incident_id",
    "tenants_alert_duplicate_of_id_76b95eed": "duplicate_of_id",
}


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("tenants", "0008_alert_queue_tenant_severity"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="alert",
            index=models.Index(
                condition=models.Q(("incident__isnull", False)),
                fields=["incident"],
                name="alert_incident_fk",
            ),
        ),
        AddIndexConcurrently(
            model_name="alert",
            index=models.Index(
                condition=models.Q(("duplicate_of__isnull", False)),
                fields=["duplicate_of"],
                name="alert_duplicate_fk",
            ),
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"',
                    f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{name}" '
                    f'ON "tenants_alert" ("{column}")',
                )
                for name, column in FULL_INDEXES.items()
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="alert",
                    name="duplicate_of",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="tenants.alert",
                    ),
                ),
                migrations.AlterField(
                    model_name="alert",
                    name="incident",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="alerts",
                        to="tenants.incident",
                    ),
                ),
                migrations.AlterField(
                    model_name="alert",
                    name="tenant",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="alerts",
                        to="tenants.tenant",
                    ),
                ),
            ],
        ),
    ]

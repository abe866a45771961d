"""SyncState and SyncRun, taken over from the tenants app (state only: the tables
keep their names), and their content types moved with them so permissions and
admin history stay."""

import importlib

import django.db.models.deletion
from django.db import migrations, models

content_types_moved = importlib.import_module(
    "core.migrations.0001_moved_from_tenants"
).content_types_moved


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("tenants", "0014_models_moved_to_their_apps"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="SyncState",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        (
                            "source",
                            models.CharField(
                                choices=[
                                    ("mde_alerts", "Defender for Endpoint alerts"),
                                    ("xdr_incidents", "Defender XDR incidents"),
                                    ("graph_alerts", "Graph security alerts"),
                                    ("graph_incidents", "Graph security incidents"),
                                    ("mcas_alerts", "Defender for Cloud Apps alerts"),
                                ],
                                max_length=32,
                            ),
                        ),
                        ("cursor", models.DateTimeField(blank=True, null=True)),
                        ("backfill_done", models.BooleanField(default=False)),
                        ("next_due_at", models.DateTimeField(blank=True, null=True)),
                        ("lease_owner", models.CharField(blank=True, max_length=64)),
                        ("lease_until", models.DateTimeField(blank=True, null=True)),
                        (
                            "throttled_until",
                            models.DateTimeField(blank=True, null=True),
                        ),
                        (
                            "consecutive_failures",
                            models.PositiveIntegerField(default=0),
                        ),
                        (
                            "last_attempt_at",
                            models.DateTimeField(blank=True, null=True),
                        ),
                        (
                            "last_success_at",
                            models.DateTimeField(blank=True, null=True),
                        ),
                        ("last_error", models.TextField(blank=True)),
                        ("last_error_at", models.DateTimeField(blank=True, null=True)),
                        ("paging", models.JSONField(blank=True, default=dict)),
                        (
                            "tenant",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="syncs",
                                to="tenants.tenant",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "tenants_syncstate",
                        "ordering": ["tenant", "source"],
                    },
                ),
                migrations.CreateModel(
                    name="SyncRun",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("started_at", models.DateTimeField()),
                        ("finished_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "outcome",
                            models.CharField(
                                choices=[
                                    ("running", "Running"),
                                    ("ok", "Finished"),
                                    ("more", "Finished a batch; more pages remain"),
                                    ("throttled", "Throttled"),
                                    ("failed", "Failed"),
                                ],
                                default="running",
                                max_length=16,
                            ),
                        ),
                        ("pages", models.PositiveIntegerField(default=0)),
                        ("fetched", models.PositiveIntegerField(default=0)),
                        ("created", models.PositiveIntegerField(default=0)),
                        ("updated", models.PositiveIntegerField(default=0)),
                        ("error", models.TextField(blank=True)),
                        (
                            "sync",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="runs",
                                to="sync.syncstate",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "tenants_syncrun",
                        "ordering": ["-started_at"],
                    },
                ),
                migrations.AddIndex(
                    model_name="syncstate",
                    index=models.Index(fields=["next_due_at"], name="syncstate_due"),
                ),
                migrations.AddConstraint(
                    model_name="syncstate",
                    constraint=models.UniqueConstraint(
                        fields=("tenant", "source"),
                        name="syncstate_unique_tenant_source",
                    ),
                ),
                migrations.AddIndex(
                    model_name="syncrun",
                    index=models.Index(
                        fields=["sync", "-started_at"], name="syncrun_recent"
                    ),
                ),
            ],
            database_operations=[],
        ),
        content_types_moved(["syncstate", "syncrun"], "tenants", "sync"),
    ]

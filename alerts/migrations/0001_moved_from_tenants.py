"""Incident, Alert, AlertChange and TriageAction, taken over from the tenants app
(state only: the tables keep their names), and their content types moved with them
so permissions and admin history stay."""

import importlib
import uuid

import django.contrib.postgres.functions
import django.contrib.postgres.indexes
import django.contrib.postgres.search
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

content_types_moved = importlib.import_module(
    "core.migrations.0001_moved_from_tenants"
).content_types_moved


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("tenants", "0014_models_moved_to_their_apps"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Alert",
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
                            "code",
                            models.UUIDField(
                                db_default=django.contrib.postgres.functions.RandomUUID(),
                                default=uuid.uuid4,
                                editable=False,
                                unique=True,
                            ),
                        ),
                        (
                            "source",
                            models.CharField(
                                choices=[
                                    ("mde", "Defender for Endpoint"),
                                    ("xdr", "Defender XDR"),
                                    ("graph", "Graph security"),
                                    ("mcas", "Defender for Cloud Apps"),
                                ],
                                max_length=16,
                            ),
                        ),
                        ("provider_id", models.CharField(max_length=128)),
                        ("title", models.TextField(blank=True)),
                        ("description", models.TextField(blank=True)),
                        (
                            "severity",
                            models.CharField(
                                choices=[
                                    ("high", "High"),
                                    ("medium", "Medium"),
                                    ("low", "Low"),
                                    ("informational", "Informational"),
                                    ("unknown", "Unknown"),
                                ],
                                default="unknown",
                                max_length=16,
                            ),
                        ),
                        (
                            "status",
                            models.CharField(
                                choices=[
                                    ("new", "New"),
                                    ("in_progress", "In progress"),
                                    ("resolved", "Resolved"),
                                    ("unknown", "Unknown"),
                                ],
                                default="unknown",
                                max_length=16,
                            ),
                        ),
                        ("category", models.CharField(blank=True, max_length=128)),
                        ("classification", models.CharField(blank=True, max_length=64)),
                        ("determination", models.CharField(blank=True, max_length=64)),
                        ("assigned_to", models.CharField(blank=True, max_length=255)),
                        (
                            "created_at_source",
                            models.DateTimeField(blank=True, null=True),
                        ),
                        ("updated_at_source", models.DateTimeField()),
                        (
                            "first_activity_at",
                            models.DateTimeField(blank=True, null=True),
                        ),
                        (
                            "last_activity_at",
                            models.DateTimeField(blank=True, null=True),
                        ),
                        ("resolved_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "incident_provider_id",
                            models.CharField(blank=True, max_length=128),
                        ),
                        ("devices", models.JSONField(blank=True, default=list)),
                        ("users", models.JSONField(blank=True, default=list)),
                        (
                            "evidence",
                            models.JSONField(
                                blank=True,
                                default=list,
                                help_text="Normalised evidence rows (type, name, ...).",
                            ),
                        ),
                        (
                            "evidence_summary",
                            models.CharField(blank=True, max_length=500),
                        ),
                        ("entities_text", models.TextField(blank=True)),
                        ("portal_url", models.URLField(blank=True, max_length=500)),
                        ("raw", models.JSONField()),
                        ("first_seen_at", models.DateTimeField(auto_now_add=True)),
                        ("last_synced_at", models.DateTimeField(auto_now=True)),
                        (
                            "search_vector",
                            django.contrib.postgres.search.SearchVectorField(
                                editable=False, null=True
                            ),
                        ),
                        (
                            "duplicate_of",
                            models.ForeignKey(
                                blank=True,
                                db_index=False,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to="alerts.alert",
                            ),
                        ),
                        (
                            "tenant",
                            models.ForeignKey(
                                db_index=False,
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="alerts",
                                to="tenants.tenant",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "tenants_alert",
                    },
                ),
                migrations.CreateModel(
                    name="AlertChange",
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
                        ("seen_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "updated_at_source",
                            models.DateTimeField(blank=True, null=True),
                        ),
                        (
                            "changes",
                            models.JSONField(help_text='{"field": [old, new], ...}'),
                        ),
                        (
                            "alert",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="changes",
                                to="alerts.alert",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "tenants_alertchange",
                        "ordering": ["-seen_at"],
                    },
                ),
                migrations.CreateModel(
                    name="Incident",
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
                            "code",
                            models.UUIDField(
                                default=uuid.uuid4, editable=False, unique=True
                            ),
                        ),
                        (
                            "source",
                            models.CharField(
                                choices=[
                                    ("xdr", "Defender XDR"),
                                    ("graph", "Graph security"),
                                ],
                                max_length=16,
                            ),
                        ),
                        ("provider_id", models.CharField(max_length=128)),
                        ("title", models.TextField(blank=True)),
                        (
                            "severity",
                            models.CharField(
                                choices=[
                                    ("high", "High"),
                                    ("medium", "Medium"),
                                    ("low", "Low"),
                                    ("informational", "Informational"),
                                    ("unknown", "Unknown"),
                                ],
                                default="unknown",
                                max_length=16,
                            ),
                        ),
                        ("status", models.CharField(blank=True, max_length=32)),
                        ("classification", models.CharField(blank=True, max_length=64)),
                        ("determination", models.CharField(blank=True, max_length=64)),
                        ("assigned_to", models.CharField(blank=True, max_length=255)),
                        (
                            "created_at_source",
                            models.DateTimeField(blank=True, null=True),
                        ),
                        ("updated_at_source", models.DateTimeField()),
                        ("portal_url", models.URLField(blank=True, max_length=500)),
                        ("raw", models.JSONField()),
                        ("first_seen_at", models.DateTimeField(auto_now_add=True)),
                        ("last_synced_at", models.DateTimeField(auto_now=True)),
                        (
                            "tenant",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="incidents",
                                to="tenants.tenant",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "tenants_incident",
                    },
                ),
                migrations.AddField(
                    model_name="alert",
                    name="incident",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="alerts",
                        to="alerts.incident",
                    ),
                ),
                migrations.CreateModel(
                    name="TriageAction",
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
                            "code",
                            models.UUIDField(
                                default=uuid.uuid4, editable=False, unique=True
                            ),
                        ),
                        ("requested_at", models.DateTimeField(auto_now_add=True)),
                        ("based_on_updated_at", models.DateTimeField()),
                        (
                            "changes",
                            models.JSONField(help_text='{"status": "resolved", ...}'),
                        ),
                        ("comment", models.TextField(blank=True)),
                        (
                            "status",
                            models.CharField(
                                choices=[
                                    ("queued", "Queued"),
                                    ("applied", "Applied in Defender"),
                                    (
                                        "conflict",
                                        "Not applied: the alert changed in Defender",
                                    ),
                                    ("failed", "Failed"),
                                ],
                                default="queued",
                                max_length=16,
                            ),
                        ),
                        ("result_detail", models.TextField(blank=True)),
                        ("finished_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "actor",
                            models.ForeignKey(
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "alert",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="triage",
                                to="alerts.alert",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "tenants_triageaction",
                        "ordering": ["-requested_at"],
                    },
                ),
                migrations.AddConstraint(
                    model_name="incident",
                    constraint=models.UniqueConstraint(
                        fields=("tenant", "source", "provider_id"),
                        name="incident_unique_tenant_source_provider_id",
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
                migrations.AddIndex(
                    model_name="alert",
                    index=models.Index(
                        condition=models.Q(("duplicate_of__isnull", True)),
                        fields=["tenant", "severity"],
                        include=("status",),
                        name="alert_queue_tenant_severity",
                    ),
                ),
                migrations.AddIndex(
                    model_name="alert",
                    index=models.Index(
                        fields=["-updated_at_source", "-id"], name="alert_recent"
                    ),
                ),
                migrations.AddIndex(
                    model_name="alert",
                    index=models.Index(
                        fields=["tenant", "-updated_at_source"], name="alert_tenant"
                    ),
                ),
                migrations.AddIndex(
                    model_name="alert",
                    index=models.Index(
                        fields=["tenant", "incident_provider_id"],
                        name="alert_incident_id",
                    ),
                ),
                migrations.AddIndex(
                    model_name="alert",
                    index=models.Index(
                        condition=models.Q(("incident__isnull", False)),
                        fields=["incident"],
                        name="alert_incident_fk",
                    ),
                ),
                migrations.AddIndex(
                    model_name="alert",
                    index=models.Index(
                        condition=models.Q(("duplicate_of__isnull", False)),
                        fields=["duplicate_of"],
                        name="alert_duplicate_fk",
                    ),
                ),
                migrations.AddConstraint(
                    model_name="alert",
                    constraint=models.UniqueConstraint(
                        fields=("tenant", "source", "provider_id"),
                        name="alert_unique_tenant_source_provider_id",
                    ),
                ),
            ],
            database_operations=[],
        ),
        content_types_moved(
            ["incident", "alert", "alertchange", "triageaction"], "tenants", "alerts"
        ),
    ]

"""AuditEvent and Alarm, taken over from the tenants app (state only: the tables keep
their names), and their content types moved with them so permissions and admin
history stay."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def content_types_moved(model_names: list[str], old_app: str, new_app: str):
    """The content types of `model_names` moved from `old_app` to `new_app` (and back on
    reverse): permissions and admin history follow the models, none are made anew.
    The other apps' first migrations use it too."""

    def move(from_app: str, to_app: str):
        def run(apps, schema_editor) -> None:
            ContentType = apps.get_model("contenttypes", "ContentType")
            ContentType.objects.filter(
                app_label=from_app, model__in=model_names
            ).update(app_label=to_app)

        return run

    return migrations.RunPython(move(old_app, new_app), move(new_app, old_app))


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
                    name="Alarm",
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
                            "kind",
                            models.CharField(
                                choices=[
                                    ("partner_credential", "Partner app credential")
                                ],
                                max_length=32,
                                unique=True,
                            ),
                        ),
                        ("message", models.TextField()),
                        ("raised_at", models.DateTimeField()),
                        ("cleared_at", models.DateTimeField(blank=True, null=True)),
                    ],
                    options={
                        "db_table": "tenants_alarm",
                    },
                ),
                migrations.CreateModel(
                    name="AuditEvent",
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
                        ("action", models.CharField(max_length=64)),
                        ("detail", models.TextField(blank=True)),
                        (
                            "remote_addr",
                            models.GenericIPAddressField(blank=True, null=True),
                        ),
                        (
                            "created_at",
                            models.DateTimeField(auto_now_add=True, db_index=True),
                        ),
                        (
                            "actor",
                            models.ForeignKey(
                                blank=True,
                                help_text="Empty for the system and for anonymous visitors.",
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "customer",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to="tenants.customer",
                            ),
                        ),
                        (
                            "tenant",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to="tenants.tenant",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "tenants_auditevent",
                        "ordering": ["-created_at"],
                    },
                ),
            ],
            database_operations=[],
        ),
        content_types_moved(["auditevent", "alarm"], "tenants", "core"),
    ]

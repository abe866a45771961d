"""StaffIdentity, taken over from the partnerportal package (state only: the table
keeps its name), and its content type moved with it so permissions and admin
history stay."""

import importlib

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

content_types_moved = importlib.import_module(
    "core.migrations.0001_moved_from_tenants"
).content_types_moved


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("partnerportal", "0002_staffidentity_moved_to_accounts"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="StaffIdentity",
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
                            "tenant_id",
                            models.UUIDField(
                                help_text="The `tid` claim: the MSSP's tenant."
                            ),
                        ),
                        (
                            "object_id",
                            models.UUIDField(
                                help_text="The `oid` claim: the account, for good."
                            ),
                        ),
                        (
                            "username",
                            models.CharField(
                                help_text="The `preferred_username` at the last sign-in.",
                                max_length=255,
                            ),
                        ),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "last_sign_in_at",
                            models.DateTimeField(blank=True, null=True),
                        ),
                        (
                            "user",
                            models.OneToOneField(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="microsoft_identity",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={
                        "verbose_name_plural": "staff identities",
                        "db_table": "partnerportal_staffidentity",
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("tenant_id", "object_id"),
                                name="staffidentity_unique_tenant_object",
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        content_types_moved(["staffidentity"], "partnerportal", "accounts"),
    ]

"""Where each incident was seen: every source's newest update time."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("alerts", "0001_moved_from_tenants")]

    operations = [
        migrations.AddField(
            model_name="incident",
            name="seen_in",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text='Each source\'s newest update time: {"xdr": "2026-...", ...}',
            ),
        ),
        migrations.AlterField(
            model_name="incident",
            name="raw",
            field=models.JSONField(help_text='{"xdr": payload, "graph": payload}'),
        ),
    ]

"""An incident is unique per (tenant, provider id), whichever API it came through
(after 0003 merged the copies; its own transaction, as the merge leaves deferred
foreign-key checks that an ALTER TABLE in the same one would refuse)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("alerts", "0003_merge_incident_copies")]

    operations = [
        migrations.RemoveConstraint(
            model_name="incident",
            name="incident_unique_tenant_source_provider_id",
        ),
        migrations.AddConstraint(
            model_name="incident",
            constraint=models.UniqueConstraint(
                fields=("tenant", "provider_id"),
                name="incident_unique_tenant_provider_id",
            ),
        ),
    ]

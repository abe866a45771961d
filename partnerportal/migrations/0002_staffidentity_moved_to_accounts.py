"""State only: StaffIdentity moved to the accounts app; its table keeps its name."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("partnerportal", "0001_staff_identity"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(
                    name="StaffIdentity",
                ),
            ],
            database_operations=[],
        ),
    ]

"""State only: AuditEvent and Alarm moved to core, Incident, Alert, AlertChange and
TriageAction to alerts, SyncState and SyncRun to sync. Their tables keep their names
(`Meta.db_table`), so nothing in the database changes here; the new apps' first
migrations take the models over and move their content types."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0013_alert_code_made_by_the_database"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(
                    name="Alarm",
                ),
                migrations.RemoveField(
                    model_name="triageaction",
                    name="alert",
                ),
                migrations.RemoveField(
                    model_name="alertchange",
                    name="alert",
                ),
                migrations.RemoveField(
                    model_name="auditevent",
                    name="actor",
                ),
                migrations.RemoveField(
                    model_name="auditevent",
                    name="customer",
                ),
                migrations.RemoveField(
                    model_name="auditevent",
                    name="tenant",
                ),
                migrations.RemoveField(
                    model_name="incident",
                    name="tenant",
                ),
                migrations.RemoveField(
                    model_name="syncrun",
                    name="sync",
                ),
                migrations.RemoveField(
                    model_name="syncstate",
                    name="tenant",
                ),
                migrations.RemoveField(
                    model_name="triageaction",
                    name="actor",
                ),
                migrations.DeleteModel(
                    name="Alert",
                ),
                migrations.DeleteModel(
                    name="AlertChange",
                ),
                migrations.DeleteModel(
                    name="AuditEvent",
                ),
                migrations.DeleteModel(
                    name="Incident",
                ),
                migrations.DeleteModel(
                    name="SyncRun",
                ),
                migrations.DeleteModel(
                    name="SyncState",
                ),
                migrations.DeleteModel(
                    name="TriageAction",
                ),
            ],
            database_operations=[],
        ),
    ]

"""A database filled at the schema of before the apps were split (tenants 0013,
partnerportal 0001) migrates forward with every row still there and readable through
the new apps' models, and with its content types (permissions, admin history) moved."""

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [
    ("tenants", "0013_alert_code_made_by_the_database"),
    ("partnerportal", "0001_staff_identity"),
    ("core", None),
    ("accounts", None),
    ("alerts", None),
    ("sync", None),
]
MOVED = {
    "auditevent": "core",
    "alarm": "core",
    "incident": "alerts",
    "alert": "alerts",
    "alertchange": "alerts",
    "triageaction": "alerts",
    "syncstate": "sync",
    "syncrun": "sync",
}
WHEN = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    # The state at these targets: theirs and Django's own apps' (the new apps'
    # "None" targets name no migration).
    nodes = [t for t in targets if t[1] is not None] + [
        leaf
        for leaf in executor.loader.graph.leaf_nodes()
        if leaf[0] in {"admin", "auth", "contenttypes", "sessions"}
    ]
    return executor.loader.project_state(nodes).apps


def latest():
    executor = MigrationExecutor(connection)
    return executor.loader.graph.leaf_nodes()


def fill_old_schema(old) -> dict:
    user = old.get_model("auth", "User").objects.create(username="ops")
    Customer = old.get_model("tenants", "Customer")
    Tenant = old.get_model("tenants", "Tenant")
    customer = Customer.objects.create(name="Contoso")
    tenant = Tenant.objects.create(
        customer=customer,
        tenant_id="72f988bf-86f1-41af-91ab-2d7cd011db47",
        display_name="contoso.example",
        state="verified",
    )
    old.get_model("tenants", "Capability").objects.create(
        tenant=tenant, source="mde_alerts", status="ok", checked_at=WHEN
    )
    old.get_model("tenants", "AuditEvent").objects.create(
        actor=user, action="tenant.verified", customer=customer, tenant=tenant
    )
    old.get_model("tenants", "Alarm").objects.create(
        kind="partner_credential", message="secret expired", raised_at=WHEN
    )
    state = old.get_model("tenants", "SyncState").objects.create(
        tenant=tenant, source="mde_alerts", cursor=WHEN, paging={"skip": 3}
    )
    old.get_model("tenants", "SyncRun").objects.create(
        sync=state, started_at=WHEN, outcome="ok", fetched=7
    )
    incident = old.get_model("tenants", "Incident").objects.create(
        tenant=tenant,
        source="xdr",
        provider_id="42",
        title="Multi-stage incident",
        updated_at_source=WHEN,
        raw={"incidentId": 42},
    )
    Alert = old.get_model("tenants", "Alert")
    primary = Alert.objects.create(
        tenant=tenant,
        source="mde",
        provider_id="da1",
        title="Suspicious PowerShell",
        severity="high",
        status="new",
        updated_at_source=WHEN,
        incident=incident,
        incident_provider_id="42",
        raw={"id": "da1"},
    )
    copy = Alert.objects.create(
        tenant=tenant,
        source="graph",
        provider_id="da1",
        title="Suspicious PowerShell",
        updated_at_source=WHEN,
        duplicate_of=primary,
        raw={"id": "da1"},
    )
    old.get_model("tenants", "AlertChange").objects.create(
        alert=primary, updated_at_source=WHEN, changes={"status": ["new", "resolved"]}
    )
    old.get_model("tenants", "TriageAction").objects.create(
        alert=primary,
        actor=user,
        based_on_updated_at=WHEN,
        changes={"status": "resolved"},
        status="applied",
    )
    old.get_model("partnerportal", "StaffIdentity").objects.create(
        user=user,
        tenant_id="11111111-2222-3333-4444-555555555555",
        object_id="66666666-7777-8888-9999-000000000000",
        username="ops@mssp.example",
    )
    # What an existing database holds beside the rows: content types, the
    # permissions made for them, and the admin's history pointing at them.
    ContentType = old.get_model("contenttypes", "ContentType")
    Permission = old.get_model("auth", "Permission")
    types = {}
    for model in [*MOVED, "staffidentity"]:
        app = "partnerportal" if model == "staffidentity" else "tenants"
        ct, _ = ContentType.objects.get_or_create(app_label=app, model=model)
        types[model] = ct.pk
        Permission.objects.get_or_create(
            content_type=ct, codename=f"view_{model}", defaults={"name": model}
        )
    old.get_model("admin", "LogEntry").objects.create(
        user=user,
        content_type_id=types["alert"],
        object_id=str(primary.pk),
        object_repr="Suspicious PowerShell",
        action_flag=2,
        action_time=WHEN,
    )
    return {"types": types, "primary": primary.pk, "copy": copy.pk}


@pytest.mark.django_db(transaction=True)
def test_a_database_of_before_the_split_migrates_forward_and_keeps_every_row():
    old = migrate(BEFORE)
    try:
        made = fill_old_schema(old)
        migrate(latest())

        from django.contrib.admin.models import LogEntry
        from django.contrib.auth.models import Permission
        from django.contrib.contenttypes.models import ContentType

        from accounts.models import StaffIdentity
        from alerts.models import Alert, Incident, TriageAction
        from core.models import Alarm, AuditEvent
        from sync.models import SyncRun, SyncState
        from tenants.models import Capability, Customer, Tenant

        tenant = Tenant.objects.get()
        assert tenant.customer == Customer.objects.get(name="Contoso")
        assert Capability.objects.get().tenant == tenant
        event = AuditEvent.objects.get()
        assert (event.action, event.tenant, event.actor.username) == (
            "tenant.verified",
            tenant,
            "ops",
        )
        assert Alarm.objects.get().message == "secret expired"
        state = SyncState.objects.get()
        assert (state.tenant, state.cursor, state.paging) == (tenant, WHEN, {"skip": 3})
        assert SyncRun.objects.get().sync == state
        primary = Alert.objects.get(pk=made["primary"])
        assert primary.incident == Incident.objects.get(provider_id="42")
        assert Alert.objects.get(pk=made["copy"]).duplicate_of == primary
        assert primary.changes.get().changes == {"status": ["new", "resolved"]}
        assert TriageAction.objects.get().alert == primary
        assert StaffIdentity.objects.get().user.username == "ops"
        # New rows go to the same tables as the old ones.
        Alert.objects.create(
            tenant=tenant,
            source="mde",
            provider_id="da2",
            updated_at_source=WHEN,
            raw={},
        )
        assert Alert.objects.count() == 3

        # Content types moved, not made anew: permissions and history still point
        # at the same rows, now under the new apps.
        for model, app in [*MOVED.items(), ("staffidentity", "accounts")]:
            ct = ContentType.objects.get(pk=made["types"][model])
            assert (ct.app_label, ct.model) == (app, model)
            assert Permission.objects.filter(
                content_type=ct, codename=f"view_{model}"
            ).exists()
        assert not ContentType.objects.filter(
            app_label="tenants", model__in=list(MOVED)
        ).exists()
        entry = LogEntry.objects.get()
        assert entry.get_edited_object() == primary
    finally:
        migrate(latest())

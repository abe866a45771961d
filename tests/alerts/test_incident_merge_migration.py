"""A database holding incidents the old way (one row per source: XDR's and Graph's
copies of one incident apart) migrates forward to one row per real incident, with
every alert's link, the newest copy's fields, both payloads and the admin's history
kept; and back again without losing a row."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = ("alerts", "0001_moved_from_tenants")
WHEN = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def migrate(target):
    """Migrates alerts to `target` (None: the latest); the state there, every other
    app at its latest."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    leaves = executor.loader.graph.leaf_nodes()
    if target is None:
        executor.migrate(leaves)
        return None
    executor.migrate([target])
    nodes = [target, *(leaf for leaf in leaves if leaf[0] != "alerts")]
    return executor.loader.project_state(nodes).apps


def fill_old_way(old) -> dict:
    Customer = old.get_model("tenants", "Customer")
    Tenant = old.get_model("tenants", "Tenant")
    Incident = old.get_model("alerts", "Incident")
    Alert = old.get_model("alerts", "Alert")
    user = old.get_model("auth", "User").objects.create(username="ops")
    customer = Customer.objects.create(name="Contoso")
    tenants = [
        Tenant.objects.create(
            customer=customer,
            tenant_id=f"72f988bf-86f1-41af-91ab-2d7cd011db4{n}",
            display_name=f"t{n}.example",
            state="verified",
        )
        for n in (1, 2)
    ]
    tenant, neighbour = tenants

    def incident(t, source, pid, updated, **fields):
        raw = {"incidentId": int(pid)} if source == "xdr" else {"id": pid}
        return Incident.objects.create(
            tenant=t,
            source=source,
            provider_id=pid,
            updated_at_source=updated,
            raw={**raw, "from": source},
            **fields,
        )

    xdr = incident(tenant, "xdr", "4211", WHEN, title="Ransomware", status="active")
    graph = incident(
        tenant,
        "graph",
        "4211",
        WHEN + timedelta(minutes=5),
        title="Ransomware",
        status="in_progress",
        assigned_to="soc@partner.example",
    )
    incident(tenant, "xdr", "4212", WHEN, title="XDR only")
    graph_only = incident(tenant, "graph", "4213", WHEN, title="Graph only")
    incident(neighbour, "xdr", "4211", WHEN, title="Same number, other tenant")
    incident(neighbour, "graph", "4211", WHEN, title="Same number, other tenant")

    def alert(source, pid, linked, incident_pid, duplicate_of=None):
        return Alert.objects.create(
            tenant=tenant,
            source=source,
            provider_id=pid,
            updated_at_source=WHEN,
            incident=linked,
            incident_provider_id=incident_pid,
            duplicate_of=duplicate_of,
            raw={"id": pid},
        )

    primary = alert("mde", "da1", xdr, "4211")
    alert("graph", "da1", xdr, "4211", duplicate_of=primary)
    alert("graph", "da2", graph, "4211")  # linked to Graph's copy before XDR's came
    alert("graph", "da3", graph_only, "4213")
    alert("mde", "da4", None, "4211")  # not linked yet
    old.get_model("alerts", "TriageAction").objects.create(
        alert=primary, actor=user, based_on_updated_at=WHEN, changes={"status": "x"}
    )
    ContentType = old.get_model("contenttypes", "ContentType")
    incident_type, _ = ContentType.objects.get_or_create(
        app_label="alerts", model="incident"
    )
    for row in (xdr, graph):
        old.get_model("admin", "LogEntry").objects.create(
            user=user,
            content_type_id=incident_type.pk,
            object_id=str(row.pk),
            object_repr=row.title,
            action_flag=2,
            action_time=WHEN,
        )
    return {"xdr": xdr.pk, "graph": graph.pk, "primary": primary.pk}


@pytest.mark.django_db(transaction=True)
def test_duplicate_incidents_merge_into_one_row_per_real_incident():
    old = migrate(BEFORE)
    try:
        made = fill_old_way(old)
        migrate(None)

        from django.contrib.admin.models import LogEntry

        from alerts.models import Alert, Incident, TriageAction

        pairs = list(Incident.objects.values_list("tenant_id", "provider_id"))
        assert len(pairs) == len(set(pairs)) == 4
        for alert in Alert.objects.all():
            assert alert.incident is not None, alert.provider_id
            assert alert.incident.tenant_id == alert.tenant_id
            assert alert.incident.provider_id == alert.incident_provider_id
        kept = Incident.objects.get(pk=made["xdr"])  # the copy alerts linked to
        assert not Incident.objects.filter(pk=made["graph"]).exists()
        # The newest copy's fields; both payloads and update times.
        assert (kept.source, kept.status, kept.assigned_to) == (
            "graph",
            "in_progress",
            "soc@partner.example",
        )
        assert kept.raw == {
            "xdr": {"incidentId": 4211, "from": "xdr"},
            "graph": {"id": "4211", "from": "graph"},
        }
        assert set(kept.seen_in) == {"xdr", "graph"}
        assert kept.alerts.count() == 4
        assert TriageAction.objects.get().alert_id == made["primary"]
        # The admin's history of both copies is the kept row's.
        entries = LogEntry.objects.all()
        assert len(entries) == 2
        assert {e.get_edited_object() for e in entries} == {kept}
        assert Incident.objects.get(provider_id="4212").raw["xdr"]["from"] == "xdr"

        # Back: still one row per incident, `raw` the payload of the row's source.
        migrate(BEFORE)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT source, raw FROM tenants_incident WHERE id = %s", [kept.pk]
            )
            source, raw = cursor.fetchone()
        assert source == "graph" and '"from": "graph"' in raw
    finally:
        migrate(None)

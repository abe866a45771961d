"""One incident row per real incident, whether Defender XDR's `/api/incidents` or
Graph's `/security/incidents` (or both) brought it: XDR's `incidentId` is Graph's
incident `id`."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest
from django.utils import timezone

from alerts import normalize, selectors, storage
from alerts.models import Alert, Incident
from tests.factories import CustomerFactory, TenantFactory

pytestmark = pytest.mark.django_db

ALERT_IDS = ("da638412345678901234_-1498235523", "da638412345678905678_1775032233")


def xdr_payload(updated: str, **fields) -> dict:
    """An XDR incident as `GET /api/incidents` lists it (Learn's example's shape)."""
    return {
        "incidentId": 4211,
        "redirectIncidentId": None,
        "incidentName": "Multi-stage incident involving Execution on one endpoint",
        "createdTime": "2026-11-30T08:00:00.1233333Z",
        "lastUpdateTime": updated,
        "assignedTo": None,
        "classification": "Unknown",
        "determination": "NotAvailable",
        "status": "Active",
        "severity": "High",
        "tags": ["mssp"],
        "comments": [],
        "alerts": [
            {
                "alertId": alert_id,
                "incidentId": 4211,
                "serviceSource": "MicrosoftDefenderATP",
                "creationTime": "2026-11-30T07:59:00.1Z",
                "lastUpdatedTime": "2026-11-30T08:00:00.2Z",
                "title": title,
                "description": "A process ran an encoded command.",
                "category": "Execution",
                "status": "New",
                "severity": "High",
                "detectionSource": "WindowsDefenderAtp",
                "devices": [
                    {
                        "mdatpDeviceId": "7a6b0b1c3f2e",
                        "deviceDnsName": "fin-ws-01.contoso.example",
                        "osPlatform": "Windows11",
                    }
                ],
                "entities": [],
            }
            for alert_id, title in zip(
                ALERT_IDS,
                ("Suspicious PowerShell command line", "Suspicious LSASS access"),
                strict=True,
            )
        ],
        **fields,
    }


def graph_payload(updated: str, **fields) -> dict:
    """The same incident as `GET /security/incidents?$expand=alerts` lists it."""
    return {
        "@odata.type": "#microsoft.graph.security.incident",
        "id": "4211",
        "incidentWebUrl": "https://security.microsoft.com/incident2/4211/overview",
        "redirectIncidentId": None,
        "displayName": "Multi-stage incident involving Execution on one endpoint",
        "createdDateTime": "2026-11-30T08:00:00.1233333Z",
        "lastUpdateDateTime": updated,
        "assignedTo": "soc@partner.example",
        "classification": "truePositive",
        "determination": "malware",
        "status": "inProgress",
        "severity": "high",
        "summary": "Graph's own summary of the incident",
        "priorityScore": 87,
        "systemTags": ["Defender Experts"],
        "alerts": [
            {
                "@odata.type": "#microsoft.graph.security.alert",
                "id": alert_id,
                "providerAlertId": alert_id,
                "incidentId": "4211",
                "status": "new",
                "severity": "high",
                "serviceSource": "microsoftDefenderForEndpoint",
                "detectionSource": "microsoftDefenderForEndpoint",
                "title": "Suspicious PowerShell command line",
                "category": "Execution",
                "createdDateTime": "2026-11-30T07:59:00.1Z",
                "lastUpdateDateTime": "2026-11-30T08:00:00.2Z",
                "evidence": [],
            }
            for alert_id in ALERT_IDS
        ],
        **fields,
    }


def store(tenant, shape: str, raw: dict) -> None:
    """One page of one source, stored as the sync runner stores it."""
    source = {"xdr_incident": "xdr", "graph_incident": "graph"}[shape]
    incident, alerts = normalize.NORMALISERS[shape](
        raw, tenant_id=str(tenant.tenant_id)
    )
    storage.lock_tenant_writes(tenant.pk)
    _, _, incident_ids = storage.upsert_incidents(
        tenant.pk, [dict(incident, source=source)]
    )
    _, _, written = storage.upsert_alerts(
        tenant.pk, [dict(a, source=source) for a in alerts]
    )
    storage.link_alerts(tenant.pk, written=written, incident_ids=incident_ids)


@pytest.fixture
def tenant():
    return TenantFactory()


def test_the_same_incident_from_xdr_and_graph_is_one_row_with_all_its_alerts(tenant):
    store(tenant, "xdr_incident", xdr_payload("2026-11-30T09:00:00Z"))
    store(tenant, "graph_incident", graph_payload("2026-11-30T09:00:00Z"))

    incident = Incident.objects.get()
    assert incident.provider_id == "4211"
    assert set(incident.seen_in) == {"xdr", "graph"}
    assert incident.raw["xdr"]["incidentId"] == 4211
    assert incident.raw["graph"]["summary"] == "Graph's own summary of the incident"
    # Every copy of every alert (XDR's and Graph's) links to the one row.
    assert Alert.objects.count() == 4
    assert set(Alert.objects.values_list("incident", flat=True)) == {incident.pk}
    primaries = incident.alerts.filter(duplicate_of__isnull=True)
    assert set(primaries.values_list("provider_id", flat=True)) == set(ALERT_IDS)


def test_the_newer_copy_wins_and_neither_source_wipes_the_other(tenant):
    store(tenant, "graph_incident", graph_payload("2026-11-30T10:00:00Z"))
    store(tenant, "xdr_incident", xdr_payload("2026-11-30T09:00:00Z"))
    incident = Incident.objects.get()
    # XDR's copy is older: the fields stay Graph's, XDR's payload is kept beside.
    assert (incident.source, incident.status, incident.assigned_to) == (
        "graph",
        "in_progress",
        "soc@partner.example",
    )
    assert set(incident.raw) == {"xdr", "graph"}

    resolved = xdr_payload(
        "2026-11-30T11:00:00Z", status="Resolved", assignedTo="night@partner.example"
    )
    store(tenant, "xdr_incident", resolved)
    incident.refresh_from_db()
    assert (incident.source, incident.status, incident.assigned_to) == (
        "xdr",
        "resolved",
        "night@partner.example",
    )
    assert incident.raw["graph"]["priorityScore"] == 87
    assert incident.raw["xdr"]["status"] == "Resolved"
    # An older Graph copy (a re-read overlap) changes nothing of either.
    store(tenant, "graph_incident", graph_payload("2026-11-30T09:30:00Z"))
    incident.refresh_from_db()
    assert incident.status == "resolved"
    assert incident.seen_in["graph"].startswith("2026-11-30T10:00:00")


def test_storing_both_sources_twice_gives_the_same_rows(tenant):
    for _ in range(2):
        store(tenant, "xdr_incident", xdr_payload("2026-11-30T09:00:00Z"))
        store(tenant, "graph_incident", graph_payload("2026-11-30T09:05:00Z"))
    assert Incident.objects.count() == 1
    assert Alert.objects.count() == 4
    assert Alert.objects.filter(incident__isnull=True).count() == 0


def test_overview_and_incident_list_show_each_real_incident_once(
    tenant, django_user_model
):
    staff = django_user_model.objects.create_superuser("boss", password="pw")
    other = TenantFactory(customer=CustomerFactory())
    for t in (tenant, other):
        store(t, "xdr_incident", xdr_payload("2026-11-30T09:00:00Z"))
        store(t, "graph_incident", graph_payload("2026-11-30T09:05:00Z"))
    second = copy.deepcopy(graph_payload("2026-11-30T09:10:00Z", id="4212"))
    for alert in second["alerts"]:
        alert["incidentId"] = "4212"
        alert["id"] = alert["providerAlertId"] = alert["id"] + "_2"
    store(tenant, "graph_incident", second)

    listed = selectors.list_incidents(user=staff)
    assert len(listed) == 3
    assert sorted(i.alert_count for i in listed) == [2, 2, 2]
    overview = selectors.overview(user=staff)
    assert overview["open_incidents"] == 3
    assert len(overview["incidents"]) == 3
    detail = selectors.incident_detail(incident=listed[0])
    assert len(detail["alerts"]) == 2


def test_a_resolved_copy_that_is_newer_closes_the_incident_everywhere(tenant):
    store(tenant, "xdr_incident", xdr_payload("2026-11-30T09:00:00Z"))
    later = (timezone.now() + timedelta(days=1)).isoformat()
    store(tenant, "graph_incident", graph_payload(later, status="resolved"))
    incident = Incident.objects.get()
    assert incident.status == "resolved"
    assert not Incident.objects.exclude(status__iregex=r"^(resolved|redirected)$")

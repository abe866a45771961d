"""Our rendered objects against real payloads in ../shared/realdata (see SOURCES.md).

For each API: every documented key that a real payload carries is also rendered by
the emulator, with the same JSON type when both are non-null, and enum values (ours
and theirs) fall within the documented members.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

from emulator.apis import graph, mcas, mde, xdr
from emulator.apis.common import Call
from tests.emulator.api_helpers import call, first_tenant, make_world, token

REALDATA = Path(__file__).resolve().parents[2].parent / "shared" / "realdata"

pytestmark = pytest.mark.skipif(
    not REALDATA.is_dir(), reason=f"real payloads not present at {REALDATA}"
)


# -- loading (unwrapping as SOURCES.md describes) ---------------------------------


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _msdocs(path: Path) -> dict:
    text = path.read_text()
    text = re.sub(r",?\s*\n\s*\.\.\.\s*\n", "\n", text)
    text = re.sub(r",(\s*[}\]])", r"\1", text)
    return json.loads(text)


def _mock_bodies(path: Path) -> list[dict]:
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load(path.read_text())
    bodies = []
    for rule in config.get("rules", []):
        for response in rule.get("responses", []):
            body = response.get("body", "")
            m = re.search(r"minify_json\s*`(.*)`", body, re.S)
            raw = m.group(1) if m else body
            try:
                bodies.append(json.loads(raw))
            except ValueError:
                continue
    return bodies


def _values(body) -> list[dict]:
    if isinstance(body, dict) and isinstance(body.get("value"), list):
        return body["value"]
    if isinstance(body, list):
        return body
    return [body] if isinstance(body, dict) else []


def _xsoar_cases(path: Path) -> list:
    data = json.loads(path.read_text())
    return [case["mock_response"] for case in data.values() if "mock_response" in case]


def real_mde_alerts() -> list[dict]:
    out = []
    folder = REALDATA / "mde_alerts"
    grouped: dict[str, dict] = {}
    for line in _lines(folder / "elastic_mde_log_test-defenderatp.log"):
        if "value" in line:
            continue
        key = (line["id"], line.get("machineId"))
        alert = grouped.setdefault(key, {**line, "evidence": []})
        if line.get("evidence"):
            alert["evidence"].append(line["evidence"])
    out += grouped.values()
    for body in _mock_bodies(folder / "elastic_mde_http-mock-config.yml"):
        out += [v for v in _values(body) if "alertCreationTime" in v]
    for name in (
        "msdocs_mde_get-alerts_example1_default.txt",
        "msdocs_mde_get-alerts_example2_top10_expand_evidence.txt",
    ):
        out += _values(_msdocs(folder / name))  # fmt: skip
    return out


def real_graph_alerts() -> list[dict]:
    folder = REALDATA / "graph_alerts_v2"
    out = _lines(folder / "elastic_m365_defender_alert_test-alert.log")
    for body in _mock_bodies(
        folder / "elastic_m365_defender_alert-http-mock-config.yml"
    ):
        out += [v for v in _values(body) if "serviceSource" in v]
    out += _values(json.loads((folder / "elastic_m365d_script_minimal_alerts_page.json")
                              .read_text()))  # fmt: skip
    for body in _xsoar_cases(
        folder / "xsoar_graphsecurity_test_search_alerts_command.json"
    ):
        out += [v for v in _values(body) if "serviceSource" in v]
    return out


def real_graph_incidents() -> list[dict]:
    folder = REALDATA / "graph_incidents"
    out: list[dict] = []
    grouped: dict[str, dict] = {}
    for line in _lines(folder / "elastic_m365_defender_incident_test-incident.log"):
        inc = grouped.setdefault(line["id"], {**line, "alerts": []})
        inc["alerts"].append(line["alerts"])
    out += grouped.values()
    out += _lines(folder / "elastic_m365_defender_incident_test-incident-no-alerts.log")
    for body in _mock_bodies(
        folder / "elastic_m365_defender_incident-http-mock-config.yml"
    ):
        out += [v for v in _values(body) if "incidentWebUrl" in v]
    for name in (
        "xsoar_graphsecurity_incidents_list_response.json",
        "xsoar_graphsecurity_incidents_single_response.json",
    ):
        out += _values(json.loads((folder / name).read_text()))  # fmt: skip
    out += _values(
        _msdocs(folder / "msdocs_graph_list-incidents_example2_expand_alerts_"
                "trailing_commas.txt")
    )  # fmt: skip
    return out


def real_xdr_incidents() -> list[dict]:
    folder = REALDATA / "xdr_incidents"
    out = _values(
        _msdocs(folder / "msdocs_m365d_api-list-incidents_response_example.txt")
    )
    out.append(
        json.loads((folder / "xsoar_m365d_raw_incident_with_user.json").read_text())
    )
    return out


def real_mcas_alerts() -> list[dict]:
    data = json.loads(
        (REALDATA / "mcas_alerts" / "xsoar_mcas_test_data.json").read_text()
    )
    return [data["ALERT_BY_ID_DATA"], *data["incidents"]]


# -- our side ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ours():
    world = make_world(backlog_per_tenant=300)
    tenant = first_tenant(world)
    world.advance(1)
    for source in ("mde", "mcas", "mdo"):
        world.add_alert(tenant.id, source, {"comments": [
            {"comment": "c", "createdBy": "a@b", "createdTime": "2026-01-01T00:00:00Z"}
        ]})  # fmt: skip
    st = world.stream(tenant.id)
    enums = graph.Enums(Call(world, _req(), "graph"))
    incs = st.incidents
    return {
        "mde": [mde.render_alert(a, True) for a in st.alerts if a.source == "mde"],
        "graph_alerts": [graph.render_alert(a, enums) for a in st.alerts],
        "graph_incidents": [graph.render_incident(i, enums, True) for i in incs],
        "xdr": [xdr.render_incident(i) for i in incs],
        "mcas": [
            mcas.render_alert(a, world.base_url)
            for a in st.alerts
            if a.source == "mcas"
        ],
        "world": world,
    }


def _req():
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    return Request(EnvironBuilder(path="/graph/").get_environ())


def _jtype(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _types(objs: list[dict]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for obj in objs:
        for key, value in obj.items():
            if value is not None:
                out[key].add(_jtype(value))
            else:
                out.setdefault(key, set())
    return out


def compare(real: list[dict], mine: list[dict], documented: set[str], ignore=()):
    assert real, "no real payloads loaded"
    real_t, my_t = _types(real), _types(mine)
    missing = (set(real_t) & documented) - set(my_t) - set(ignore)
    assert not missing, f"documented keys the emulator does not render: {missing}"
    for key in set(real_t) & set(my_t) - set(ignore):
        if real_t[key] and my_t[key]:
            assert real_t[key] & my_t[key], (key, real_t[key], my_t[key])


def enum_check(real, mine, key, allowed, real_filter=None):
    seen_real = {o.get(key) for o in real if o.get(key) is not None}
    if real_filter:
        seen_real = {v for v in seen_real if real_filter(v)}
    seen_mine = {o.get(key) for o in mine if o.get(key) is not None}
    assert seen_real <= set(allowed), (key, seen_real - set(allowed))
    assert seen_mine <= set(allowed), (key, seen_mine - set(allowed))


# -- the checks ---------------------------------------------------------------------

MDE_KEYS = {
    "id", "incidentId", "investigationId", "assignedTo", "severity", "status",
    "classification", "determination", "investigationState", "detectionSource",
    "detectorId", "category", "threatFamilyName", "threatName", "title", "description",
    "alertCreationTime", "firstEventTime", "lastEventTime", "lastUpdateTime",
    "resolvedTime", "machineId", "computerDnsName", "rbacGroupName", "aadTenantId",
    "mitreTechniques", "relatedUser", "comments", "evidence",
}  # fmt: skip


def test_mde_alert_shape_matches_real_payloads(ours):
    real = real_mde_alerts()
    compare(real, ours["mde"], MDE_KEYS)
    real_ev = [e for a in real for e in a.get("evidence") or []]
    my_ev = [e for a in ours["mde"] for e in a["evidence"]]
    compare(real_ev, my_ev, set(mde._ev("User", 0)))
    enum_check(real, ours["mde"], "severity",
               ("UnSpecified", "Informational", "Low", "Medium", "High"))  # fmt: skip
    enum_check(
        real, ours["mde"], "status", ("Unknown", "New", "InProgress", "Resolved")
    )


GRAPH_ALERT_KEYS = {
    "@odata.type", "id", "providerAlertId", "incidentId", "status", "severity",
    "classification", "determination", "serviceSource", "detectionSource",
    "detectorId", "tenantId", "title", "description", "recommendedActions", "category",
    "assignedTo", "alertWebUrl", "incidentWebUrl", "actorDisplayName",
    "threatDisplayName", "threatFamilyName", "mitreTechniques", "createdDateTime",
    "lastUpdateDateTime", "resolvedDateTime", "firstActivityDateTime",
    "lastActivityDateTime", "comments", "evidence", "systemTags", "productName",
    "alertPolicyId", "additionalData",
}  # fmt: skip


def test_graph_alert_shape_and_evidence_match_real_payloads(ours):
    real = real_graph_alerts()
    compare(real, ours["graph_alerts"], GRAPH_ALERT_KEYS)
    for kind in ("deviceEvidence", "fileEvidence", "processEvidence", "userEvidence",
                 "ipEvidence", "urlEvidence", "registryKeyEvidence"):  # fmt: skip
        t = "#microsoft.graph.security." + kind
        real_ev = [
            e for a in real for e in a.get("evidence") or [] if e["@odata.type"] == t
        ]
        my_ev = [e for a in ours["graph_alerts"] for e in a["evidence"]
                 if e["@odata.type"] == t]  # fmt: skip
        if real_ev:
            compare(real_ev, my_ev, set().union(*map(set, real_ev)))
    enum_check(
        real,
        ours["graph_alerts"],
        "status",
        ("unknown", "new", "inProgress", "resolved", "unknownFutureValue"),
    )
    enum_check(
        real,
        ours["graph_alerts"],
        "severity",
        ("unknown", "informational", "low", "medium", "high", "unknownFutureValue"),
    )
    enum_check(real, ours["graph_alerts"], "classification",
               ("unknown", "falsePositive", "truePositive",
                "informationalExpectedActivity", "unknownFutureValue"))  # fmt: skip
    enum_check(
        real,
        ours["graph_alerts"],
        "determination",
        tuple(graph.DETERMINATION_IN) + ("unknownFutureValue",),
    )


def test_graph_incident_shape_matches_real_payloads(ours):
    real = real_graph_incidents()
    keys = {"id", "incidentWebUrl", "redirectIncidentId", "tenantId", "displayName",
            "createdDateTime", "lastUpdateDateTime", "assignedTo", "classification",
            "determination", "status", "severity", "customTags", "systemTags",
            "description", "comments", "alerts", "lastModifiedBy"}  # fmt: skip
    compare(real, ours["graph_incidents"], keys)
    enum_check(
        real,
        ours["graph_incidents"],
        "status",
        (
            "active",
            "resolved",
            "inProgress",
            "redirected",
            "unknownFutureValue",
            "awaitingAction",
        ),
        real_filter=lambda v: v[:1].islower(),
    )  # docs example 1 is PascalCase
    real_alerts = [a for i in real for a in i.get("alerts") or []]
    compare(real_alerts, [a for i in ours["graph_incidents"] for a in i["alerts"]],
            GRAPH_ALERT_KEYS)  # fmt: skip


def test_xdr_incident_shape_matches_real_payloads(ours):
    real = real_xdr_incidents()
    keys = {"incidentId", "redirectIncidentId", "incidentName", "createdTime",
            "lastUpdateTime", "assignedTo", "classification", "determination",
            "status", "severity", "tags", "comments", "alerts"}  # fmt: skip
    compare(real, ours["xdr"], keys)
    real_alerts = [a for i in real for a in i["alerts"]]
    my_alerts = [a for i in ours["xdr"] for a in i["alerts"]]
    alert_keys = {
        "alertId", "incidentId", "serviceSource", "creationTime", "lastUpdatedTime",
        "resolvedTime", "firstActivity", "lastActivity", "title", "description",
        "category", "status", "severity", "investigationId", "investigationState",
        "classification", "determination", "detectionSource", "assignedTo",
        "actorName", "threatFamilyName", "mitreTechniques", "devices", "entities",
    }  # fmt: skip
    compare(real_alerts, my_alerts, alert_keys)
    real_devices = [d for a in real_alerts for d in a.get("devices") or []]
    my_devices = [d for a in my_alerts for d in a["devices"]]
    if real_devices:
        compare(real_devices, my_devices, set().union(*map(set, real_devices)))
    real_entities = [e for a in real_alerts for e in a.get("entities") or []]
    my_entities = [e for a in my_alerts for e in a["entities"]]
    compare(real_entities, my_entities, set(xdr.ENTITY_KEYS) | {"entityType"})
    enum_check(real, ours["xdr"], "severity",
               ("UnSpecified", "Informational", "Low", "Medium", "High"))  # fmt: skip


def test_mcas_alert_shape_matches_real_payloads(ours):
    real = real_mcas_alerts()
    keys = {"_id", "timestamp", "entities", "title", "description", "stories",
            "policy", "contextId", "threatScore", "isSystemAlert", "idValue",
            "statusValue", "severityValue", "handledByUser", "comment", "resolveTime",
            "URL", "resolutionStatusValue", "intent", "isMarkdown",
            "evidence"}  # fmt: skip
    compare(real, ours["mcas"], keys, ignore=("comment", "handledByUser"))
    enum_check(real, ours["mcas"], "severityValue", (0, 1, 2, 3))
    enum_check(real, ours["mcas"], "statusValue", (0, 1, 2))


def test_error_bodies_follow_real_shapes(ours):
    world = ours["world"]
    tenant = first_tenant(world)
    errors = REALDATA / "other" / "errors"
    real_mde = json.loads((errors / "msdocs_mde_error_ResourceNotFound_example.json")
                          .read_text())  # fmt: skip
    mine = call(world, "GET", "/defender/api/alerts/nope", token(world, tenant, "mde"))
    assert set(mine.json()["error"]) >= set(real_mde["error"])
    real_graph = json.loads(
        (errors / "elastic_m365d_mock_graph_403_Authorization_RequestDenied.json")
        .read_text()
    )  # fmt: skip
    mine = call(world, "GET", "/graph/v1.0/security/alerts_v2/nope",
                token(world, tenant, "graph"))  # fmt: skip
    assert set(mine.json()["error"]) >= set(real_graph["error"])

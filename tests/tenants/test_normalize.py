"""The normalisers against real payloads others captured (../shared/realdata)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alerts import normalize
from alerts.models import AlertStatus, Severity

REALDATA = Path(__file__).resolve().parents[2].parent / "shared" / "realdata"
TENANT = "aaaabbbb-0000-cccc-1111-dddd2222eeee"

pytestmark = pytest.mark.skipif(
    not REALDATA.is_dir(), reason=f"real payloads are absent ({REALDATA})"
)


# --- unwrapping, as realdata/SOURCES.md says ------------------------------------------


def load_json(relative: str):
    return json.loads((REALDATA / relative).read_text(encoding="utf-8"))


def load_docs_example(relative: str):
    """A docs code block: drop the literal `...` element and trailing commas."""
    text = (REALDATA / relative).read_text(encoding="utf-8")
    text = re.sub(r",?\s*\n\s*\.\.\.\s*\n", "\n", text)
    text = re.sub(r",(\s*[}\]])", r"\1", text)
    return json.loads(text)


def load_lines(relative: str) -> list[dict]:
    lines = (REALDATA / relative).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def grouped(lines: list[dict], key: str, child: str) -> list[dict]:
    """Elastic's split files: one line per child; group them back under `key`."""
    out: dict[str, dict] = {}
    for line in lines:
        if "value" in line:
            continue
        item = out.setdefault(line[key], {**line, child: []})
        if isinstance(line.get(child), dict):
            item[child].append(line[child])
    return list(out.values())


def mde_alerts() -> list[dict]:
    alerts = []
    for name in ("xsoar_mde_first_response_alerts.json",):
        alerts += load_json(f"mde_alerts/{name}")["value"]
    for name in (
        "msdocs_mde_get-alerts_example1_default.txt",
        "msdocs_mde_get-alerts_example2_top10_expand_evidence.txt",
    ):
        alerts += load_docs_example(f"mde_alerts/{name}")["value"]
    alerts += grouped(
        load_lines("mde_alerts/elastic_mde_log_test-defenderatp.log"), "id", "evidence"
    )
    return alerts


def graph_alerts() -> list[dict]:
    alerts = load_lines("graph_alerts_v2/elastic_m365_defender_alert_test-alert.log")
    alerts += load_json(
        "graph_alerts_v2/elastic_m365d_script_minimal_alerts_page.json"
    )["value"]
    search = load_json(
        "graph_alerts_v2/xsoar_graphsecurity_test_search_alerts_command.json"
    )
    alerts += search["test_case_2"]["mock_response"]["value"]
    return alerts


def graph_incidents() -> list[dict]:
    incidents = grouped(
        load_lines("graph_incidents/elastic_m365_defender_incident_test-incident.log"),
        "id",
        "alerts",
    )
    incidents += load_lines(
        "graph_incidents/elastic_m365_defender_incident_test-incident-no-alerts.log"
    )
    incidents += load_json(
        "graph_incidents/xsoar_graphsecurity_incidents_list_response.json"
    )["value"]
    incidents += load_json(
        "graph_incidents/msdocs_graph_list-incidents_example1_PascalCase_enums.json"
    )["value"]
    incidents += load_docs_example(
        "graph_incidents/msdocs_graph_list-incidents_example2_expand_alerts_trailing_commas.txt"
    )["value"]
    return incidents


def xdr_incidents() -> list[dict]:
    incidents = load_docs_example(
        "xdr_incidents/msdocs_m365d_api-list-incidents_response_example.txt"
    )["value"]
    incidents.append(load_json("xdr_incidents/xsoar_m365d_raw_incident_with_user.json"))
    return incidents


def mcas_alerts() -> list[dict]:
    data = load_json("mcas_alerts/xsoar_mcas_test_data.json")
    return [data["ALERT_BY_ID_DATA"], *data["incidents"]]


# --- every record of every source -----------------------------------------------------

ALERT_FIELDS = {
    "provider_id", "title", "description", "severity", "status", "category",
    "classification", "determination", "assigned_to", "created_at_source",
    "updated_at_source", "first_activity_at", "last_activity_at", "resolved_at",
    "incident_provider_id", "devices", "users", "evidence", "evidence_summary",
    "entities_text", "portal_url", "raw",
}  # fmt: skip


def check_alert(row: dict, raw: dict) -> None:
    assert set(row) == ALERT_FIELDS
    assert row["raw"] is raw
    assert row["provider_id"]
    assert row["updated_at_source"].tzinfo is not None
    assert row["severity"] in Severity.values
    assert row["status"] in AlertStatus.values
    assert row["portal_url"].startswith("https://")
    for item in row["evidence"]:
        assert {"type", "name", "detail"} <= set(item)
        assert item["name"] or item["detail"]
    assert len(row["evidence_summary"]) <= 500


def test_every_real_mde_alert_normalises():
    alerts = mde_alerts()
    assert len(alerts) >= 7
    for raw in alerts:
        check_alert(normalize.mde_alert(raw, tenant_id=TENANT), raw)


def test_every_real_graph_alert_and_incident_normalises():
    for raw in graph_alerts():
        check_alert(normalize.graph_alert(raw, tenant_id=TENANT), raw)
    embedded = 0
    for raw in graph_incidents():
        incident, alerts = normalize.graph_incident(raw, tenant_id=TENANT)
        assert incident["updated_at_source"] is not None
        assert incident["portal_url"].startswith("https://security.microsoft.com/")
        embedded += len(alerts)
    assert embedded >= 2


def test_every_real_xdr_incident_normalises_with_its_alerts():
    total = 0
    for raw in xdr_incidents():
        incident, alerts = normalize.xdr_incident(raw, tenant_id=TENANT)
        for row, alert in zip(alerts, raw["alerts"], strict=True):
            check_alert(row, alert)
            assert row["incident_provider_id"] == incident["provider_id"]
        total += len(alerts)
    assert total >= 4


def test_every_real_cloud_apps_alert_normalises():
    for raw in mcas_alerts():
        check_alert(normalize.mcas_alert(raw, tenant_id=TENANT), raw)


# --- what the fields say --------------------------------------------------------------


def test_mde_docs_alert_fields():
    raw = load_docs_example(
        "mde_alerts/msdocs_mde_get-alerts_example2_top10_expand_evidence.txt"
    )["value"][0]
    row = normalize.mde_alert(raw, tenant_id=TENANT)
    assert row["provider_id"] == raw["id"]
    assert row["severity"] == Severity(raw["severity"].lower())
    assert row["portal_url"] == (
        f"https://security.microsoft.com/alerts/{raw['id']}?tid={TENANT}"
    )
    assert row["updated_at_source"] == normalize.parse_time(raw["lastUpdateTime"])
    types = {item["type"] for item in row["evidence"]}
    assert types & {"file", "process", "user"}
    for item in raw["evidence"]:
        if item.get("sha1"):
            assert item["sha1"] in row["entities_text"]
    assert raw["computerDnsName"] in row["entities_text"]


def test_elastic_mde_alert_rebuilt_from_split_lines_keeps_all_evidence():
    lines = load_lines("mde_alerts/elastic_mde_log_test-defenderatp.log")
    alerts = grouped(lines, "id", "evidence")
    by_id = {a["id"]: a for a in alerts}
    for raw in by_id.values():
        row = normalize.mde_alert(raw, tenant_id=TENANT)
        assert len(row["evidence"]) <= len(raw["evidence"])
        assert row["status"] in (AlertStatus.NEW, AlertStatus.RESOLVED)


def test_graph_alert_enums_and_evidence():
    raw = load_lines("graph_alerts_v2/elastic_m365_defender_alert_test-alert.log")[0]
    row = normalize.graph_alert(raw, tenant_id=TENANT)
    assert row["classification"] == ""  # "unknown"
    assert row["determination"] == ""
    assert {"device", "file", "process", "registry"} <= {
        item["type"] for item in row["evidence"]
    }
    assert row["devices"] and row["devices"][0]["name"]


def test_pascal_case_graph_incident_enums_map_like_camel_case():
    raw = load_json(
        "graph_incidents/msdocs_graph_list-incidents_example1_PascalCase_enums.json"
    )["value"][0]
    incident, _ = normalize.graph_incident(raw, tenant_id=TENANT)
    assert incident["classification"] == "true_positive"
    assert incident["determination"] == "multi_staged_attack"
    assert incident["status"] == "active"
    assert incident["severity"] == Severity.MEDIUM


def test_sparse_xdr_incident_takes_its_time_from_its_alert():
    raw = load_json("xdr_incidents/xsoar_m365d_raw_incident_with_user.json")
    incident, alerts = normalize.xdr_incident(raw, tenant_id=TENANT)
    assert incident["updated_at_source"] == alerts[0]["updated_at_source"]
    assert alerts[0]["users"][0]["upn"] == "username@domain"
    assert "192.0.2.1" in alerts[0]["entities_text"]


def test_cloud_apps_alert_null_strings_and_milliseconds():
    raw = load_json("mcas_alerts/xsoar_mcas_test_data.json")["ALERT_BY_ID_DATA"]
    row = normalize.mcas_alert(raw, tenant_id=TENANT)
    assert row["assigned_to"] == ""  # "null" is Cloud Apps' way of saying nobody
    assert row["created_at_source"] == datetime(2020, 7, 9, 8, 36, 42, 753000, UTC)
    assert row["updated_at_source"] == normalize.parse_time(raw["resolveTime"])
    assert row["severity"] == Severity.LOW
    assert row["portal_url"] == raw["URL"]
    assert "image (2).png" in row["entities_text"]


def test_same_determination_spelled_differently_is_one_value():
    spellings = ("CompromisedUser", "compromisedAccount", "CompromisedAccount")
    assert {normalize.determination(s) for s in spellings} == {"compromised_account"}
    assert normalize.determination("NotAvailable") == ""
    assert normalize.determination("InsufficientData") == normalize.determination(
        "notEnoughDataToValidate"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "2021-01-26T20:33:57.7220239Z",
            datetime(2021, 1, 26, 20, 33, 57, 722023, UTC),
        ),
        ("2021-01-26T20:33:59.2Z", datetime(2021, 1, 26, 20, 33, 59, 200000, UTC)),
        ("2026-01-10T08:01:05Z", datetime(2026, 1, 10, 8, 1, 5, tzinfo=UTC)),
        ("2026-01-10T10:01:05+02:00", datetime(2026, 1, 10, 8, 1, 5, tzinfo=UTC)),
        (
            "2026-01-10t10:01:05.123456789 +0200",
            datetime(2026, 1, 10, 8, 1, 5, 123456, UTC),
        ),
        ("2026-01-10 08:01", datetime(2026, 1, 10, 8, 1, tzinfo=UTC)),  # no zone: UTC
        (" 2026-01-10T08:01:05z ", datetime(2026, 1, 10, 8, 1, 5, tzinfo=UTC)),
        ("2026-01-10", None),  # a day is not a time
        ("2026-01-10T08:01:05,5Z", None),
        ("2026-02-30T08:01:05Z", None),
        (1767002462000, datetime(2025, 12, 29, 10, 1, 2, tzinfo=UTC)),
        ("not a time", None),
        (None, None),
    ],
)
def test_parse_time(text, expected):
    assert normalize.parse_time(text) == expected


def test_payload_without_id_or_time_is_unusable():
    with pytest.raises(normalize.Unusable):
        normalize.mde_alert({"title": "x"}, tenant_id=TENANT)
    with pytest.raises(normalize.Unusable):
        normalize.graph_alert({"id": "x"}, tenant_id=TENANT)


def test_a_foreign_link_is_not_kept():
    raw = {"_id": "a" * 24, "timestamp": 1, "URL": "javascript:alert(1)"}
    row = normalize.mcas_alert(raw, tenant_id=TENANT)
    assert row["portal_url"].startswith("https://security.microsoft.com/alerts/")

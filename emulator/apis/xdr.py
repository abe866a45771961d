"""Microsoft Defender XDR: incidents and advanced hunting (reference §7).

``GET /api/incidents`` (newest ``lastUpdateTime`` first, alerts/devices/entities
embedded), ``GET|PATCH /api/incidents/{id}``, ``POST /api/advancedhunting/run``.
"""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Response

from emulator import odata, streams
from emulator.apis import mde
from emulator.apis.common import ApiError, Call, evidence, page_index
from emulator.encoding import RenderCache

CONTEXT = "https://api.security.microsoft.com/api/$metadata#Incidents"
MAX_TOP = 100
READ = frozenset({"Incident.Read.All", "Incident.ReadWrite.All"})
WRITE = frozenset({"Incident.ReadWrite.All"})
HUNT = frozenset({"AdvancedHunting.Read.All"})
STATUSES = ("Active", "InProgress", "Resolved", "Redirected")
PATCH_FIELDS = (
    "status", "assignedTo", "classification", "determination", "tags", "comment",
)  # fmt: skip

FILTER_PROPS: dict[str, tuple[str, Any]] = {
    "lastUpdateTime": ("datetime", lambda i: i.last_update),
    "createdTime": ("datetime", lambda i: i.created),
    "status": ("enum", lambda i: i.status),
    "assignedTo": ("string", lambda i: i.assigned_to),
}
FILTER_TYPES = {k: v[0] for k, v in FILTER_PROPS.items()}
GETTERS = {k: v[1] for k, v in FILTER_PROPS.items()}


def resolve(parts: list[str], method: str):
    from emulator.apis import Route

    if not parts or parts[0] != "api":
        return None
    rest = parts[1:]
    if rest[:1] == ["v1.0"]:
        rest = rest[1:]
    if rest == ["incidents"]:
        if method != "GET":
            return "method"
        return Route("xdr", list_incidents, READ, "xdr")
    if len(rest) == 2 and rest[0] == "incidents":
        if method == "GET":
            return Route("xdr", get_incident, READ, "xdr", {"incident_id": rest[1]})
        if method == "PATCH":
            return Route("xdr", patch_incident, WRITE, "xdr", {"incident_id": rest[1]})
        return "method"
    if rest == ["advancedhunting", "run"]:
        if method != "POST":
            return "method"
        return Route("hunting", run_hunting, HUNT, "xdr")
    return None


# -- rendering ---------------------------------------------------------------------

ENTITY_KEYS = (
    "sha1", "sha256", "fileName", "filePath", "processId", "processCommandLine",
    "processCreationTime", "parentProcessId", "parentProcessCreationTime", "ipAddress",
    "url", "registryKey", "registryHive", "registryValueType", "registryValue",
    "accountName", "domainName", "userSid", "aadUserId", "userPrincipalName",
    "mailboxDisplayName", "mailboxAddress", "clusterBy", "sender", "recipient",
    "subject", "deliveryAction", "securityGroupId", "securityGroupName", "deviceId",
)  # fmt: skip


def render_devices(alert: streams.Alert) -> list[dict[str, Any]]:
    m = alert.machine()
    if m is None:
        return []
    return [
        {
            "mdatpDeviceId": m.id,
            "aadDeviceId": m.aad_id,
            "deviceDnsName": m.host,
            "osPlatform": m.os,
            "version": m.version,
            "osProcessor": "x64",
            "osBuild": m.build,
            "healthStatus": "Active",
            "riskScore": {"High": "High", "Medium": "Medium"}.get(
                alert.severity, "Low"
            ),
            "rbacGroupName": "Servers"
            if m.os.startswith("WindowsServer")
            else "Workstations",
            "rbacGroupId": 12 if m.os.startswith("WindowsServer") else 7,
            "firstSeen": streams.fmt_time(alert.stream.t0 - 200 * streams.DAY_US),
            "tags": [],
            "defenderAvStatus": "Updated",
            "onboardingStatus": "Onboarded",
            "vmMetadata": None,
            "loggedOnUsers": [],
        }
    ]


def render_entities(alert: streams.Alert) -> list[dict[str, Any]]:
    mde_items = {e["entityType"]: e for e in mde.render_evidence(alert)}
    m = alert.machine()
    device_id = m.id if m else None
    out = []
    for e in evidence(alert):
        kind = e["kind"]
        if kind == "Device":
            continue
        item: dict[str, Any] = dict.fromkeys(ENTITY_KEYS)
        item["entityType"] = kind
        src = mde_items.get(kind)
        if src:
            for k in ENTITY_KEYS:
                if k in src:
                    item[k] = src[k]
        if kind == "MailBox":
            item.update(
                mailboxDisplayName=e["display"],
                mailboxAddress=e["upn"],
                userPrincipalName=e["upn"],
            )
        elif kind == "User" and not src:
            item.update(
                accountName=e["user"],
                domainName=e["netbios"],
                aadUserId=e["aad_user_id"],
                userPrincipalName=e["upn"],
            )
        elif kind in ("Ip", "Url", "File") and not src:
            item.update(ipAddress=e["ip"] if kind == "Ip" else None)
            item.update(url=e["url"] if kind == "Url" else None)
            if kind == "File":
                item.update(fileName=e["file"], sha1=e["sha1"], sha256=e["sha256"])
        item["evidenceCreationTime"] = streams.fmt_time(e["at"])
        item["verdict"] = "Suspicious"
        item["remediationStatus"] = "None"
        item["deviceId"] = device_id
        out.append(item)
    return out


def render_alert(alert: streams.Alert) -> dict[str, Any]:
    """An alert embedded in an XDR incident (§7.1)."""
    fmt = streams.fmt_time
    return {
        "alertId": alert.id,
        "providerAlertId": alert.provider_id,
        "incidentId": alert.incident.id,
        "serviceSource": streams.SERVICE_SOURCE[alert.source],
        "creationTime": fmt(alert.created),
        "lastUpdatedTime": fmt(alert.last_update, trim=True),
        "resolvedTime": fmt(alert.resolved),
        "firstActivity": fmt(alert.first_event),
        "lastActivity": fmt(alert.last_event),
        "title": alert.title,
        "description": alert.description,
        "category": alert.field("category"),
        "status": alert.status,
        "severity": alert.severity,
        "investigationId": alert.investigation_id,
        "investigationState": alert.investigation_state or "UnsupportedAlertType",
        "classification": alert.classification,
        "determination": alert.determination,
        "detectionSource": alert.field("detectionSource"),
        "detectorId": streams.detector_id(alert.tmpl),
        "assignedTo": alert.assigned_to,
        "actorName": None,
        "threatFamilyName": alert.field("threatFamilyName"),
        "mitreTechniques": alert.field("mitreTechniques"),
        "devices": render_devices(alert),
        "entities": render_entities(alert),
    }


def render_incident(
    inc: streams.Incident, cache: RenderCache | None = None
) -> dict[str, Any]:
    """One incident in the XDR shape; alerts from ``cache`` when one is given."""
    fmt = streams.fmt_time
    return {
        "incidentId": inc.id,
        "incidentUri": f"https://security.microsoft.com/incidents/{inc.id}"
        f"?tid={inc.stream.tenant.id}",
        "redirectIncidentId": inc.redirect_id,
        "incidentName": inc.name,
        "createdTime": fmt(inc.created),
        "lastUpdateTime": fmt(inc.last_update, trim=True),
        "assignedTo": inc.assigned_to,
        "classification": inc.classification or "Unknown",
        "determination": inc.determination or "NotAvailable",
        "detectionSource": inc.alerts[0].field("detectionSource")
        if inc.alerts
        else None,
        "status": inc.status,
        "severity": inc.severity,
        "tags": list(inc.tags),
        "comments": list(inc.comments),
        "alerts": [
            cache.fetch(a, render_alert) if cache else render_alert(a)
            for a in inc.alerts
        ],
    }


# -- handlers ----------------------------------------------------------------------


def list_incidents(call: Call) -> Response:
    args = call.request.args
    top = odata.parse_int_option(args.get("$top"), "$top", MAX_TOP)
    if top > MAX_TOP:
        if call.world.api_options.get("xdr_top_over_limit") == "error":
            raise odata.ODataError(
                f"The limit of '{MAX_TOP}' for Top query has been exceeded. "
                f"The value from the incoming request is '{top}'."
            )
        top = MAX_TOP
    skip = odata.parse_int_option(args.get("$skip"), "$skip", 0)
    flt = odata.parse_filter(args.get("$filter"), FILTER_TYPES)
    st = call.stream
    page = page_index(
        st, st.inc_idx, st.incidents, flt, "lastUpdateTime", GETTERS, skip, top,
        newest_first=True,
    )  # fmt: skip
    cache = call.world.rendered
    return call.json(
        {
            "@odata.context": CONTEXT,
            "value": [render_incident(i, cache) for i in page.rows],
        }
    )


def find_incident(call: Call, incident_id: str) -> streams.Incident:
    inc = None
    if incident_id.isdigit():
        inc = call.stream.inc_by_id.get(int(incident_id))
    if inc is None:
        raise ApiError(404, f"Incident {incident_id} was not found", "ResourceNotFound")
    return inc


def get_incident(call: Call, incident_id: str) -> Response:
    inc = find_incident(call, incident_id)
    return call.json({"@odata.context": CONTEXT + "/$entity", **render_incident(inc)})


def patch_incident(call: Call, incident_id: str) -> Response:
    inc = find_incident(call, incident_id)
    body = call.body_json()
    if not isinstance(body, dict) or not body:
        raise ApiError(400, "Request body is incorrect", "InvalidRequestBody")
    unknown = [k for k in body if k not in PATCH_FIELDS]
    if unknown:
        raise ApiError(
            400,
            f"Request body is incorrect: unknown property '{unknown[0]}'",
            "InvalidRequestBody",
        )
    checks = (
        ("status", STATUSES),
        ("classification", mde.CLASSIFICATIONS + ("Unknown",)),
        ("determination", mde.DETERMINATIONS),
    )
    for name, allowed in checks:
        if name in body and body[name] is not None and body[name] not in allowed:
            raise ApiError(
                400, f"Invalid value '{body[name]}' for '{name}'", "InvalidRequestBody"
            )
    if "tags" in body and not (
        isinstance(body["tags"], list) and all(isinstance(t, str) for t in body["tags"])
    ):
        raise ApiError(400, "'tags' must be a list of strings", "InvalidRequestBody")
    apply_incident_change(
        call,
        inc,
        status=body.get("status"),
        assigned_to=body.get("assignedTo"),
        classification=body.get("classification"),
        determination=body.get("determination"),
        tags=body.get("tags"),
        comment=body.get("comment"),
        fields=body,
    )
    return call.json({"@odata.context": CONTEXT + "/$entity", **render_incident(inc)})


def apply_incident_change(
    call: Call,
    inc: streams.Incident,
    *,
    status: str | None = None,
    assigned_to: str | None = None,
    classification: str | None = None,
    determination: str | None = None,
    tags: list[str] | None = None,
    comment: str | None = None,
    description: str | None = None,
    fields: dict | None = None,
) -> None:
    """Write an incident change (XDR spellings); resolving or assigning an incident
    does the same to its alerts, as the real service does."""
    fields = fields or {}
    now = call.now_us
    inc.manual = True
    if "classification" in fields:
        inc.classification = None if classification == "Unknown" else classification
    if "determination" in fields:
        inc.determination = None if determination == "NotAvailable" else determination
    if "assignedTo" in fields:
        inc.assigned_to = assigned_to
    if tags is not None:
        inc.tags = list(tags)
    if description is not None:
        inc.description = description
    if comment:
        inc.comments.append(
            {"comment": comment, "createdBy": call.actor,
             "createdTime": streams.fmt_time(now)}
        )  # fmt: skip
    alert_fields: dict[str, Any] = {}
    if "assignedTo" in fields:
        alert_fields["assignedTo"] = assigned_to
    if status == "Resolved":
        alert_fields["status"] = "Resolved"
        if inc.classification:
            alert_fields["classification"] = inc.classification
            alert_fields["determination"] = inc.determination
    elif status in ("Active", "InProgress") and inc.status == "Resolved":
        alert_fields["status"] = "New" if status == "Active" else "InProgress"
    for alert in inc.alerts:
        if alert_fields:
            mde.apply_alert_change(
                call,
                alert,
                status=alert_fields.get("status"),
                assigned_to=alert_fields.get("assignedTo"),
                classification=alert_fields.get("classification"),
                determination=alert_fields.get("determination"),
                fields=alert_fields,
            )
    if status:
        inc.status = status
    inc.stream.move_incident(inc, max(now, inc.last_update + 1))


def run_hunting(call: Call) -> Response:
    body = call.body_json()
    query = body.get("Query") if isinstance(body, dict) else None
    if not isinstance(query, str) or not query.strip():
        raise ApiError(
            400, "Missing required parameter 'Query'", "MissingRequiredParameter"
        )
    st = call.stream
    rows = []
    for alert in st.alerts[-5:]:
        d = alert.details()
        m = alert.machine() or st.machines[0]
        rows.append(
            {
                "Timestamp": streams.fmt_time(alert.first_event),
                "DeviceId": m.id,
                "DeviceName": m.host,
                "FileName": d["file"],
                "ProcessCommandLine": d["cmd"],
                "AccountName": d["user"],
                "SHA1": d["sha1"],
            }
        )
    schema = [
        {"Name": "Timestamp", "Type": "DateTime"},
        {"Name": "DeviceId", "Type": "String"},
        {"Name": "DeviceName", "Type": "String"},
        {"Name": "FileName", "Type": "String"},
        {"Name": "ProcessCommandLine", "Type": "String"},
        {"Name": "AccountName", "Type": "String"},
        {"Name": "SHA1", "Type": "String"},
    ]
    return call.json(
        {
            "Stats": {
                "ExecutionTime": 0.42,
                "resource_usage": {"cache": {}, "cpu": {"user": "00:00:00"}},
                "dataset_statistics": [
                    {"table_row_count": len(rows), "table_size": 120 * len(rows)}
                ],
            },
            "Schema": schema,
            "Results": rows,
        }
    )

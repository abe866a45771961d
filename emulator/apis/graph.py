"""Microsoft Graph security API: alerts_v2 and incidents (reference §8).

``GET /v1.0/security/alerts_v2`` (newest ``lastUpdateDateTime`` first unless
``$orderby=lastUpdateDateTime asc``), ``GET|PATCH /v1.0/security/alerts_v2/{id}``,
``POST .../alerts_v2/{id}/comments``, ``GET /v1.0/security/incidents`` (``$top`` > 50
-> 400, ``$expand=alerts``), ``GET|PATCH /v1.0/security/incidents/{id}``.
Enum members after ``unknownFutureValue`` read ``unknownFutureValue`` unless the
request says ``Prefer: include-unknown-enum-members``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from werkzeug.wrappers import Response

from emulator import odata, streams
from emulator.apis import mde, xdr
from emulator.apis.common import ApiError, Call, evidence, page_index
from emulator.encoding import RenderCache

ALERT_READ = frozenset({"SecurityAlert.Read.All", "SecurityAlert.ReadWrite.All"})
ALERT_WRITE = frozenset({"SecurityAlert.ReadWrite.All"})
INC_READ = frozenset({"SecurityIncident.Read.All", "SecurityIncident.ReadWrite.All"})
INC_WRITE = frozenset({"SecurityIncident.ReadWrite.All"})
T = "#microsoft.graph.security."


def _camel(value: str | None) -> str | None:
    return None if value is None else value[:1].lower() + value[1:]


# canonical (MDE spelling) -> Graph spelling
DETERMINATION_OUT = {
    "CompromisedUser": "compromisedAccount",
    "CompromisedAccount": "compromisedAccount",
    "ConfirmedUserActivity": "confirmedActivity",
    "Clean": "notMalicious",
    "InsufficientData": "notEnoughDataToValidate",
    "NoEnoughDataToValidate": "notEnoughDataToValidate",
    "NotAvailable": "unknown",
}
DETERMINATION_IN = {
    "unknown": None, "apt": "Apt", "malware": "Malware",
    "securityPersonnel": "SecurityPersonnel", "securityTesting": "SecurityTesting",
    "unwantedSoftware": "UnwantedSoftware", "other": "Other",
    "multiStagedAttack": "MultiStagedAttack", "compromisedAccount": "CompromisedUser",
    "compromisedUser": "CompromisedUser", "phishing": "Phishing",
    "maliciousUserActivity": "MaliciousUserActivity", "notMalicious": "Clean",
    "clean": "Clean", "notEnoughDataToValidate": "InsufficientData",
    "insufficientData": "InsufficientData",
    "confirmedActivity": "ConfirmedUserActivity",
    "confirmedUserActivity": "ConfirmedUserActivity",
    "lineOfBusinessApplication": "LineOfBusinessApplication",
}  # fmt: skip
CLASSIFICATION_IN = {
    "unknown": None,
    "falsePositive": "FalsePositive",
    "truePositive": "TruePositive",
    "informationalExpectedActivity": "InformationalExpectedActivity",
}
ALERT_STATUS_IN = {"new": "New", "inProgress": "InProgress", "resolved": "Resolved"}
INC_STATUS_IN = {
    "active": "Active", "inProgress": "InProgress", "resolved": "Resolved",
    "redirected": "Redirected",
}  # fmt: skip
DETECTION_SOURCE = {
    "WindowsDefenderAtp": "microsoftDefenderForEndpoint",
    "WindowsDefenderAv": "antivirus",
    "WindowsDefenderSmartScreen": "smartScreen",
    "CustomerTI": "customTi",
    "CustomDetection": "customDetection",
    "AutomatedInvestigation": "automatedInvestigation",
    "MCAS": "cloudAppSecurity",
    "OfficeATP": "microsoftDefenderForOffice365",
    "Manual": "manual",
}
SERVICE_SOURCE = {
    "mde": "microsoftDefenderForEndpoint",
    "mcas": "microsoftDefenderForCloudApps",
    "mdo": "microsoftDefenderForOffice365",
}
PRODUCT_NAME = {
    "mde": "Microsoft Defender for Endpoint",
    "mcas": "Microsoft Defender for Cloud Apps",
    "mdo": "Microsoft Defender for Office 365",
}
# Members listed after unknownFutureValue (need the Prefer header).
EVOLVED = {
    "microsoftDefenderForCloud", "microsoftDefenderForIoT",
    "microsoftDefenderForServers", "microsoftDefenderForStorage",
    "microsoftDefenderForDNS", "microsoftDefenderForDatabases",
    "microsoftDefenderForContainers", "microsoftDefenderForNetwork",
    "microsoftDefenderForAppService", "microsoftDefenderForKeyVault",
    "microsoftDefenderForResourceManager", "microsoftDefenderForApiManagement",
    "microsoftSentinel", "microsoftThreatIntelligence", "awaitingAction",
}  # fmt: skip


def _det_out(value: str | None) -> str:
    if value is None:
        return "unknown"
    return DETERMINATION_OUT.get(value) or _camel(value)


def _detection_source(alert: streams.Alert) -> str:
    raw = alert.field("detectionSource")
    return DETECTION_SOURCE.get(raw) or _camel(raw) or "unknown"


ALERT_FILTER: dict[str, tuple[str, Any]] = {
    "assignedTo": ("string", lambda a: a.assigned_to),
    "classification": ("enum", lambda a: _camel(a.classification) or "unknown"),
    "determination": ("enum", lambda a: _det_out(a.determination)),
    "createdDateTime": ("datetime", lambda a: a.created),
    "lastUpdateDateTime": ("datetime", lambda a: a.last_update),
    "severity": ("enum", lambda a: _camel(a.severity)),
    "serviceSource": ("enum", lambda a: SERVICE_SOURCE[a.source]),
    "status": ("enum", lambda a: _camel(a.status)),
}
INCIDENT_FILTER: dict[str, tuple[str, Any]] = {
    "assignedTo": ("string", lambda i: i.assigned_to),
    "classification": ("enum", lambda i: _camel(i.classification) or "unknown"),
    "determination": ("enum", lambda i: _det_out(i.determination)),
    "createdDateTime": ("datetime", lambda i: i.created),
    "lastUpdateDateTime": ("datetime", lambda i: i.last_update),
    "severity": ("enum", lambda i: _camel(i.severity)),
    "status": ("enum", lambda i: _camel(i.status)),
}


def resolve(parts: list[str], method: str):
    from emulator.apis import Route

    if len(parts) < 3 or parts[0] not in ("v1.0", "beta") or parts[1] != "security":
        return None
    rest = parts[2:]
    if rest == ["alerts_v2"]:
        return (
            Route("graph", list_alerts, ALERT_READ, "graph")
            if method == "GET"
            else "method"
        )
    if len(rest) == 2 and rest[0] == "alerts_v2":
        kw = {"alert_id": rest[1]}
        if method == "GET":
            return Route("graph", get_alert, ALERT_READ, "graph", kw)
        if method == "PATCH":
            return Route("graph", patch_alert, ALERT_WRITE, "graph", kw)
        return "method"
    if len(rest) == 3 and rest[0] == "alerts_v2" and rest[2] == "comments":
        if method != "POST":
            return "method"
        return Route("graph", post_comment, ALERT_WRITE, "graph", {"alert_id": rest[1]})
    if rest == ["incidents"]:
        return (
            Route("graph", list_incidents, INC_READ, "graph")
            if method == "GET"
            else "method"
        )
    if len(rest) == 2 and rest[0] == "incidents":
        kw = {"incident_id": rest[1]}
        if method == "GET":
            return Route("graph", get_incident, INC_READ, "graph", kw)
        if method == "PATCH":
            return Route("graph", patch_incident, INC_WRITE, "graph", kw)
        return "method"
    return None


# -- rendering ---------------------------------------------------------------------


class Enums:
    """Applies the unknownFutureValue rule for one request."""

    def __init__(self, call: Call):
        prefer = call.request.headers.get("Prefer", "")
        self.include = "include-unknown-enum-members" in prefer.lower()

    def __call__(self, value: str | None) -> str | None:
        if value in EVOLVED and not self.include:
            return "unknownFutureValue"
        return value

    # Equal rules render equally: the render cache tells renderings apart by them.
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Enums) and other.include == self.include

    def __hash__(self) -> int:
        return hash(self.include)


def _common(kind: str, at: int, roles: list[str] | None = None) -> dict[str, Any]:
    return {
        "@odata.type": T + kind,
        "createdDateTime": streams.fmt_time(at),
        "verdict": "suspicious",
        "remediationStatus": "none",
        "remediationStatusDetails": None,
        "roles": roles or [],
        "detailedRoles": [],
        "tags": [],
    }


def _file_details(e: dict, name: str | None = None, path: str | None = None) -> dict:
    return {
        "sha1": e["sha1"],
        "sha256": e["sha256"],
        "fileName": name or e["file"],
        "filePath": path or e["file_path"],
        "fileSize": 10_000 + e["pid"] * 37,
        "filePublisher": None,
        "signer": None,
        "issuer": None,
    }


def _user_account(e: dict) -> dict:
    return {
        "accountName": e["user"],
        "domainName": e["netbios"],
        "userSid": e["sid"],
        "azureAdUserId": e["aad_user_id"],
        "userPrincipalName": e["upn"],
        "displayName": e["display"],
    }


def render_evidence(alert: streams.Alert) -> list[dict[str, Any]]:
    out = []
    m = alert.machine()
    mde_id = m.id if m else None
    for e in evidence(alert):
        kind, at = e["kind"], e["at"]
        if kind == "Device":
            m = e["machine"]
            item = _common("deviceEvidence", at, ["compromised"])
            item.update(
                firstSeenDateTime=streams.fmt_time(
                    alert.stream.t0 - 200 * streams.DAY_US
                ),
                mdeDeviceId=m.id, azureAdDeviceId=m.aad_id, deviceDnsName=m.host,
                osPlatform=m.os, osBuild=m.build, version=m.version,
                healthStatus="active", riskScore=_camel(alert.severity),
                rbacGroupId=7, rbacGroupName="Workstations",
                onboardingStatus="onboarded", defenderAvStatus="updated",
                ipInterfaces=[m.ip], loggedOnUsers=[
                    {"accountName": alert.details()["user"],
                     "domainName": alert.details()["netbios"]}
                ],
                vmMetadata=None,
            )  # fmt: skip
            item["detailedRoles"] = ["Main device"]
        elif kind == "File":
            item = _common("fileEvidence", at)
            item.update(
                detectionStatus="detected", mdeDeviceId=mde_id,
                fileDetails=_file_details(e),
            )  # fmt: skip
        elif kind == "Process":
            item = _common("processEvidence", at)
            item.update(
                processId=e["pid"], parentProcessId=e["ppid"],
                processCommandLine=e["cmd"],
                processCreationDateTime=streams.fmt_time(alert.first_event),
                parentProcessCreationDateTime=streams.fmt_time(
                    alert.first_event - 4_000_000
                ),
                detectionStatus="detected", mdeDeviceId=mde_id,
                imageFile=_file_details(
                    e, "powershell.exe",
                    "C:\\Windows\\System32\\WindowsPowerShell\\v1.0",
                ),
                parentProcessImageFile=_file_details(e, "explorer.exe", "C:\\Windows"),
                userAccount=_user_account(e),
            )  # fmt: skip
        elif kind == "User":
            item = _common("userEvidence", at, ["compromised"])
            item["userAccount"] = _user_account(e)
        elif kind == "Ip":
            item = _common("ipEvidence", at, ["attacker"])
            item.update(ipAddress=e["ip"], countryLetterCode="NL")
        elif kind == "Url":
            item = _common("urlEvidence", at)
            item["url"] = e["url"]
        elif kind == "Registry":
            item = _common("registryKeyEvidence", at)
            item.update(
                registryKey="SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run",
                registryHive="HKEY_CURRENT_USER",
            )
        elif kind == "MailBox":
            item = _common("mailboxEvidence", at)
            item.update(
                displayName=e["display"], primaryAddress=e["upn"],
                userAccount=_user_account(e),
            )  # fmt: skip
        else:
            continue
        out.append(item)
    if alert.source == "mcas":
        d = alert.details()
        item = _common("cloudApplicationEvidence", alert.created)
        item.update(appId=d["app_id"], displayName=d["app"], instanceId=0,
                    instanceName=d["app"], saasAppId=d["app_id"])  # fmt: skip
        out.append(item)
    return out


def render_alert(alert: streams.Alert, enums: Enums) -> dict[str, Any]:
    """One alert in the Graph alerts_v2 shape (§8.1)."""
    fmt = streams.fmt_time
    tid = alert.stream.tenant.id
    inc = alert.incident
    return {
        "@odata.type": T + "alert",
        "id": alert.id,
        "providerAlertId": alert.provider_id,
        "incidentId": str(inc.id),
        "status": _camel(alert.status),
        "severity": _camel(alert.severity),
        "classification": _camel(alert.classification) or "unknown",
        "determination": _det_out(alert.determination),
        "serviceSource": enums(SERVICE_SOURCE[alert.source]),
        "detectionSource": enums(_detection_source(alert)),
        "productName": PRODUCT_NAME[alert.source],
        "detectorId": streams.detector_id(alert.tmpl),
        "tenantId": tid,
        "title": alert.title,
        "description": alert.description,
        "recommendedActions": "Validate the alert, review the evidence and contain "
        "the affected assets if the activity is malicious.",
        "category": alert.field("category"),
        "assignedTo": alert.assigned_to,
        "alertWebUrl": f"https://security.microsoft.com/alerts/{alert.id}?tid={tid}",
        "incidentWebUrl": f"https://security.microsoft.com/incidents/{inc.id}"
        f"?tid={tid}",
        "actorDisplayName": None,
        "threatDisplayName": alert.field("threatFamilyName"),
        "threatFamilyName": alert.field("threatFamilyName"),
        "mitreTechniques": alert.field("mitreTechniques"),
        "createdDateTime": fmt(alert.created),
        "lastUpdateDateTime": fmt(alert.last_update, trim=True),
        "resolvedDateTime": fmt(alert.resolved),
        "firstActivityDateTime": fmt(alert.first_event),
        "lastActivityDateTime": fmt(alert.last_event),
        "alertPolicyId": None,
        "additionalData": None,
        "systemTags": [],
        "comments": [
            {
                "comment": c["comment"],
                "createdByDisplayName": c["createdBy"],
                "createdDateTime": c["createdTime"],
            }
            for c in alert.comments or []
        ],
        "evidence": render_evidence(alert),
    }


def render_incident(
    inc: streams.Incident,
    enums: Enums,
    with_alerts: bool,
    cache: RenderCache | None = None,
) -> dict[str, Any]:
    """One incident in the Graph shape; alerts from ``cache`` when one is given."""
    fmt = streams.fmt_time
    tid = inc.stream.tenant.id
    body = {
        "id": str(inc.id),
        "tenantId": tid,
        "status": enums(_camel(inc.status)),
        "incidentWebUrl": f"https://security.microsoft.com/incidents/{inc.id}"
        f"?tid={tid}",
        "redirectIncidentId": str(inc.redirect_id) if inc.redirect_id else None,
        "displayName": inc.name,
        "createdDateTime": fmt(inc.created),
        "lastUpdateDateTime": fmt(inc.last_update, trim=True),
        "assignedTo": inc.assigned_to,
        "classification": _camel(inc.classification) or "unknown",
        "determination": _det_out(inc.determination),
        "severity": _camel(inc.severity),
        "customTags": list(inc.tags),
        "systemTags": [],
        "description": inc.description,
        "lastModifiedBy": "API-App:API Action"
        if inc.manual
        else "Microsoft 365 Defender-AlertCorrelation",
        "resolvingComment": None,
        "summary": None,
        "comments": [
            {
                "comment": c["comment"],
                "createdByDisplayName": c["createdBy"],
                "createdDateTime": c["createdTime"],
            }
            for c in inc.comments
        ],
    }
    if with_alerts:
        body["alerts"] = [
            cache.fetch(a, render_alert, enums) if cache else render_alert(a, enums)
            for a in inc.alerts
        ]
    return body


# -- handlers ----------------------------------------------------------------------


def _orderby(value: str | None, prop: str) -> bool:
    """True for newest first (the default without $orderby)."""
    if not value:
        return True
    bits = value.split()
    if (
        bits[0] != prop
        or len(bits) > 2
        or (len(bits) == 2 and bits[1].lower() not in ("asc", "desc"))
    ):
        raise odata.ODataError(f"$orderby is only supported on '{prop}'.")
    return len(bits) == 2 and bits[1].lower() == "desc"


def _next_link(call: Call, skip: int, top: int) -> str:
    query = [(k, v) for k, v in call.request.args.items(multi=True) if k != "$skip"]
    if "$top" not in call.request.args:
        query.append(("$top", str(top)))
    query.append(("$skip", str(skip + top)))
    return f"{call.world.base_url}{call.request.path}?{urlencode(query, safe='$')}"


def _paging(call: Call, default_top: int, max_top: int) -> tuple[int, int]:
    args = call.request.args
    top = odata.parse_int_option(args.get("$top"), "$top", default_top)
    if top > max_top:
        raise odata.ODataError(
            f"The limit of '{max_top}' for Top query has been exceeded. "
            f"The value from the incoming request is '{top}'."
        )
    skip = odata.parse_int_option(args.get("$skip"), "$skip", 0)
    max_skip = call.world.api_options.get("graph_max_skip")
    if max_skip is not None and skip > max_skip:
        raise odata.ODataError(
            f"The limit of '{max_skip}' for Skip query has been exceeded. "
            f"The value from the incoming request is '{skip}'."
        )
    return top, skip


def _want_count(call: Call) -> bool:
    value = (call.request.args.get("$count") or "").lower()
    if value not in ("", "true", "false"):
        raise odata.ODataError("Invalid value for $count; use true or false.")
    return value == "true"


def list_alerts(call: Call) -> Response:
    opts = call.world.api_options
    top, skip = _paging(
        call, opts["graph_alerts_default_top"], opts["graph_alerts_max_top"]
    )
    args = call.request.args
    flt = odata.parse_filter(
        args.get("$filter"), {k: v[0] for k, v in ALERT_FILTER.items()}
    )
    newest = _orderby(args.get("$orderby"), "lastUpdateDateTime")
    count = _want_count(call)
    st = call.stream
    page = page_index(
        st, st.idx_all, st.alerts, flt, "lastUpdateDateTime",
        {k: v[1] for k, v in ALERT_FILTER.items()}, skip, top,
        newest_first=newest, want_total=count,
    )  # fmt: skip
    enums = Enums(call)
    body: dict[str, Any] = {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#security/alerts_v2"
    }
    if count:
        body["@odata.count"] = page.total
    if page.has_more:
        body["@odata.nextLink"] = _next_link(call, skip, top)
    fetch = call.world.rendered.fetch
    body["value"] = [fetch(a, render_alert, enums) for a in page.rows]
    return call.json(body)


def _find_alert(call: Call, alert_id: str) -> streams.Alert:
    alert = call.stream.by_id.get(alert_id)
    if alert is None or alert.id != alert_id:
        raise ApiError(404, f"Alert with id '{alert_id}' was not found.", "NotFound")
    return alert


def get_alert(call: Call, alert_id: str) -> Response:
    alert = _find_alert(call, alert_id)
    return call.json(
        {
            "@odata.context": "https://graph.microsoft.com/v1.0/"
            "$metadata#security/alerts_v2/$entity",
            **render_alert(alert, Enums(call)),
        }
    )


def _enum_in(body: dict, name: str, mapping: dict) -> Any:
    value = body[name]
    if value not in mapping:
        raise ApiError(
            400,
            f"Requested value '{value}' was not found for property '{name}'.",
            "BadRequest",
        )
    return mapping[value]


def patch_alert(call: Call, alert_id: str) -> Response:
    alert = _find_alert(call, alert_id)
    body = call.body_json()
    allowed = ("status", "classification", "determination", "assignedTo",
               "customDetails", "@odata.type")  # fmt: skip
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid request body.", "BadRequest")
    for key in body:
        if key not in allowed:
            raise ApiError(
                400,
                f"Could not find a property named '{key}' on type "
                "'microsoft.graph.security.alert'.",
                "BadRequest",
            )
    fields: dict[str, Any] = {}
    status = _enum_in(body, "status", ALERT_STATUS_IN) if "status" in body else None
    if "classification" in body:
        fields["classification"] = _enum_in(body, "classification", CLASSIFICATION_IN)
    if "determination" in body:
        fields["determination"] = _enum_in(body, "determination", DETERMINATION_IN)
    if "assignedTo" in body:
        fields["assignedTo"] = body["assignedTo"]
    mde.apply_alert_change(
        call,
        alert,
        status=status,
        assigned_to=fields.get("assignedTo"),
        classification=fields.get("classification"),
        determination=fields.get("determination"),
        fields=fields,
    )
    return call.json(render_alert(alert, Enums(call)))


def post_comment(call: Call, alert_id: str) -> Response:
    alert = _find_alert(call, alert_id)
    body = call.body_json()
    comment = body.get("comment") if isinstance(body, dict) else None
    if not isinstance(comment, str) or not comment:
        raise ApiError(400, "The 'comment' property is required.", "BadRequest")
    mde.apply_alert_change(call, alert, comment=comment)
    rendered = render_alert(alert, Enums(call))
    return call.json(
        {
            "@odata.context": "https://graph.microsoft.com/v1.0/"
            "$metadata#Collection(microsoft.graph.security.alertComment)",
            "value": rendered["comments"],
        }
    )


def list_incidents(call: Call) -> Response:
    opts = call.world.api_options
    max_top = opts["graph_incidents_max_top"]
    top, skip = _paging(call, max_top, max_top)
    args = call.request.args
    expand = (args.get("$expand") or "").strip()
    if expand and expand != "alerts":
        raise odata.ODataError(f"Could not find a property named '{expand}'.")
    flt = odata.parse_filter(
        args.get("$filter"), {k: v[0] for k, v in INCIDENT_FILTER.items()}
    )
    newest = _orderby(args.get("$orderby"), "lastUpdateDateTime")
    count = _want_count(call)
    st = call.stream
    page = page_index(
        st, st.inc_idx, st.incidents, flt, "lastUpdateDateTime",
        {k: v[1] for k, v in INCIDENT_FILTER.items()}, skip, top,
        newest_first=newest, want_total=count,
    )  # fmt: skip
    enums = Enums(call)
    body: dict[str, Any] = {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#security/incidents"
        + ("(alerts())" if expand else "")
    }
    if count:
        body["@odata.count"] = page.total
    if page.has_more:
        body["@odata.nextLink"] = _next_link(call, skip, top)
    cache = call.world.rendered
    body["value"] = [render_incident(i, enums, bool(expand), cache) for i in page.rows]
    return call.json(body)


def get_incident(call: Call, incident_id: str) -> Response:
    inc = _find_incident(call, incident_id)
    expand = (call.request.args.get("$expand") or "") == "alerts"
    return call.json(render_incident(inc, Enums(call), expand))


def _find_incident(call: Call, incident_id: str) -> streams.Incident:
    try:
        return xdr.find_incident(call, incident_id)
    except ApiError as exc:
        raise ApiError(
            404, f"Incident with id '{incident_id}' was not found.", "NotFound"
        ) from exc


def patch_incident(call: Call, incident_id: str) -> Response:
    inc = _find_incident(call, incident_id)
    body = call.body_json()
    allowed = (
        "assignedTo",
        "classification",
        "determination",
        "status",
        "customTags",
        "description",
        "resolvingComment",
        "@odata.type",
    )
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid request body.", "BadRequest")
    for key in body:
        if key not in allowed:
            raise ApiError(
                400,
                f"Could not find a property named '{key}' on type "
                "'microsoft.graph.security.incident'.",
                "BadRequest",
            )
    fields: dict[str, Any] = {}
    status = _enum_in(body, "status", INC_STATUS_IN) if "status" in body else None
    if "classification" in body:
        fields["classification"] = _enum_in(body, "classification", CLASSIFICATION_IN)
    if "determination" in body:
        fields["determination"] = _enum_in(body, "determination", DETERMINATION_IN)
    if "assignedTo" in body:
        fields["assignedTo"] = body["assignedTo"]
    tags = body.get("customTags")
    if tags is not None and not (
        isinstance(tags, list) and all(isinstance(t, str) for t in tags)
    ):
        raise ApiError(400, "'customTags' must be a list of strings.", "BadRequest")
    xdr.apply_incident_change(
        call,
        inc,
        status=status,
        assigned_to=fields.get("assignedTo"),
        classification=fields.get("classification"),
        determination=fields.get("determination"),
        tags=tags,
        comment=body.get("resolvingComment"),
        description=body.get("description"),
        fields=fields,
    )
    return call.json(render_incident(inc, Enums(call), False))

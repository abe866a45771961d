"""Microsoft Defender for Endpoint: alerts and machine isolation (reference §6).

``GET /api/alerts`` (+ ``/api/v1.0/alerts``), ``GET|PATCH /api/alerts/{id}``,
``POST /api/machines/{id}/isolate|unisolate``, ``GET /api/machineactions/{id}``.
Alerts come back oldest ``lastUpdateTime`` first (the real order is not documented).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from werkzeug.wrappers import Response

from emulator import odata, streams
from emulator.apis.common import ApiError, Call, evidence, page_index

CONTEXT = "https://api.securitycenter.microsoft.com/api/$metadata#Alerts"
MAX_TOP = 10_000
READ = frozenset({"Alert.Read.All", "Alert.ReadWrite.All"})
WRITE = frozenset({"Alert.ReadWrite.All"})
ISOLATE = frozenset({"Machine.Isolate"})
MACHINE_READ = frozenset(
    {"Machine.Read.All", "Machine.ReadWrite.All", "Machine.Isolate"}
)

STATUSES = ("New", "InProgress", "Resolved")
CLASSIFICATIONS = ("TruePositive", "InformationalExpectedActivity", "FalsePositive")
DETERMINATIONS = (
    "MultiStagedAttack", "MaliciousUserActivity", "CompromisedUser",
    "CompromisedAccount",
    "Malware", "Phishing", "UnwantedSoftware", "SecurityTesting",
    "LineOfBusinessApplication", "ConfirmedUserActivity", "ConfirmedActivity", "Clean",
    "InsufficientData", "NoEnoughDataToValidate", "NotMalicious", "Other", "Apt",
    "SecurityPersonnel", "NotAvailable",
)  # fmt: skip
PATCH_FIELDS = ("status", "assignedTo", "classification", "determination", "comment")

FILTER_PROPS: dict[str, tuple[str, Any]] = {
    "alertCreationTime": ("datetime", lambda a: a.created),
    "lastUpdateTime": ("datetime", lambda a: a.last_update),
    "lastEventTime": ("datetime", lambda a: a.last_event),
    "incidentId": ("int", lambda a: a.incident.id),
    "InvestigationId": ("int", lambda a: a.investigation_id),
    "id": ("string", lambda a: a.id),
    "assignedTo": ("string", lambda a: a.assigned_to),
    "detectionSource": ("string", lambda a: a.field("detectionSource")),
    "status": ("enum", lambda a: a.status),
    "severity": ("enum", lambda a: a.severity),
    "category": ("string", lambda a: a.field("category")),
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
    if rest == ["alerts"]:
        if method != "GET":
            return "method"
        return Route("mde", list_alerts, READ, "mde")
    if len(rest) == 2 and rest[0] == "alerts":
        if method == "GET":
            return Route("mde", get_alert, READ, "mde", {"alert_id": rest[1]})
        if method == "PATCH":
            return Route("mde", patch_alert, WRITE, "mde", {"alert_id": rest[1]})
        return "method"
    if len(rest) == 3 and rest[0] == "machines" and rest[2] in ("isolate", "unisolate"):
        if method != "POST":
            return "method"
        return Route(
            "mde",
            machine_action,
            ISOLATE,
            "mde",
            {"machine_id": rest[1], "action": rest[2]},
        )
    if len(rest) == 2 and rest[0] == "machineactions":
        if method != "GET":
            return "method"
        return Route(
            "mde", get_machine_action, MACHINE_READ, "mde", {"action_id": rest[1]}
        )
    return None


# -- rendering ---------------------------------------------------------------------


EVIDENCE_BLANK: dict[str, Any] = {
    "entityType": None, "evidenceCreationTime": None,
    "sha1": None, "sha256": None, "fileName": None, "filePath": None,
    "processId": None, "processCommandLine": None, "processCreationTime": None,
    "parentProcessId": None, "parentProcessCreationTime": None,
    "parentProcessFileName": None, "parentProcessFilePath": None,
    "ipAddress": None, "url": None, "registryKey": None, "registryHive": None,
    "registryValueType": None, "registryValue": None, "accountName": None,
    "domainName": None, "userSid": None, "aadUserId": None,
    "userPrincipalName": None, "detectionStatus": None,
}  # fmt: skip


def _ev(kind: str, at: int) -> dict[str, Any]:
    # A copy of a ready dict costs a tenth of building the same literal.
    item = EVIDENCE_BLANK.copy()
    item["entityType"] = kind
    item["evidenceCreationTime"] = streams.fmt_time(at)
    return item


def render_evidence(alert: streams.Alert) -> list[dict[str, Any]]:
    out = []
    for e in evidence(alert):
        kind = e["kind"]
        if kind == "Device":
            continue
        item = _ev(kind, e["at"])
        if kind == "File":
            item.update(
                sha1=e["sha1"], sha256=e["sha256"], fileName=e["file"],
                filePath=e["file_path"], detectionStatus="Detected",
            )  # fmt: skip
        elif kind == "Process":
            item.update(
                sha1=e["sha1"], sha256=e["sha256"], fileName="powershell.exe",
                filePath="C:\\Windows\\System32\\WindowsPowerShell\\v1.0",
                processId=e["pid"], processCommandLine=e["cmd"],
                processCreationTime=streams.fmt_time(alert.first_event),
                parentProcessId=e["ppid"],
                parentProcessCreationTime=streams.fmt_time(
                    alert.first_event - 4_000_000
                ),
                parentProcessFileName="explorer.exe",
                parentProcessFilePath="C:\\Windows", detectionStatus="Detected",
            )  # fmt: skip
        elif kind == "User":
            item.update(
                accountName=e["user"], domainName=e["netbios"], userSid=e["sid"],
                aadUserId=e["aad_user_id"], userPrincipalName=e["upn"],
            )  # fmt: skip
        elif kind == "Ip":
            item.update(ipAddress=e["ip"])
        elif kind == "Url":
            item.update(url=e["url"])
        elif kind == "Registry":
            item.update(
                registryKey="SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run",
                registryHive="HKEY_CURRENT_USER", registryValueType="String",
                registryValue=f"C:\\ProgramData\\{e['file']}",
            )  # fmt: skip
        else:  # MailBox etc. are not MDE evidence
            continue
        out.append(item)
    return out


def render_alert(alert: streams.Alert, with_evidence: bool) -> dict[str, Any]:
    """One alert in the MDE shape (§6.3)."""
    d = alert.details()
    m = alert.machine()
    kinds = alert.evidence_kinds()
    fmt = streams.fmt_time
    return {
        "id": alert.id,
        "incidentId": alert.incident.id,
        "investigationId": alert.investigation_id,
        "assignedTo": alert.assigned_to,
        "severity": alert.severity,
        "status": alert.status,
        "classification": alert.classification,
        "determination": alert.determination,
        "investigationState": alert.investigation_state,
        "detectionSource": alert.field("detectionSource"),
        "detectorId": streams.detector_id(alert.tmpl),
        "category": alert.field("category"),
        "threatFamilyName": alert.field("threatFamilyName"),
        "threatName": None,
        "title": alert.title,
        "description": alert.description,
        "alertCreationTime": fmt(alert.created),
        "firstEventTime": fmt(alert.first_event),
        "lastEventTime": fmt(alert.last_event),
        "lastUpdateTime": fmt(alert.last_update, trim=True),
        "resolvedTime": fmt(alert.resolved),
        "machineId": m.id if m else None,
        "computerDnsName": m.host if m else None,
        "rbacGroupName": (
            "Servers" if m and m.os.startswith("WindowsServer") else "Workstations"
        ),
        "aadTenantId": alert.stream.tenant.id,
        "mitreTechniques": alert.field("mitreTechniques"),
        "relatedUser": (
            {"userName": d["user"], "domainName": d["netbios"]}
            if "User" in kinds
            else None
        ),
        "loggedOnUsers": [{"accountName": d["user"], "domainName": d["netbios"]}],
        "comments": list(alert.comments or []),
        "evidence": render_evidence(alert) if with_evidence else [],
    }


# -- handlers ----------------------------------------------------------------------


def list_alerts(call: Call) -> Response:
    args = call.request.args
    opts = call.world.api_options
    top_given = "$top" in args
    top = odata.parse_int_option(args.get("$top"), "$top", MAX_TOP)
    if top > MAX_TOP:
        if opts.get("mde_top_over_limit") == "clamp":
            top = MAX_TOP
        else:
            raise odata.ODataError(
                f"The limit of '{MAX_TOP}' for Top query has been exceeded. "
                f"The value from the incoming request is '{top}'."
            )
    skip = odata.parse_int_option(args.get("$skip"), "$skip", 0)
    expand = (args.get("$expand") or "").strip()
    if expand and expand.lower() != "evidence":
        raise odata.ODataError(f"Could not find a property named '{expand}'.")
    flt = odata.parse_filter(args.get("$filter"), FILTER_TYPES)
    st = call.stream
    page = page_index(
        st, st.idx_source["mde"], st.alerts, flt, "lastUpdateTime", GETTERS, skip, top
    )
    fetch = call.world.rendered.fetch
    body: dict[str, Any] = {
        "@odata.context": CONTEXT,
        "value": [fetch(a, render_alert, bool(expand)) for a in page.rows],
    }
    mode = opts.get("mde_next_link", "without_top")
    if page.has_more and (
        mode == "always" or (mode == "without_top" and not top_given)
    ):
        query = [(k, v) for k, v in args.items(multi=True) if k != "$skip"]
        query.append(("$skip", str(skip + top)))
        body["@odata.nextLink"] = (
            f"{call.world.base_url}{call.request.path}?{urlencode(query, safe='$')}"
        )
    return call.json(body)


def _find(call: Call, alert_id: str) -> streams.Alert:
    alert = call.stream.by_id.get(alert_id)
    if alert is None or alert.source != "mde" or alert.id != alert_id:
        raise ApiError(404, f"Alert {alert_id} was not found", "ResourceNotFound")
    return alert


def get_alert(call: Call, alert_id: str) -> Response:
    alert = _find(call, alert_id)
    body = render_alert(alert, True)
    return call.json({"@odata.context": CONTEXT + "/$entity", **body})


def _bad_body(message: str = "Request body is incorrect") -> ApiError:
    return ApiError(400, message, "InvalidRequestBody")


def patch_alert(call: Call, alert_id: str) -> Response:
    alert = _find(call, alert_id)
    body = call.body_json()
    if not isinstance(body, dict) or not body:
        raise _bad_body()
    unknown = [k for k in body if k not in PATCH_FIELDS]
    if unknown:
        raise _bad_body(f"Request body is incorrect: unknown property '{unknown[0]}'")
    checks = (
        ("status", STATUSES),
        ("classification", CLASSIFICATIONS),
        ("determination", DETERMINATIONS),
    )
    for name, allowed in checks:
        if name in body and body[name] is not None and body[name] not in allowed:
            raise _bad_body(f"Invalid value '{body[name]}' for '{name}'")
    for name in ("assignedTo", "comment"):
        if name in body and body[name] is not None and not isinstance(body[name], str):
            raise _bad_body(f"'{name}' must be a string")
    apply_alert_change(
        call,
        alert,
        status=body.get("status"),
        assigned_to=body.get("assignedTo"),
        classification=body.get("classification"),
        determination=body.get("determination"),
        comment=body.get("comment"),
        fields=body,
    )
    return call.json(
        {"@odata.context": CONTEXT + "/$entity", **render_alert(alert, True)}
    )


def apply_alert_change(
    call: Call,
    alert: streams.Alert,
    *,
    status: str | None = None,
    assigned_to: str | None = None,
    classification: str | None = None,
    determination: str | None = None,
    comment: str | None = None,
    fields: dict | None = None,
) -> None:
    """Write a change to the canonical alert (MDE spellings) and bump lastUpdateTime."""
    now = call.now_us
    fields = fields or {}
    alert.manual = True
    if status:
        if status == "Resolved" and alert.status != "Resolved":
            alert.resolved = now
        elif status != "Resolved":
            alert.resolved = None
        alert.status = status
    if "assignedTo" in fields:
        alert.assigned_to = assigned_to
    if "classification" in fields:
        alert.classification = classification
    if "determination" in fields:
        alert.determination = determination
    if comment:
        alert.comments = [
            *(alert.comments or []),
            {"comment": comment, "createdBy": call.actor,
             "createdTime": streams.fmt_time(now)},
        ]  # fmt: skip
    alert.touch(now)


def machine_action(call: Call, machine_id: str, action: str) -> Response:
    st = call.stream
    machine = st.machine_by_id.get(machine_id)
    if machine is None:
        raise ApiError(404, f"Machine {machine_id} was not found", "ResourceNotFound")
    body = call.body_json()
    if not isinstance(body, dict):
        raise _bad_body()
    unknown = [k for k in body if k not in ("Comment", "IsolationType")]
    if unknown or not isinstance(body.get("Comment"), str) or not body["Comment"]:
        raise ApiError(
            400,
            "Missing required parameter 'Comment'"
            if not unknown
            else f"Request body is incorrect: unknown property '{unknown[0]}'",
            "MissingRequiredParameter" if not unknown else "InvalidRequestBody",
        )
    scope = body.get("IsolationType", "Full")
    if action == "isolate" and scope not in ("Full", "Selective", "UnManagedDevice"):
        raise _bad_body(f"Invalid value '{scope}' for 'IsolationType'")
    kind = "Isolate" if action == "isolate" else "Unisolate"
    for existing in call.world.machine_actions.values():
        if (
            existing["machineId"] == machine.id
            and existing["tenant"] == st.tenant.id
            and existing["type"] == kind
            and existing["status"] in ("Pending", "InProgress")
        ):
            raise ApiError(
                400,
                f"Action '{kind}' is already in progress on machine {machine.id}",
                "ActiveRequestAlreadyExists",
            )
    now = streams.fmt_time(call.now_us)
    record = {
        "id": streams._guid_from(
            streams._h("action", st.tenant.id, len(call.world.machine_actions))
        ),
        "type": kind,
        "scope": scope if kind == "Isolate" else None,
        "requestor": (call.claims or {}).get("appid"),
        "requestorComment": body["Comment"],
        "status": "Pending",
        "machineId": machine.id,
        "computerDnsName": machine.host,
        "creationDateTimeUtc": now,
        "lastUpdateDateTimeUtc": now,
        "cancellationRequestor": None,
        "cancellationComment": None,
        "cancellationDateTimeUtc": None,
        "errorHResult": 0,
        "requestSource": "PublicApi",
        "relatedFileInfo": None,
        "commands": [],
        "externalID": None,
        "title": None,
        "tenant": st.tenant.id,
    }
    call.world.machine_actions[record["id"]] = record
    return call.json(_public_action(record), 201)


def _public_action(record: dict) -> dict:
    return {
        "@odata.context": "https://api.securitycenter.microsoft.com/api/"
        "$metadata#MachineActions/$entity",
        **{k: v for k, v in record.items() if k != "tenant"},
    }


def get_machine_action(call: Call, action_id: str) -> Response:
    record = call.world.machine_actions.get(action_id)
    if record is None or record["tenant"] != call.tenant.id:
        raise ApiError(
            404, f"Machine action {action_id} was not found", "ResourceNotFound"
        )
    # Each poll moves it along: Pending -> InProgress -> Succeeded.
    step = {"Pending": "InProgress", "InProgress": "Succeeded"}
    if record["status"] in step:
        record["status"] = step[record["status"]]
        record["lastUpdateDateTimeUtc"] = streams.fmt_time(call.now_us)
    return call.json(_public_action(record))

"""Microsoft Defender for Cloud Apps alerts (reference §9), per tenant portal.

``GET|POST /mcas/{portal}/api/v1/alerts/`` (filters, skip, limit <= 100, sortField
date|severity, sortDirection asc|desc; default newest first), ``GET .../alerts/{pk}/``,
``POST .../alerts/{pk}/read/`` and ``/unread/``,
``POST .../alerts/close_true_positive|close_benign|close_false_positive/``.
Timestamps are epoch milliseconds; enums are integers.
"""

from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Response

from emulator import streams
from emulator.apis import mde
from emulator.apis.common import ApiError, Call

# Roles per the application permission scopes of reference §9.1 (Cloud Apps docs,
# api-authentication-application.md): ``Investigation.read`` lists and fetches alerts
# and marks them read/unread; ``Investigation.manage`` adds closing alerts;
# ``Discovery.manage`` also closes alerts. The docs do not say ``Discovery.read`` (or
# ``Discovery.manage``) lists or fetches alerts, so neither opens the alert reads.
READ = frozenset({"Investigation.read", "Investigation.manage"})
MANAGE = frozenset({"Investigation.manage", "Discovery.manage"})
SEVERITY = {"Low": 0, "Medium": 1, "High": 2, "Informational": 3}
CLOSE = {
    "close_true_positive": ("TruePositive", "Other", 5),
    "close_benign": ("InformationalExpectedActivity", "Other", 4),
    "close_false_positive": ("FalsePositive", "Other", 3),
}
FILTER_OPS = {
    "alertOpen": {"eq"},
    "severity": {"eq", "neq"},
    "resolutionStatus": {"eq", "neq"},
    "read": {"eq"},
    "date": {"gte", "lte", "gt", "lt", "range"},
    "resolutionDate": {"gte", "lte", "range"},
    "id": {"eq", "neq"},
    "entity.entity": {"eq", "neq"},
    "entity.service": {"eq", "neq"},
    "entity.instance": {"eq", "neq"},
    "entity.policy": {"eq", "neq"},
    "entity.ip": {"eq", "neq"},
    "entity.file": {"eq", "neq"},
    "risk": {"eq", "neq"},
    "alertType": {"eq", "neq"},
    "source": {"eq"},
}


def resolve(parts: list[str], method: str):
    from emulator.apis import Route

    if len(parts) < 4 or parts[1:4] != ["api", "v1", "alerts"]:
        return None
    portal = parts[0]
    rest = parts[4:]
    if not rest:
        if method not in ("GET", "POST"):
            return "method"
        return Route("mcas", list_alerts, READ, "mcas", {"portal": portal})
    if len(rest) == 1 and rest[0] in CLOSE:
        if method != "POST":
            return "method"
        return Route("mcas", close_alerts, MANAGE, "mcas",
                     {"portal": portal, "action": rest[0]})  # fmt: skip
    if len(rest) == 1:
        if method != "GET":
            return "method"
        return Route("mcas", get_alert, READ, "mcas", {"portal": portal, "pk": rest[0]})
    if len(rest) == 2 and rest[1] in ("read", "unread"):
        if method != "POST":
            return "method"
        return Route(
            "mcas",
            mark_read,
            READ,
            "mcas",
            {"portal": portal, "pk": rest[0], "read": rest[1] == "read"},
        )
    return None


# -- rendering ---------------------------------------------------------------------


def resolution_status(alert: streams.Alert) -> int:
    if alert.status != "Resolved":
        return 0
    return {"TruePositive": 5, "InformationalExpectedActivity": 4,
            "FalsePositive": 3}.get(alert.classification or "", 2)  # fmt: skip


def render_alert(alert: streams.Alert, base_url: str) -> dict[str, Any]:
    """One Cloud Apps alert (§9.2)."""
    d = alert.details()
    t = alert.template()
    tenant = alert.stream.tenant
    policy_id = streams._h("policy", alert.tmpl)[:24]
    policy = {"id": policy_id, "label": alert.title, "policyType": "ANOMALY_DETECTION",
              "type": "policyRule"}  # fmt: skip
    comment = None
    if alert.comments:
        comment = alert.comments[-1]["comment"]
    return {
        "_id": alert.provider_id,
        "contextId": tenant.id,
        "timestamp": streams.fmt_ms(alert.created),
        "title": alert.title,
        "description": alert.description,
        "isMarkdown": False,
        "statusValue": 2 if alert.status == "Resolved" else (1 if alert.read else 0),
        "severityValue": SEVERITY.get(alert.severity, 1),
        "resolutionStatusValue": resolution_status(alert),
        "stories": list(t[9]) if len(t) > 9 else [0],
        "intent": list(t[8]) if len(t) > 8 else [0],
        "evidence": [],
        "isPreview": False,
        "isSystemAlert": False,
        "threatScore": 10 + alert.rseed % 90,
        "idValue": 15_000_000 + alert.rseed % 1_000_000,
        "entities": [
            policy,
            {"id": d["app_id"], "label": d["app"], "type": "service"},
            {
                "id": d["aad_user_id"],
                "inst": 0,
                "label": d["display"],
                "pa": d["upn"],
                "saas": d["app_id"],
                "type": "account",
                "entityRole": "Source",
                "entityType": 2,
                "em": d["upn"],
            },
            {"id": d["ip"], "label": d["ip"], "type": "ip"},
            {"id": d["upn"], "label": d["upn"], "type": "user"},
        ],  # fmt: skip
        "policy": policy,
        "comment": comment,
        "handledByUser": alert.assigned_to,
        "resolveTime": (
            streams.fmt_time(alert.resolved)[:23] + "Z" if alert.resolved else None
        ),
        "URL": f"{base_url}/mcas/{tenant.mcas_portal_name}/#/alerts/"
        f"{alert.provider_id}",
    }


# -- filters -----------------------------------------------------------------------


def _filters_error(message: str) -> ApiError:
    return ApiError(400, message, body={
        "filters": [{"error": message,
                     "errorMessageCode": "CONSOLE_FORMS_NOT_VALID_VALUE",
                     "errorMessageParams": {"value": message.split(" ")[0]}}],
        "error": True,
    })  # fmt: skip


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _match(alert: streams.Alert, name: str, op: str, value: Any) -> bool:
    if name == "alertOpen":
        return (alert.status != "Resolved") == bool(value)
    if name == "read":
        return alert.read == bool(value)
    if name in ("severity", "resolutionStatus", "id"):
        actual: Any = {
            "severity": SEVERITY.get(alert.severity, 1),
            "resolutionStatus": resolution_status(alert),
            "id": alert.provider_id,
        }[name]
        hit = actual in _as_list(value)
        return hit if op == "eq" else not hit
    if name in ("date", "resolutionDate"):
        us = alert.created if name == "date" else alert.resolved
        if us is None:
            return False
        ms = us // 1000
        if op == "range":
            for r in _as_list(value):
                if r.get("start", 0) <= ms <= r.get("end", 2**62):
                    return True
            return False
        if not isinstance(value, int | float):
            raise _filters_error(f"{value} is not valid")
        return {"gte": ms >= value, "lte": ms <= value, "gt": ms > value,
                "lt": ms < value}[op]  # fmt: skip
    return True  # entity/risk/alertType/source: accepted, not modelled


def _check_filters(filters: Any) -> list[tuple[str, str, Any]]:
    if filters in (None, ""):
        return []
    if isinstance(filters, str):
        try:
            filters = json.loads(filters)
        except ValueError as exc:
            raise _filters_error(f"{filters[:50]} is not valid") from exc
    if not isinstance(filters, dict):
        raise _filters_error("filters is not valid")
    out = []
    for name, ops in filters.items():
        if name not in FILTER_OPS or not isinstance(ops, dict):
            raise _filters_error(f"{name} is not valid")
        for op, value in ops.items():
            if op not in FILTER_OPS[name]:
                raise _filters_error(f"{op} is not valid")
            if name == "id" and any(
                not isinstance(v, str) or len(v) != 24 for v in _as_list(value)
            ):
                bad = next(v for v in _as_list(value) if not isinstance(v, str)
                           or len(v) != 24)  # fmt: skip
                raise _filters_error(f"{bad} is not valid")
            out.append((name, op, value))
    return out


def _params(call: Call) -> dict[str, Any]:
    if call.request.method == "POST":
        if call.request.mimetype == "application/x-www-form-urlencoded":
            return dict(call.request.form)
        body = call.body_json()
        if not isinstance(body, dict):
            raise _filters_error("body is not valid")
        return body
    return dict(call.request.args)


def _int(params: dict, name: str, default: int) -> int:
    value = params.get(name, default)
    try:
        value = int(value)
    except (TypeError, ValueError) as exc:
        raise _filters_error(f"{value} is not valid") from exc
    if value < 0:
        raise _filters_error(f"{value} is not valid")
    return value


# -- handlers ----------------------------------------------------------------------


def list_alerts(call: Call, portal: str) -> Response:
    params = _params(call)
    filters = _check_filters(params.get("filters"))
    skip = _int(params, "skip", 0)
    limit = min(_int(params, "limit", 100), call.world.api_options["mcas_max_limit"])
    sort_field = params.get("sortField", "date")
    sort_dir = params.get("sortDirection", "desc")
    if sort_field not in ("date", "severity") or sort_dir not in ("asc", "desc"):
        raise _filters_error(f"{sort_field} {sort_dir} is not valid")
    items = call.stream.created_lists["mcas"]
    rows = [a for a in items if all(_match(a, n, o, v) for n, o, v in filters)]
    if sort_field == "severity":
        rows.sort(key=lambda a: (SEVERITY.get(a.severity, 1), a.created))
        if sort_dir == "desc":
            rows.reverse()
    elif sort_dir == "desc":
        rows.reverse()
    page = rows[skip : skip + limit]
    base = call.world.base_url
    fetch = call.world.rendered.fetch
    return call.json(
        {
            "data": [fetch(a, render_alert, base) for a in page],
            "hasNext": skip + limit < len(rows),
            "max": limit,
            "total": len(rows),
            "moreThanTotal": False,
        }
    )


def _find(call: Call, pk: str) -> streams.Alert:
    alert = call.stream.by_id.get(pk)
    if alert is None or alert.source != "mcas" or alert.provider_id != pk:
        raise ApiError(404, "Not found.")
    return alert


def get_alert(call: Call, portal: str, pk: str) -> Response:
    return call.json(render_alert(_find(call, pk), call.world.base_url))


def mark_read(call: Call, portal: str, pk: str, read: bool) -> Response:
    alert = _find(call, pk)
    if alert.read != read:
        alert.read = read
        alert.touch(call.now_us)
    return call.json({})


def close_alerts(call: Call, portal: str, action: str) -> Response:
    body = call.body_json()
    if not isinstance(body, dict):
        raise _filters_error("body is not valid")
    filters = body.get("filters")
    ids = None
    if isinstance(filters, dict) and isinstance(filters.get("id"), dict):
        ids = _as_list(filters["id"].get("eq", []))
    if not ids:
        raise _filters_error("filters is not valid")
    classification, determination, _ = CLOSE[action]
    closed = 0
    missing = []
    st = call.stream
    for pk in ids:
        alert = st.by_id.get(pk) if isinstance(pk, str) else None
        if alert is None or alert.source != "mcas" or alert.provider_id != pk:
            missing.append(pk)
            continue
        mde.apply_alert_change(
            call, alert, status="Resolved", classification=classification,
            determination=determination, comment=body.get("comment") or None,
            fields={"classification": 1, "determination": 1},
        )  # fmt: skip
        closed += 1
    key = action.replace("close_", "closed_")
    out: dict[str, Any] = {key: closed}
    if missing:
        out["alertsNotFound"] = missing
    return call.json(out)

"""Raw Microsoft payloads -> the field values of our Alert and Incident rows.

One function per source shape. Each returns a plain dict of model field values (no
models, no database): ``provider_id``, ``updated_at_source`` and the normalised fields
the dashboard reads, with the payload itself under ``raw``, untouched.

Normalised values, the same for every source:

* ``severity``: a ``Severity`` value (high, medium, low, informational, unknown).
* ``status``: an ``AlertStatus`` value (new, in_progress, resolved, unknown); incidents
  use active, in_progress, resolved, redirected.
* ``classification``: true_positive, false_positive, informational_expected_activity,
  or "" when unknown.
* ``determination``: Graph's spelling in snake case (malware, phishing,
  compromised_account, not_malicious, not_enough_data_to_validate,
  confirmed_activity, ...), the other spellings of the same value mapped onto it;
  "" when unknown.
* ``evidence``: rows ``{"type", "name", "detail", ...}`` with type one of device,
  file, process, user, ip, url, registry, mailbox, mail_message, mail_cluster,
  cloud_application, security_group, other (read by ``alerts.evidence``, which also
  gives ``evidence_summary`` and the search words in ``entities_text``).
* ``devices``: ``{"id", "name", "os"}``; ``users``: ``{"name", "domain", "upn"}``.
* ``portal_url``: the alert or incident in the customer tenant's Defender portal
  (``.../alerts/{id}?tid={tenant}``); Cloud Apps alerts keep their own ``URL``.

A payload without an id or without any time is not an alert we can keep: the
functions raise ``Unusable`` for it, and the caller skips it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from alerts import evidence
from alerts.evidence import as_text as _text
from alerts.models import AlertStatus, Severity

# ``_text`` is the one reading of a string field, shared with the evidence rows.

DEFAULT_PORTAL = "https://security.microsoft.com"

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$",
    re.I,
)


class Unusable(ValueError):
    """A payload we cannot store (no id, or no time at all)."""


# --- small readers --------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    """An aware UTC datetime from ISO-8601 (0-7 fractional digits, Z or an offset)
    or from epoch milliseconds (Cloud Apps); None for anything else."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    if len(value) >= 20 and value[-1] == "Z" and value[10] == "T" and value[19] in ".Z":
        # What the APIs send (2024-05-01T10:20:30.1234567Z), read in C: Z is UTC.
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass  # the strict reading below decides
    value = value.strip()
    match = _ISO.match(value)
    if match is None:
        return None
    try:  # the common shapes, in C (3.11 reads "Z" and 7 fractional digits)
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is not None and moment.tzinfo is not None:
        return moment.astimezone(UTC)
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            micro,
            tzinfo=UTC,
        )
    except ValueError:
        return None
    if zone and zone.upper() != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 60 + int(digits[2:]))
        moment -= timedelta(minutes=offset)
    return moment


def _id(value: Any) -> str:
    text = _text(value)
    if not text:
        raise Unusable("payload without an id")
    return text[:128]


def _snake(value: str) -> str:
    value = re.sub(r"[\s\-]+", "_", value.strip())
    value = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", value)
    return value.lower()


_SEVERITIES = {
    "high": Severity.HIGH,
    "medium": Severity.MEDIUM,
    "low": Severity.LOW,
    "informational": Severity.INFORMATIONAL,
}


def severity(value: Any) -> str:
    return _SEVERITIES.get(_text(value).lower(), Severity.UNKNOWN)


_ALERT_STATUSES = {
    "new": AlertStatus.NEW,
    "active": AlertStatus.NEW,
    "inprogress": AlertStatus.IN_PROGRESS,
    "in_progress": AlertStatus.IN_PROGRESS,
    "resolved": AlertStatus.RESOLVED,
}


def alert_status(value: Any) -> str:
    return _ALERT_STATUSES.get(_text(value).lower(), AlertStatus.UNKNOWN)


def incident_status(value: Any) -> str:
    text = _text(value)
    if not text or text.lower() in ("unknown", "unknownfuturevalue"):
        return ""
    return _snake(text)


_CLASSIFICATIONS = {
    "truepositive": "true_positive",
    "falsepositive": "false_positive",
    "informationalexpectedactivity": "informational_expected_activity",
}


def classification(value: Any) -> str:
    key = _text(value).replace("_", "").replace(" ", "").lower()
    return _CLASSIFICATIONS.get(key, "")


# Other spellings of one determination -> Graph's (SDK) spelling.
_DETERMINATION_SYNONYMS = {
    "compromiseduser": "compromised_account",
    "compromisedaccount": "compromised_account",
    "clean": "not_malicious",
    "notmalicious": "not_malicious",
    "insufficientdata": "not_enough_data_to_validate",
    "noenoughdatatovalidate": "not_enough_data_to_validate",
    "notenoughdatatovalidate": "not_enough_data_to_validate",
    "confirmeduseractivity": "confirmed_activity",
    "confirmedactivity": "confirmed_activity",
}


def determination(value: Any) -> str:
    text = _text(value)
    key = text.replace("_", "").replace(" ", "").lower()
    if not key or key in ("unknown", "notavailable", "unknownfuturevalue"):
        return ""
    return _DETERMINATION_SYNONYMS.get(key) or _snake(text)[:64]


def portal_link(kind: str, item_id: str, tenant_id: str, portal: str) -> str:
    return f"{portal.rstrip('/')}/{kind}/{item_id}?tid={tenant_id}"[:500]


def _https(url: Any) -> str:
    """A link we may show staff: https only, and short enough for the column."""
    text = _text(url)
    if text.lower().startswith("https://") and len(text) <= 500:
        return text
    return ""


def _first_time(*values: Any) -> datetime | None:
    for value in values:
        moment = parse_time(value)
        if moment is not None:
            return moment
    return None


# --- alerts ---------------------------------------------------------------------------


def _defender_alert(
    raw: dict[str, Any],
    alert_id: str,
    found: evidence.Entities,
    *,
    tenant_id: str,
    portal: str,
    **times: Any,
) -> dict[str, Any]:
    """An alert row of Defender for Endpoint, XDR or Graph: the fields the three APIs
    spell alike, and ``times`` (with the incident id) read in each API's own
    spelling."""
    return {
        "provider_id": alert_id,
        "title": _text(raw.get("title")),
        "description": _text(raw.get("description")),
        "severity": severity(raw.get("severity")),
        "status": alert_status(raw.get("status")),
        "category": _text(raw.get("category"))[:128],
        "classification": classification(raw.get("classification")),
        "determination": determination(raw.get("determination")),
        "assigned_to": _text(raw.get("assignedTo"))[:255],
        **times,
        "portal_url": portal_link("alerts", alert_id, tenant_id, portal),
        "raw": raw,
        **found.fields(),
    }


def mde_alert(
    raw: dict[str, Any], *, tenant_id: str, portal: str = DEFAULT_PORTAL
) -> dict[str, Any]:
    """A Defender for Endpoint alert (GET /api/alerts, reference section 6.3)."""
    alert_id = _id(raw.get("id"))
    updated = _first_time(
        raw.get("lastUpdateTime"),
        raw.get("alertCreationTime"),
        raw.get("lastEventTime"),
    )
    if updated is None:
        raise Unusable(f"MDE alert {alert_id} has no time")
    found = evidence.Entities()
    found.device(raw.get("machineId"), raw.get("computerDnsName"))
    related = raw.get("relatedUser")
    if isinstance(related, dict):
        found.user(related.get("userName"), related.get("domainName"))
    for item in raw.get("evidence") or []:
        if isinstance(item, dict):
            evidence.defender_entity(found, item)
    return _defender_alert(
        raw,
        alert_id,
        found,
        tenant_id=tenant_id,
        portal=portal,
        created_at_source=parse_time(raw.get("alertCreationTime")),
        updated_at_source=updated,
        first_activity_at=parse_time(raw.get("firstEventTime")),
        last_activity_at=parse_time(raw.get("lastEventTime")),
        resolved_at=parse_time(raw.get("resolvedTime")),
        incident_provider_id=_text(raw.get("incidentId"))[:128],
    )


def graph_alert(
    raw: dict[str, Any], *, tenant_id: str, portal: str = DEFAULT_PORTAL
) -> dict[str, Any]:
    """A Graph security alert (alerts_v2, reference section 8.1)."""
    alert_id = _id(raw.get("id"))
    updated = _first_time(raw.get("lastUpdateDateTime"), raw.get("createdDateTime"))
    if updated is None:
        raise Unusable(f"Graph alert {alert_id} has no time")
    found = evidence.Entities()
    for item in raw.get("evidence") or []:
        if isinstance(item, dict):
            evidence.graph_evidence(found, item)
    return _defender_alert(
        raw,
        alert_id,
        found,
        tenant_id=tenant_id,
        portal=portal,
        created_at_source=parse_time(raw.get("createdDateTime")),
        updated_at_source=updated,
        first_activity_at=parse_time(raw.get("firstActivityDateTime")),
        last_activity_at=parse_time(raw.get("lastActivityDateTime")),
        resolved_at=parse_time(raw.get("resolvedDateTime")),
        incident_provider_id=_text(raw.get("incidentId"))[:128],
    )


def xdr_alert(
    raw: dict[str, Any],
    *,
    tenant_id: str,
    incident_id: str = "",
    portal: str = DEFAULT_PORTAL,
) -> dict[str, Any]:
    """An alert embedded in a Defender XDR incident (reference section 7.1)."""
    alert_id = _id(raw.get("alertId"))
    updated = _first_time(
        raw.get("lastUpdatedTime"), raw.get("creationTime"), raw.get("lastActivity")
    )
    if updated is None:
        raise Unusable(f"XDR alert {alert_id} has no time")
    found = evidence.Entities()
    for device in raw.get("devices") or []:
        if isinstance(device, dict):
            found.device(
                device.get("mdatpDeviceId") or device.get("deviceId"),
                device.get("deviceDnsName"),
                device.get("osPlatform"),
            )
            found.row("device", device.get("deviceDnsName"), device.get("osPlatform"))
    for item in raw.get("entities") or []:
        if isinstance(item, dict):
            evidence.defender_entity(found, item)
    return _defender_alert(
        raw,
        alert_id,
        found,
        tenant_id=tenant_id,
        portal=portal,
        created_at_source=parse_time(raw.get("creationTime")),
        updated_at_source=updated,
        first_activity_at=parse_time(raw.get("firstActivity")),
        last_activity_at=parse_time(raw.get("lastActivity")),
        resolved_at=parse_time(raw.get("resolvedTime")),
        incident_provider_id=(_text(raw.get("incidentId")) or incident_id)[:128],
    )


_MCAS_SEVERITY = {
    0: Severity.LOW,
    1: Severity.MEDIUM,
    2: Severity.HIGH,
    3: Severity.INFORMATIONAL,
}
_MCAS_RESOLUTION = {
    3: "false_positive",
    4: "informational_expected_activity",
    5: "true_positive",
}


def mcas_alert(
    raw: dict[str, Any], *, tenant_id: str, portal: str = DEFAULT_PORTAL
) -> dict[str, Any]:
    """A Defender for Cloud Apps alert (reference section 9.2).

    The API has no update time: ``updated_at_source`` is the later of the alert's
    time and its resolution time, so a closed copy wins over an open one.
    """
    alert_id = _id(raw.get("_id"))
    created = parse_time(raw.get("timestamp"))
    resolved = parse_time(raw.get("resolveTime"))
    updated = max((t for t in (created, resolved) if t is not None), default=None)
    if updated is None:
        raise Unusable(f"Cloud Apps alert {alert_id} has no time")
    resolution = raw.get("resolutionStatusValue")
    state = raw.get("statusValue")
    handler = _text(raw.get("handledByUser"))
    if (isinstance(resolution, int) and resolution > 0) or state == 2:
        status = AlertStatus.RESOLVED
    elif handler or state == 1:
        status = AlertStatus.IN_PROGRESS
    else:
        status = AlertStatus.NEW
    found = evidence.Entities()
    for item in raw.get("entities") or []:
        if not isinstance(item, dict):
            continue
        kind = _text(item.get("type")).lower()
        label = item.get("label")
        if kind == "account":
            found.user(label, None, item.get("pa") or item.get("em"))
            found.row("user", item.get("pa") or label, label)
        elif kind == "user":
            found.user(
                label, None, item.get("id") if "@" in _text(item.get("id")) else None
            )
        elif kind == "ip":
            found.row("ip", label)
            found.word(label)
        elif kind == "file":
            found.row("file", label)
            found.word(label)
        elif kind == "device":
            found.device(item.get("id"), label)
            found.row("device", label)
        elif kind == "service":
            found.row("cloud_application", label, item.get("id"))
        elif kind == "policyrule":
            continue
        elif kind:
            found.row("other", label, kind)
    severity_value = raw.get("severityValue")
    return {
        "provider_id": alert_id,
        "title": _text(raw.get("title")),
        "description": _text(raw.get("description")),
        "severity": _MCAS_SEVERITY.get(severity_value, Severity.UNKNOWN)
        if isinstance(severity_value, int)
        else Severity.UNKNOWN,
        "status": status,
        "category": "",
        "classification": _MCAS_RESOLUTION.get(resolution, "")
        if isinstance(resolution, int)
        else "",
        "determination": "",
        "assigned_to": handler[:255],
        "created_at_source": created,
        "updated_at_source": updated,
        "first_activity_at": created,
        "last_activity_at": created,
        "resolved_at": resolved,
        "incident_provider_id": "",
        "portal_url": _https(raw.get("URL"))
        or portal_link("alerts", alert_id, tenant_id, portal),
        "raw": raw,
        **found.fields(),
    }


# --- incidents ------------------------------------------------------------------------


def xdr_incident(
    raw: dict[str, Any], *, tenant_id: str, portal: str = DEFAULT_PORTAL
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A Defender XDR incident and its embedded alerts (source "xdr").

    An incident without ``lastUpdateTime`` takes its newest alert's time.
    """
    incident_id = _id(raw.get("incidentId"))
    alerts = []
    for item in raw.get("alerts") or []:
        if isinstance(item, dict):
            try:
                alerts.append(
                    xdr_alert(
                        item,
                        tenant_id=tenant_id,
                        incident_id=incident_id,
                        portal=portal,
                    )
                )
            except Unusable:
                continue
    updated = _first_time(raw.get("lastUpdateTime"), raw.get("createdTime"))
    if updated is None and alerts:
        updated = max(a["updated_at_source"] for a in alerts)
    if updated is None:
        raise Unusable(f"XDR incident {incident_id} has no time")
    incident = {
        "provider_id": incident_id,
        "title": _text(raw.get("incidentName")),
        "severity": severity(raw.get("severity")),
        "status": incident_status(raw.get("status")),
        "classification": classification(raw.get("classification")),
        "determination": determination(raw.get("determination")),
        "assigned_to": _text(raw.get("assignedTo"))[:255],
        "created_at_source": parse_time(raw.get("createdTime")),
        "updated_at_source": updated,
        "portal_url": portal_link("incidents", incident_id, tenant_id, portal),
        "raw": raw,
    }
    return incident, alerts


def graph_incident(
    raw: dict[str, Any], *, tenant_id: str, portal: str = DEFAULT_PORTAL
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A Graph security incident and, when expanded, its alerts (source "graph").

    ``alerts`` may also be a single object (Elastic's split files); both work.
    """
    incident_id = _id(raw.get("id"))
    embedded = raw.get("alerts") or []
    if isinstance(embedded, dict):
        embedded = [embedded]
    alerts = []
    for item in embedded:
        if isinstance(item, dict):
            try:
                alerts.append(graph_alert(item, tenant_id=tenant_id, portal=portal))
            except Unusable:
                continue
    updated = _first_time(raw.get("lastUpdateDateTime"), raw.get("createdDateTime"))
    if updated is None:
        raise Unusable(f"Graph incident {incident_id} has no time")
    incident = {
        "provider_id": incident_id,
        "title": _text(raw.get("displayName")),
        "severity": severity(raw.get("severity")),
        "status": incident_status(raw.get("status")),
        "classification": classification(raw.get("classification")),
        "determination": determination(raw.get("determination")),
        "assigned_to": _text(raw.get("assignedTo"))[:255],
        "created_at_source": parse_time(raw.get("createdDateTime")),
        "updated_at_source": updated,
        "portal_url": portal_link("incidents", incident_id, tenant_id, portal),
        "raw": raw,
    }
    return incident, alerts


# --- by payload shape -----------------------------------------------------------------

#: What every normaliser below returns: the incident row (or None for a payload that
#: is one alert) and the alert rows.
Normalised = tuple[dict[str, Any] | None, list[dict[str, Any]]]


def _one_alert(make: Callable[..., dict[str, Any]]) -> Callable[..., Normalised]:
    def normalise(raw: dict[str, Any], **kwargs: Any) -> Normalised:
        return None, [make(raw, **kwargs)]

    return normalise


#: Payload shape (``Source.payload`` of the Microsoft source registry) -> its
#: normaliser, called as ``NORMALISERS[shape](raw, tenant_id=..., portal=...)``.
#: ``alerts.checks`` fails start-up when a registered source names a missing shape.
NORMALISERS: dict[str, Callable[..., Normalised]] = {
    "mde_alert": _one_alert(mde_alert),
    "graph_alert": _one_alert(graph_alert),
    "mcas_alert": _one_alert(mcas_alert),
    "xdr_incident": xdr_incident,
    "graph_incident": graph_incident,
}

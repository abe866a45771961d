"""Evidence: what an alert names (devices, users, files, IPs, ...) as the rows the alert
page shows and the words the queue searches.

``alerts.normalize`` makes one ``Entities`` per alert and feeds it the payload's
evidence: ``defender_entity`` for a Defender for Endpoint evidence item or a Defender
XDR entity (one flat shape), ``graph_evidence`` for a Graph ``alertEvidence`` item
(typed by ``@odata.type``); Cloud Apps entities are read in ``normalize.mcas_alert``.
``Entities.fields()`` gives the row's ``evidence``, ``devices``, ``users``,
``evidence_summary`` and ``entities_text``. Plain values: no models, no database.

The rules kept here:

* Every value is read by ``as_text``: strings stripped, Cloud Apps' "null" and anything
  neither a string nor a number become "". A row holds ``type``, ``name``, ``detail``
  and, only when they have a value, the extra fields it is given (hashes, ``sid``,
  Graph's ``verdict``); nothing else of the payload is copied.
* Each thing once, the first spelling kept, compared without case: a row by (type,
  name, detail), a device by its id (else its name), a user by UPN (else
  domain\\name), a word by itself. A row with neither name nor detail, a device with
  neither id nor name, a user with neither name nor UPN is left out. The payload's
  order is kept.
* An entity type we do not know is an ``other`` row named by its type, not dropped.
* Search words are what an analyst pastes into the search box: device names, user
  names and UPNs, file names and SHA-1/SHA-256 hashes, IP addresses (a Graph device's
  IP interfaces too), URLs, mailbox addresses, a Defender mail message's sender and
  recipient. Paths, command lines, registry keys, subjects, ids and verdicts are shown,
  not searched. The alert's title and description are searched beside these words
  (``alerts.models.SEARCHED_FIELDS``); ``alerts.search`` splits them into words.
* Bounded: ``entities_text`` (the words, space-separated) is cut at
  ``ENTITIES_TEXT_LENGTH`` characters and ``evidence_summary`` ("2 files, 1 user") at
  ``EVIDENCE_SUMMARY_LENGTH``, its column's length. The lists are not cut: they are as
  long as the payload's distinct evidence.
"""

from __future__ import annotations

import re
from typing import Any

EVIDENCE_SUMMARY_LENGTH = 500
ENTITIES_TEXT_LENGTH = 8000


def as_text(value: Any) -> str:
    """A string field; None, "null" (Cloud Apps writes that) and non-strings -> ""."""
    if isinstance(value, str):
        value = value.strip()
        return "" if len(value) == 4 and value.lower() == "null" else value
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


class Entities:
    """Collects evidence rows, devices, users and search words for one alert."""

    def __init__(self) -> None:
        self.evidence: list[dict[str, Any]] = []
        self.devices: list[dict[str, Any]] = []
        self.users: list[dict[str, Any]] = []
        self.words: list[str] = []
        self._seen_rows: set[tuple] = set()
        self._seen_devices: set[str] = set()
        self._seen_users: set[str] = set()
        self._seen_words: set[str] = set()

    def word(self, *values: Any) -> None:
        for value in values:
            text = as_text(value)
            if text and text.lower() not in self._seen_words:
                self._seen_words.add(text.lower())
                self.words.append(text)

    def row(self, kind: str, name: Any, detail: Any = "", **extra: Any) -> None:
        name, detail = as_text(name), as_text(detail)
        if not name and not detail:
            return
        key = (kind, name.lower(), detail.lower())
        if key in self._seen_rows:
            return
        self._seen_rows.add(key)
        row: dict[str, Any] = {"type": kind, "name": name, "detail": detail}
        for field, value in extra.items():
            text = as_text(value)
            if text:
                row[field] = text
        self.evidence.append(row)

    def device(self, device_id: Any, name: Any, os: Any = None) -> None:
        device_id, name = as_text(device_id), as_text(name)
        key = (device_id or name).lower()
        if not key or key in self._seen_devices:
            return
        self._seen_devices.add(key)
        self.devices.append({"id": device_id, "name": name, "os": as_text(os)})
        self.word(name)

    def user(self, name: Any, domain: Any = None, upn: Any = None) -> None:
        name, domain, upn = as_text(name), as_text(domain), as_text(upn)
        key = (upn or f"{domain}\\{name}").lower()
        if not (name or upn) or key in self._seen_users:
            return
        self._seen_users.add(key)
        self.users.append({"name": name, "domain": domain, "upn": upn})
        self.word(name, upn)

    def fields(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for row in self.evidence:
            counts[row["type"]] = counts.get(row["type"], 0) + 1
        summary = ", ".join(
            f"{n} {kind.replace('_', ' ')}{'' if n == 1 else 's'}"
            for kind, n in counts.items()
        )
        return {
            "evidence": self.evidence,
            "devices": self.devices,
            "users": self.users,
            "evidence_summary": summary[:EVIDENCE_SUMMARY_LENGTH],
            "entities_text": " ".join(self.words)[:ENTITIES_TEXT_LENGTH],
        }


def defender_entity(found: Entities, item: dict[str, Any]) -> None:
    """One MDE evidence item or XDR entity (the same flat shape)."""
    kind = as_text(item.get("entityType")).lower()
    hashes = {"sha1": item.get("sha1"), "sha256": item.get("sha256")}
    if kind == "file":
        found.row("file", item.get("fileName"), item.get("filePath"), **hashes)
        found.word(item.get("fileName"), item.get("sha1"), item.get("sha256"))
    elif kind == "process":
        name = item.get("processCommandLine") or item.get("fileName")
        found.row("process", name, item.get("filePath"), **hashes)
        found.word(item.get("fileName"), item.get("sha1"), item.get("sha256"))
    elif kind == "user":
        found.user(
            item.get("accountName"),
            item.get("domainName"),
            item.get("userPrincipalName"),
        )
        found.row(
            "user",
            item.get("userPrincipalName") or item.get("accountName"),
            item.get("domainName"),
            sid=item.get("userSid"),
        )
    elif kind == "ip":
        found.row("ip", item.get("ipAddress"))
        found.word(item.get("ipAddress"))
    elif kind == "url":
        found.row("url", item.get("url"))
        found.word(item.get("url"))
    elif kind == "registry":
        found.row("registry", item.get("registryKey"), item.get("registryValue"))
    elif kind == "mailbox":
        found.row("mailbox", item.get("mailboxAddress"), item.get("mailboxDisplayName"))
        found.word(item.get("mailboxAddress"))
    elif kind == "mailmessage":
        found.row("mail_message", item.get("subject"), item.get("sender"))
        found.word(item.get("sender"), item.get("recipient"))
    elif kind == "mailcluster":
        found.row("mail_cluster", item.get("clusterBy"))
    elif kind == "securitygroup":
        found.row("security_group", item.get("securityGroupName"))
    elif kind:
        found.row("other", kind)


_GRAPH_KIND = re.compile(r"#?microsoft\.graph\.security\.(\w+?)(?:Evidence)?$")


def graph_evidence(found: Entities, item: dict[str, Any]) -> None:
    """One Graph alertEvidence item (typed by ``@odata.type``)."""
    match = _GRAPH_KIND.match(as_text(item.get("@odata.type")))
    kind = match.group(1).lower() if match else ""
    extra = {"verdict": item.get("verdict")}
    account = (
        item.get("userAccount") if isinstance(item.get("userAccount"), dict) else {}
    )
    if kind == "device":
        found.device(
            item.get("mdeDeviceId"), item.get("deviceDnsName"), item.get("osPlatform")
        )
        found.row("device", item.get("deviceDnsName"), item.get("osPlatform"), **extra)
        for ip in item.get("ipInterfaces") or []:
            found.word(ip)
    elif kind in ("file", "process"):
        details = item.get("fileDetails") or item.get("imageFile") or {}
        if not isinstance(details, dict):
            details = {}
        hashes = {"sha1": details.get("sha1"), "sha256": details.get("sha256")}
        if kind == "file":
            found.row(
                "file",
                details.get("fileName"),
                details.get("filePath"),
                **hashes,
                **extra,
            )
        else:
            name = item.get("processCommandLine") or details.get("fileName")
            found.row("process", name, details.get("filePath"), **hashes, **extra)
        found.word(details.get("fileName"), details.get("sha1"), details.get("sha256"))
    elif kind == "user":
        found.user(
            account.get("accountName"),
            account.get("domainName"),
            account.get("userPrincipalName"),
        )
        found.row(
            "user",
            account.get("userPrincipalName") or account.get("accountName"),
            account.get("domainName"),
            **extra,
        )
    elif kind == "ip":
        found.row("ip", item.get("ipAddress"), item.get("countryLetterCode"), **extra)
        found.word(item.get("ipAddress"))
    elif kind == "url":
        found.row("url", item.get("url"), **extra)
        found.word(item.get("url"))
    elif kind in ("registrykey", "registryvalue"):
        found.row(
            "registry", item.get("registryKey"), item.get("registryValue"), **extra
        )
    elif kind == "mailbox":
        found.row(
            "mailbox", item.get("primaryAddress"), item.get("displayName"), **extra
        )
        found.word(item.get("primaryAddress"))
    elif kind == "analyzedmessage":
        found.row("mail_message", item.get("subject"), item.get("senderIp"), **extra)
    elif kind == "mailcluster":
        found.row("mail_cluster", item.get("query") or item.get("name"), **extra)
    elif kind in ("cloudapplication", "oauthapplication"):
        found.row(
            "cloud_application", item.get("displayName"), item.get("appId"), **extra
        )
    elif kind == "securitygroup":
        found.row("security_group", item.get("displayName"), **extra)
    elif kind:
        found.row("other", kind, **extra)
    if account and kind != "user":
        found.user(
            account.get("accountName"),
            account.get("domainName"),
            account.get("userPrincipalName"),
        )

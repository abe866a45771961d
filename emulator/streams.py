"""Seeded, lazily generated alert and incident streams (one per tenant).

One canonical ``Alert`` per alert; the APIs render it into their own shapes. A tenant's
stream is built the first time it is used (backlog over the last 30 days before the
world's start), then caught up to ``world.now()`` on every access: new alerts arrive at
``alerts_per_minute`` and scheduled updates (New -> InProgress -> Resolved, owner,
classification) move ``lastUpdateTime``.

Times are integer epoch microseconds. Indices are sorted lists of integer keys
``(time_us << SEQ_BITS) | seq`` so a ``lastUpdateTime ge X`` page is a bisect plus a
slice.
"""

from __future__ import annotations

import bisect
import copy
import functools
import hashlib
import heapq
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

SEQ_BITS = 24
SEQ_MASK = (1 << SEQ_BITS) - 1
US = 1_000_000
MINUTE_US = 60 * US
HOUR_US = 3600 * US
DAY_US = 86400 * US
DOTNET_EPOCH_TICKS = 621_355_968_000_000_000

SOURCES = ("mde", "mcas", "mdo")
SEVERITIES = ("Informational", "Low", "Medium", "High")
SEVERITY_RANK = {"UnSpecified": 0, "Informational": 1, "Low": 2, "Medium": 3, "High": 4}

# classification -> determinations that go with it (MDE spellings)
DETERMINATIONS = {
    "TruePositive": (
        "MultiStagedAttack",
        "MaliciousUserActivity",
        "CompromisedUser",
        "Malware",
        "Phishing",
        "UnwantedSoftware",
        "Other",
    ),
    "InformationalExpectedActivity": (
        "SecurityTesting",
        "LineOfBusinessApplication",
        "ConfirmedUserActivity",
        "Other",
    ),
    "FalsePositive": ("Clean", "InsufficientData", "Other"),
}


# Rendering one alert formats its creation time once per piece of evidence, and every
# device the same first-seen time: a small cache answers those repeats.
@functools.lru_cache(maxsize=1024)
def fmt_time(us: int | None, trim: bool = False) -> str | None:
    """ISO-8601 UTC with 7 fractional digits (``trim``: drop trailing zeros)."""
    if us is None:
        return None
    # The date comes from a small cache and the clock time from integer arithmetic,
    # at a third of the cost of a datetime.
    secs, frac = divmod(us, US)
    days, secs = divmod(secs, 86400)
    minutes, secs = divmod(secs, 60)
    base = f"{_utc_date(days)}T{_HOURS_MINUTES[minutes]}:{secs:02d}"
    if trim:
        digits = f"{frac:06d}".rstrip("0")
        return f"{base}.{digits}Z" if digits else f"{base}Z"
    return f"{base}.{frac:06d}0Z"


_HOURS_MINUTES = tuple(f"{h:02d}:{m:02d}" for h in range(24) for m in range(60))


@functools.lru_cache(maxsize=4096)
def _utc_date(days: int) -> str:
    """``YYYY-MM-DD`` of a day counted from the epoch."""
    return datetime.fromtimestamp(days * 86400, UTC).isoformat()[:10]


def fmt_ms(us: int | None) -> int | None:
    return None if us is None else us // 1000


def key_of(time_us: int, seq: int) -> int:
    return (time_us << SEQ_BITS) | seq


def _h(*parts: Any) -> str:
    return hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()  # noqa: S324


def _h64(*parts: Any) -> int:
    return int(_h(*parts)[:16], 16)


# -- realistic, deterministic details --------------------------------------------

FIRST = (
    "jdoe", "asmith", "mgarcia", "lchen", "pnovak", "kpatel", "omartin", "ewilson",
    "rtanaka", "sjohansson", "fdubois", "amueller", "nkowalski", "tnguyen", "bokafor",
    "hsilva", "cmorales", "ibrahim.a", "svc-backup", "adm-helpdesk",
)  # fmt: skip
DISPLAY = {
    "jdoe": "John Doe", "asmith": "Alice Smith", "mgarcia": "Maria Garcia",
    "lchen": "Li Chen", "pnovak": "Petr Novak", "kpatel": "Kiran Patel",
    "omartin": "Olivia Martin", "ewilson": "Ethan Wilson", "rtanaka": "Ren Tanaka",
    "sjohansson": "Sara Johansson", "fdubois": "Francois Dubois",
    "amueller": "Anna Mueller", "nkowalski": "Nina Kowalski", "tnguyen": "Thanh Nguyen",
    "bokafor": "Bola Okafor", "hsilva": "Helena Silva", "cmorales": "Carlos Morales",
    "ibrahim.a": "Ahmed Ibrahim", "svc-backup": "Backup Service",
    "adm-helpdesk": "Helpdesk Admin",
}  # fmt: skip
HOST_PREFIX = ("ws", "lt", "ws", "lt", "srv", "dc", "sql", "web", "vdi", "kiosk")
FILES = (
    ("invoice_0423.docm", "C:\\Users\\{user}\\Downloads"),
    ("mimikatz.exe", "C:\\Users\\Public"),
    ("payload.ps1", "C:\\Windows\\Temp"),
    ("svch0st.exe", "C:\\ProgramData\\Microsoft"),
    ("update.js", "C:\\Users\\{user}\\AppData\\Local\\Temp"),
    ("rclone.exe", "C:\\PerfLogs"),
    ("procdump64.exe", "C:\\Tools"),
    ("setup_x64.msi", "C:\\Users\\{user}\\Downloads"),
    ("AnyDesk.exe", "C:\\Users\\{user}\\AppData\\Roaming"),
    ("wmiprvse.dll", "C:\\Windows\\SysWOW64"),
)
URLS = (
    "http://login-micros0ft-online.example/common/oauth2/authorize",
    "https://sharepoint-docs-view.example/shared/invoice.html",
    "http://203.0.113.77/wp-content/plugins/x/update.php",
    "https://cdn-updates.example.net/agent/setup_x64.msi",
    "https://bit-ly.example/3xQ9kZ",
    "http://paypa1-verify.example/account/confirm",
)
PROCESS_LINES = (
    "powershell.exe -NoP -W Hidden -Enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAKQA=",
    "rundll32.exe C:\\Windows\\System32\\comsvcs.dll MiniDump 624 C:\\Temp\\l.dmp full",
    'cmd.exe /c whoami /all && net group "Domain Admins" /domain',
    "wscript.exe //B //E:jscript C:\\Users\\Public\\update.js",
    "reg.exe add HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run /v upd /d x",
    "schtasks.exe /create /tn Updater /tr C:\\ProgramData\\svch0st.exe /sc minute",
    "vssadmin.exe delete shadows /all /quiet",
)
COUNTRIES = ("Brazil", "Nigeria", "Russia", "Vietnam", "Romania", "Netherlands")
CLOUD_APPS = (
    (11161, "Office 365"),
    (20893, "Microsoft Exchange Online"),
    (15600, "Microsoft OneDrive for Business"),
    (20892, "Microsoft SharePoint Online"),
    (11770, "Dropbox"),
)

# (title, description, category, mitre, detectionSource, severity, threatFamily,
#  evidence kinds)
MDE_TEMPLATES: tuple[tuple, ...] = (
    ("Suspicious access to LSASS service",
     "A process accessed the memory of the LSASS service on {host}; credentials of "
     "{user} may have been dumped.",
     "CredentialAccess", ("T1003.001",), "WindowsDefenderAtp", "High", None,
     ("Process", "User")),
    ("Suspicious PowerShell command line",
     "A suspicious PowerShell command line was executed on {host} by {user}.",
     "Execution", ("T1059.001",), "WindowsDefenderAtp", "Medium", None,
     ("Process", "User", "File")),
    ("'Mimikatz' hacktool was detected",
     "Microsoft Defender Antivirus detected the hacktool {file} on {host}.",
     "Malware", ("T1003",), "WindowsDefenderAv", "High", "Mimikatz",
     ("File", "User")),
    ("Suspicious file dropped and launched",
     "The file {file} was dropped by a browser and launched on {host}.",
     "Execution", ("T1204.002",), "WindowsDefenderAtp", "Medium", None,
     ("File", "Process")),
    ("Connection to a custom network indicator",
     "{host} connected to {ip}, which matches a custom indicator.",
     "CommandAndControl", ("T1071",), "CustomerTI", "Medium", None,
     ("Ip", "Url")),
    ("Ransomware behavior detected in the file system",
     "Files on {host} were encrypted in bulk by {file} running as {user}.",
     "Ransomware", ("T1486", "T1490"), "WindowsDefenderAtp", "High", "Ransom",
     ("File", "Process", "User")),
    ("Suspicious scheduled task",
     "A scheduled task that launches {file} was created on {host}.",
     "Persistence", ("T1053.005",), "WindowsDefenderAtp", "Low", None,
     ("Process", "Registry")),
    ("An active 'Meterpreter' malware was blocked",
     "Meterpreter was blocked on {host} while running as {user}.",
     "Malware", ("T1055",), "WindowsDefenderAv", "Medium", "Meterpreter",
     ("File",)),
    ("Anomalous account lookups",
     "{user} ran account discovery commands on {host}.",
     "Discovery", ("T1087.002",), "WindowsDefenderAtp", "Low", None,
     ("User", "Process")),
    ("Possible lateral movement using remote services",
     "{host} was accessed from {ip} using {user}'s credentials.",
     "LateralMovement", ("T1021.002",), "WindowsDefenderAtp", "Medium", None,
     ("User", "Ip")),
    ("Unwanted software was detected",
     "Potentially unwanted software {file} was detected on {host}.",
     "UnwantedSoftware", (), "WindowsDefenderAv", "Informational", "Presenoker",
     ("File",)),
    ("Suspicious registry modification",
     "A Run key was added on {host} to start {file} at logon.",
     "DefenseEvasion", ("T1547.001", "T1112"), "WindowsDefenderAtp", "Low", None,
     ("Registry", "Process")),
)  # fmt: skip
MCAS_TEMPLATES: tuple[tuple, ...] = (
    ("Impossible travel activity",
     "The user {display} ({upn}) performed activities from {country} and the home "
     "country within 40 minutes, which is impossible travel.",
     "InitialAccess", ("T1078",), "MCAS", "Medium", None, ("User", "Ip"), [2], [0]),
    ("Mass download by a single user",
     "{display} ({upn}) downloaded 1,284 files from {app} in 5 minutes.",
     "Exfiltration", ("T1530",), "MCAS", "Medium", None, ("User",), [9], [0]),
    ("Activity from infrequent country",
     "{display} signed in to {app} from {country} ({ip}) for the first time.",
     "InitialAccess", ("T1078",), "MCAS", "Low", None, ("User", "Ip"), [2], [0]),
    ("Suspicious inbox forwarding",
     "{display} ({upn}) created an inbox rule forwarding all mail to an external "
     "address.",
     "Exfiltration", ("T1114.003",), "MCAS", "High", None, ("User", "MailBox"), [9],
     [0]),
    ("Ransomware activity",
     "The user {display} ({upn}) manipulated 99 files with extension .crypt in {app}.",
     "Impact", ("T1486",), "MCAS", "High", None, ("User", "File"), [13], [0]),
    ("Multiple failed login attempts",
     "{display} failed to sign in to {app} 43 times from {ip}.",
     "CredentialAccess", ("T1110",), "MCAS", "Low", None, ("User", "Ip"), [5], [0]),
)  # fmt: skip
MDO_TEMPLATES: tuple[tuple, ...] = (
    ("Email messages containing malicious URL removed after delivery",
     "Emails with a malicious URL ({url}) were delivered and later removed from "
     "{upn}'s mailbox.",
     "InitialAccess", ("T1566.002",), "OfficeATP", "Informational", None,
     ("MailBox", "Url")),
    ("A potentially malicious URL click was detected",
     "{display} clicked {url}, which was later found malicious.",
     "InitialAccess", ("T1566.002",), "OfficeATP", "High", None, ("User", "Url")),
    ("User restricted from sending email",
     "{upn} exceeded outbound spam limits and was restricted.",
     "InitialAccess", (), "OfficeATP", "High", None, ("User", "MailBox")),
)  # fmt: skip
TEMPLATES = {"mde": MDE_TEMPLATES, "mcas": MCAS_TEMPLATES, "mdo": MDO_TEMPLATES}
# template tuple positions of the fields ``Alert.field`` reads
TEMPLATE_FIELDS = {
    "title": 0,
    "category": 2,
    "mitreTechniques": 3,
    "detectionSource": 4,
    "threatFamilyName": 6,
}
SERVICE_SOURCE = {  # XDR serviceSource
    "mde": "MicrosoftDefenderATP",
    "mcas": "MicrosoftCloudAppSecurity",
    "mdo": "OfficeATP",
}
DEVICES_PER_TENANT = 48


class Machine:
    __slots__ = ("index", "id", "host", "os", "version", "build", "aad_id", "ip")

    def __init__(self, tenant_key: str, domain: str, index: int):
        self.index = index
        self.id = _h("machine", tenant_key, index)
        prefix = HOST_PREFIX[index % len(HOST_PREFIX)]
        label = domain.split(".")[0]
        self.host = f"{prefix}-{index + 1:03d}.{label}.local"
        server = prefix in ("srv", "dc", "sql", "web")
        desktop = ("Windows11", "Windows10")[index % 2]
        self.os = "WindowsServer2022" if server else desktop
        self.version = "21H2" if server else ("23H2", "22H2")[index % 2]
        self.build = 20348 if server else (22631, 19045)[index % 2]
        self.aad_id = _guid_from(_h("aad-device", tenant_key, index))
        self.ip = f"10.{index % 7}.{(index * 3) % 250}.{10 + index}"


def _guid_from(hexstr: str) -> str:
    h = hexstr.ljust(32, "0")
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


@functools.lru_cache(maxsize=64)
def detector_id(tmpl: int) -> str:
    """The detector GUID of a template index (the same in every API)."""
    return _guid_from(_h("detector", tmpl))


@functools.lru_cache(maxsize=1024)
def _details(r: int, domain: str, tenant_id: str, host: str | None) -> dict[str, Any]:
    user = FIRST[(r >> 8) % len(FIRST)]
    fname, fdir = FILES[(r >> 16) % len(FILES)]
    app_id, app_name = CLOUD_APPS[(r >> 40) % len(CLOUD_APPS)]
    return {
        "user": user,
        "display": DISPLAY[user],
        "upn": f"{user}@{domain}",
        "netbios": _netbios(domain),
        "host": host or f"ws-{(r >> 4) % 90 + 1:03d}",
        "file": fname,
        "file_path": fdir.format(user=user),
        "sha1": _h("sha1", r),
        "sha256": hashlib.sha256(str(r).encode()).hexdigest(),
        "ip": f"{(198, 203, 192)[(r >> 24) % 3]}.{(51, 0, 0)[(r >> 24) % 3]}."
        f"{(100, 113, 2)[(r >> 24) % 3]}.{(r >> 28) % 250 + 1}",
        "url": URLS[(r >> 32) % len(URLS)],
        "cmd": PROCESS_LINES[(r >> 36) % len(PROCESS_LINES)],
        "country": COUNTRIES[(r >> 44) % len(COUNTRIES)],
        "app": app_name,
        "app_id": app_id,
        "pid": 1000 + (r >> 48) % 9000,
        "ppid": 500 + (r >> 52) % 500,
        "sid": f"S-1-5-21-{1000000 + r % 900000}-{2000 + (r >> 20) % 7000}-"
        f"{(r >> 30) % 90000}-{1100 + (r >> 8) % len(FIRST)}",
        "aad_user_id": _aad_user_id(tenant_id, user),
    }


@functools.lru_cache(maxsize=1024)
def _netbios(domain: str) -> str:
    return domain.split(".")[0].upper().replace("-", "")[:15]


@functools.lru_cache(maxsize=4096)
def _aad_user_id(tenant_id: str, user: str) -> str:
    return _guid_from(_h("user", tenant_id, user))


class Alert:
    """The canonical alert record (rendered per API by ``emulator.apis``)."""

    __slots__ = (
        "seq", "stream", "source", "id", "provider_id", "incident", "created",
        "first_event", "last_event", "last_update", "resolved", "status", "severity",
        "assigned_to", "classification", "determination", "investigation_state",
        "tmpl", "rseed", "comments", "extra", "manual", "read", "investigation_id",
    )  # fmt: skip

    def __init__(self) -> None:
        self.comments: list[dict] | None = None
        self.extra: dict | None = None
        self.manual = False
        self.read = False
        self.assigned_to: str | None = None
        self.classification: str | None = None
        self.determination: str | None = None
        self.resolved: int | None = None
        self.investigation_id: int | None = None

    # template fields, overridable through ``extra`` (add_alert)
    def template(self) -> tuple:
        return TEMPLATES[self.source][self.tmpl]

    def field(self, name: str) -> Any:
        if self.extra and name in self.extra:
            return self.extra[name]
        value = self.template()[TEMPLATE_FIELDS[name]]
        return list(value) if isinstance(value, tuple) else value

    @property
    def title(self) -> str:
        return self.field("title")

    @property
    def description(self) -> str:
        if self.extra and "description" in self.extra:
            return self.extra["description"]
        d = self.details()
        return self.template()[1].format(**d)

    def machine(self) -> Machine | None:
        if self.source != "mde":
            return None
        m = self.stream.machines[self.rseed % DEVICES_PER_TENANT]
        host = self._entities().get("host")
        if host is not None:
            m = copy.copy(m)
            m.host = host
        return m

    def _entities(self) -> dict[str, Any]:
        """Entity overrides given to ``add_alert`` (``fields["entities"]``)."""
        if not self.extra or not isinstance(self.extra.get("entities"), dict):
            return {}
        return self.extra["entities"]

    def evidence_kinds(self) -> tuple[str, ...]:
        """The template's evidence kinds, or ``fields["evidenceKinds"]``."""
        kinds = self.extra.get("evidenceKinds") if self.extra else None
        return tuple(kinds) if kinds else self.template()[7]

    def details(self) -> dict[str, Any]:
        """Deterministic entities derived from ``rseed`` (cheap: no RNG objects).

        Shared and read-only: rendering one alert asks for them several times (its
        description, its evidence, the alert itself), so they are computed once."""
        m = self.machine()
        tenant = self.stream.tenant
        found = _details(self.rseed, tenant.domain, tenant.id, m.host if m else None)
        entities = self._entities()
        if entities:
            found = {**found, **{k: v for k, v in entities.items() if k in found}}
        return found

    def touch(self, at: int) -> None:
        self.stream.move_alert(self, at)


class Incident:
    __slots__ = (
        "seq", "stream", "id", "created", "last_update", "status", "assigned_to",
        "classification", "determination", "tags", "comments", "alerts",
        "redirect_id", "target_size", "manual", "description",
    )  # fmt: skip

    def __init__(self) -> None:
        self.status = "Active"
        self.assigned_to: str | None = None
        self.classification: str | None = None
        self.determination: str | None = None
        self.tags: list[str] = []
        self.comments: list[dict] = []
        self.alerts: list[Alert] = []
        self.redirect_id: int | None = None
        self.manual = False
        self.description: str | None = None

    @property
    def severity(self) -> str:
        if not self.alerts:
            return "Informational"
        return max((a.severity for a in self.alerts), key=SEVERITY_RANK.get)

    @property
    def name(self) -> str:
        if not self.alerts:
            return "Empty incident"
        first = self.alerts[0]
        if len(self.alerts) == 1:
            return first.title
        m = first.machine()
        where = "one endpoint" if m else "one user"
        return f"Multi-stage incident involving {first.field('category')} on {where}"


class SortedKeys:
    """A sorted list of int keys (time << SEQ_BITS | seq)."""

    __slots__ = ("keys",)

    def __init__(self) -> None:
        self.keys: list[int] = []

    def add(self, key: int) -> None:
        if not self.keys or key > self.keys[-1]:
            self.keys.append(key)
        else:
            bisect.insort(self.keys, key)

    def remove(self, key: int) -> None:
        i = bisect.bisect_left(self.keys, key)
        if i < len(self.keys) and self.keys[i] == key:
            del self.keys[i]

    def bounds(
        self, lo: int | None, lo_incl: bool, hi: int | None, hi_incl: bool
    ) -> tuple[int, int]:
        """Index range of keys whose time is within the bounds."""
        k = self.keys
        start = 0
        end = len(k)
        if lo is not None:
            start = bisect.bisect_left(k, key_of(lo if lo_incl else lo + 1, 0))
        if hi is not None:
            end = bisect.bisect_left(k, key_of(hi + 1 if hi_incl else hi, 0))
        return start, max(start, end)


# What ``TenantStream.to_state`` keeps of each alert and incident (links aside).
ALERT_STATE = tuple(
    name for name in Alert.__slots__ if name not in ("stream", "incident")
)
INCIDENT_STATE = tuple(
    name for name in Incident.__slots__ if name not in ("stream", "alerts")
)


class TenantStream:
    """All alerts and incidents of one tenant, caught up lazily to ``world.now()``."""

    def __init__(self, world: Any, tenant: Any, index: int):
        self.world = world
        self.tenant = tenant
        self.index = index
        self.seed_key = f"{world.seed}:{index}"
        self.rng = random.Random(f"stream:{self.seed_key}")  # noqa: S311
        self.t0 = world.start_us
        self.alerts: list[Alert] = []
        self.by_id: dict[str, Alert] = {}
        self.incidents: list[Incident] = []
        self.inc_by_id: dict[int, Incident] = {}
        self.idx_all = SortedKeys()
        self.idx_source = {s: SortedKeys() for s in SOURCES}
        self.created_lists: dict[str, list[Alert]] = {s: [] for s in SOURCES}
        self.inc_idx = SortedKeys()
        self.events: list[tuple[int, int, int, str]] = []
        self.event_counter = 0
        self.machines = [
            Machine(tenant.id, tenant.domain, i) for i in range(DEVICES_PER_TENANT)
        ]
        self.machine_by_id = {m.id: m for m in self.machines}
        self.next_k = 0
        self.open_incident: Incident | None = None
        self.added = 0
        self.caught_up_to = 0
        # Build the backlog and replay its past updates without index upkeep, then
        # sort once: O(n log n) instead of a list insert per update.
        self.bulk = True
        self._build_backlog(world.backlog_per_tenant)
        self.catch_up(world.now_us())
        self.bulk = False
        self._rebuild_indexes()

    def _rebuild_indexes(self) -> None:
        self.idx_all.keys = sorted(key_of(a.last_update, a.seq) for a in self.alerts)
        for source, keys in self.idx_source.items():
            keys.keys = sorted(
                key_of(a.last_update, a.seq) for a in self.created_lists[source]
            )
        self.inc_idx.keys = sorted(key_of(i.last_update, i.seq) for i in self.incidents)

    # -- generation ----------------------------------------------------------------
    def _build_backlog(self, count: int) -> None:
        span = 30 * DAY_US
        offsets = sorted(self.rng.randrange(span) for _ in range(count))
        for off in offsets:
            self._new_generated_alert(self.t0 - span + off)

    def _arrival_time(self, k: int) -> int:
        rate = self.world.alerts_per_minute
        interval = int(MINUTE_US / rate)
        jitter = _h64("arrival", self.seed_key, k) % max(1, int(interval * 0.9))
        return self.t0 + k * interval + jitter

    def catch_up(self, now_us: int) -> None:
        if now_us <= self.caught_up_to:
            return
        if self.world.alerts_per_minute > 0:
            while True:
                at = self._arrival_time(self.next_k)
                if at > now_us:
                    break
                self.next_k += 1
                self._new_generated_alert(at)
        while self.events and self.events[0][0] <= now_us:
            at, _, seq, kind = heapq.heappop(self.events)
            self._apply_event(self.alerts[seq], at, kind)
        self.caught_up_to = now_us

    def _schedule(self, at: int, alert: Alert, kind: str) -> None:
        self.event_counter += 1
        heapq.heappush(self.events, (at, self.event_counter, alert.seq, kind))

    def _new_generated_alert(self, created: int) -> Alert:
        rng = self.rng
        roll = rng.random()
        source = "mde" if roll < 0.7 else ("mcas" if roll < 0.9 else "mdo")
        tmpl = rng.randrange(len(TEMPLATES[source]))
        rseed = rng.getrandbits(64)
        sev = TEMPLATES[source][tmpl][5]
        if rng.random() < 0.2:
            sev = SEVERITIES[rng.randrange(len(SEVERITIES))]
        alert = self._make_alert(source, created, rseed, tmpl, sev)
        alert.investigation_state = (
            ("Queued", "Running", "PendingApproval", "UnsupportedAlertType")[
                rng.randrange(4)
            ]
            if source == "mde"
            else None
        )
        if source == "mde" and rng.random() < 0.5:
            alert.investigation_id = 1000 + rng.randrange(900000)
        self._attach_to_incident(alert, rng.randrange(1_000_000))
        # Scheduled life cycle (applied when the clock passes it).
        r = rng.random()
        if r < 0.1:
            self._schedule(created + rng.randrange(60, 1800) * US, alert, "auto")
        elif r < 0.7:
            t1 = created + rng.randrange(300, 2 * 86400) * US
            self._schedule(t1, alert, "progress")
            if rng.random() < 0.7:
                t2 = t1 + rng.randrange(3600, 5 * 86400) * US
                self._schedule(t2, alert, "resolve")
        return alert

    def _make_alert(
        self, source: str, created: int, rseed: int, tmpl: int, severity: str
    ) -> Alert:
        a = Alert()
        a.seq = len(self.alerts)
        if a.seq > SEQ_MASK:
            raise RuntimeError("too many alerts in one tenant")
        a.stream = self
        a.source = source
        a.rseed = rseed
        a.tmpl = tmpl
        a.severity = severity
        a.status = "New"
        a.investigation_state = None
        # ``at`` is when the alert shows up (its first lastUpdateTime); it was
        # created a few seconds earlier, from events a few minutes before that.
        a.last_update = created
        created -= (rseed >> 20) % 5000 * 1000 + 1
        a.created = created
        a.first_event = created - (rseed % 300) * US - 1_500_000
        a.last_event = a.first_event + (rseed >> 12) % 120 * US
        if source == "mde":
            ticks = created * 10 + DOTNET_EPOCH_TICKS
            a.id = f"da{ticks}_{rseed % 10_000_000_000}"
            a.provider_id = a.id
        elif source == "mcas":
            a.provider_id = _h("mcas", rseed)[:24]
            a.id = "ca" + _guid_from(_h("ca", rseed)).upper()
        else:
            pid = _guid_from(_h("mdo", rseed))
            a.provider_id = pid
            a.id = "fa" + pid
        self.alerts.append(a)
        self.created_lists[source].append(a)
        self.by_id[a.id] = a
        if a.provider_id != a.id:
            self.by_id[a.provider_id] = a
        if not self.bulk:
            self.idx_all.add(key_of(a.last_update, a.seq))
            self.idx_source[source].add(key_of(a.last_update, a.seq))
        return a

    def _attach_to_incident(self, alert: Alert, roll: int) -> None:
        inc = self.open_incident
        if (
            inc is None
            or len(inc.alerts) >= inc.target_size
            or alert.created - inc.created > 6 * HOUR_US
            or inc.status == "Resolved"
        ):
            inc = self.new_incident(
                alert.created, (1, 1, 1, 1, 1, 1, 2, 2, 2, 3, 4)[roll % 11]
            )
            self.open_incident = inc
        self._link(alert, inc)

    def new_incident(self, created: int, target_size: int = 1) -> Incident:
        inc = Incident()
        inc.seq = len(self.incidents)
        inc.stream = self
        inc.id = (self.index + 1) * 1_000_000 + inc.seq + 1
        inc.created = created
        inc.last_update = created
        inc.target_size = target_size
        self.incidents.append(inc)
        self.inc_by_id[inc.id] = inc
        if not self.bulk:
            self.inc_idx.add(key_of(inc.last_update, inc.seq))
        return inc

    def _link(self, alert: Alert, inc: Incident) -> None:
        alert.incident = inc
        inc.alerts.append(alert)
        self.move_incident(inc, alert.last_update)

    # -- changes -------------------------------------------------------------------
    def move_alert(self, alert: Alert, at: int) -> None:
        """Set ``lastUpdateTime`` (re-indexing) and bump its incident."""
        at = max(at, alert.last_update + 1)
        if self.bulk:
            alert.last_update = at
            self.refresh_incident(alert.incident, at)
            return
        old = key_of(alert.last_update, alert.seq)
        self.idx_all.remove(old)
        self.idx_source[alert.source].remove(old)
        alert.last_update = at
        new = key_of(at, alert.seq)
        self.idx_all.add(new)
        self.idx_source[alert.source].add(new)
        self.refresh_incident(alert.incident, at)

    def move_incident(self, inc: Incident, at: int) -> None:
        if at <= inc.last_update:
            return
        if self.bulk:
            inc.last_update = at
            return
        self.inc_idx.remove(key_of(inc.last_update, inc.seq))
        inc.last_update = at
        self.inc_idx.add(key_of(at, inc.seq))

    def refresh_incident(self, inc: Incident, at: int) -> None:
        """Derive the incident status from its alerts and bump its lastUpdateTime."""
        statuses = {a.status for a in inc.alerts}
        if inc.status != "Redirected":
            if statuses == {"Resolved"}:
                if inc.status != "Resolved":
                    inc.status = "Resolved"
                    first = inc.alerts[0]
                    inc.classification = inc.classification or first.classification
                    inc.determination = inc.determination or first.determination
            elif inc.status == "Resolved":
                inc.status = "Active"
            elif "InProgress" in statuses and inc.status == "Active":
                inc.status = "InProgress"
            if inc.assigned_to is None:
                inc.assigned_to = next(
                    (a.assigned_to for a in inc.alerts if a.assigned_to), None
                )
        self.move_incident(inc, at)

    def _analyst(self, r: int) -> str:
        return f"{FIRST[r % 8]}@{self.tenant.domain}"

    def _apply_event(self, alert: Alert, at: int, kind: str) -> None:
        if alert.manual:
            return
        r = _h64("event", self.seed_key, alert.seq, kind)
        if kind == "auto":
            alert.status = "Resolved"
            alert.assigned_to = "Automation"
            alert.classification = "FalsePositive" if r % 3 == 0 else "TruePositive"
            alert.determination = DETERMINATIONS[alert.classification][
                (r >> 4) % len(DETERMINATIONS[alert.classification])
            ]
            if alert.source == "mde":
                alert.investigation_state = "SuccessfullyRemediated"
            alert.resolved = at
        elif kind == "progress":
            if alert.status == "Resolved":
                return
            alert.status = "InProgress"
            alert.assigned_to = self._analyst(r)
            if alert.source == "mde" and alert.investigation_state == "Queued":
                alert.investigation_state = "Running"
        elif kind == "resolve":
            alert.status = "Resolved"
            classes = tuple(DETERMINATIONS)
            alert.classification = classes[r % 3]
            dets = DETERMINATIONS[alert.classification]
            alert.determination = dets[(r >> 4) % len(dets)]
            alert.resolved = at
            if alert.source == "mde" and alert.investigation_state in (
                "Running",
                "Queued",
                "PendingApproval",
            ):
                alert.investigation_state = (
                    "Benign"
                    if alert.classification != "TruePositive"
                    else "SuccessfullyRemediated"
                )
        alert.touch(at)

    def bump_random(self, rng: random.Random, at: int) -> Alert | None:
        """Advance one random alert's life cycle by a step (for load tests)."""
        if not self.alerts:
            return None
        alert = self.alerts[rng.randrange(len(self.alerts))]
        if alert.status == "New":
            alert.status = "InProgress"
            alert.assigned_to = self._analyst(rng.randrange(1000))
        elif alert.status == "InProgress":
            alert.status = "Resolved"
            alert.classification = "TruePositive"
            alert.determination = "Malware"
            alert.resolved = at
        else:
            alert.comments = (alert.comments or []) + [
                {
                    "comment": "Reviewed again",
                    "createdBy": self._analyst(rng.randrange(1000)),
                    "createdTime": fmt_time(at),
                }
            ]
        alert.touch(at)
        return alert

    def add_alert(self, source: str, fields: dict[str, Any], at: int) -> Alert:
        """A control-added alert (fields override the template; new incident)."""
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}; expected one of {SOURCES}")
        self.added += 1
        rseed = _h64("added", self.seed_key, self.added)
        fields = dict(fields)
        severity = fields.pop("severity", None) or "Medium"
        if severity not in SEVERITY_RANK:
            raise ValueError(f"unknown severity {severity!r}")
        alert = self._make_alert(source, at, rseed, 0, severity)
        alert.investigation_state = "Queued" if source == "mde" else None
        for name in ("status", "assignedTo", "classification", "determination"):
            if name in fields:
                value = fields.pop(name)
                attr = {"assignedTo": "assigned_to"}.get(name, name)
                setattr(alert, attr, value)
        if alert.status == "Resolved":
            alert.resolved = at
        alert.manual = bool(fields.pop("manual", True))
        if "comments" in fields:
            alert.comments = list(fields.pop("comments"))
        inc_id = fields.pop("incidentId", None)
        alert.extra = fields or None
        inc = self.inc_by_id.get(int(inc_id)) if inc_id is not None else None
        if inc is None:
            inc = self.new_incident(at)
        self._link(alert, inc)
        self.refresh_incident(inc, alert.last_update)
        return alert

    # -- saving and restoring (emulator.persistence) ----------------------------------
    def to_state(self) -> dict[str, Any]:
        """Everything needed to rebuild this stream exactly, as JSON-ready values.

        Callers hold ``world.lock``."""
        version, internal, gauss = self.rng.getstate()
        return {
            "index": self.index,
            "t0": self.t0,
            "rng": [version, list(internal), gauss],
            "next_k": self.next_k,
            "added": self.added,
            "caught_up_to": self.caught_up_to,
            "event_counter": self.event_counter,
            "events": [list(event) for event in self.events],
            "open_incident": (
                None if self.open_incident is None else self.open_incident.seq
            ),
            "alerts": [[getattr(a, f) for f in ALERT_STATE] for a in self.alerts],
            "alert_incidents": [a.incident.seq for a in self.alerts],
            "incidents": [
                [getattr(i, f) for f in INCIDENT_STATE] for i in self.incidents
            ],
        }

    @classmethod
    def from_state(cls, world: Any, tenant: Any, state: dict[str, Any]):
        """The stream ``to_state`` described, without generating anything again."""
        st = cls.__new__(cls)
        st.world = world
        st.tenant = tenant
        st.index = int(state["index"])
        st.seed_key = f"{world.seed}:{st.index}"
        st.rng = random.Random()  # noqa: S311
        version, internal, gauss = state["rng"]
        st.rng.setstate((version, tuple(internal), gauss))
        st.t0 = int(state["t0"])
        st.alerts, st.by_id, st.incidents, st.inc_by_id = [], {}, [], {}
        st.idx_all = SortedKeys()
        st.idx_source = {s: SortedKeys() for s in SOURCES}
        st.created_lists = {s: [] for s in SOURCES}
        st.inc_idx = SortedKeys()
        st.events = [tuple(event) for event in state["events"]]
        heapq.heapify(st.events)
        st.event_counter = int(state["event_counter"])
        st.machines = [
            Machine(tenant.id, tenant.domain, i) for i in range(DEVICES_PER_TENANT)
        ]
        st.machine_by_id = {m.id: m for m in st.machines}
        st.next_k = int(state["next_k"])
        st.added = int(state["added"])
        st.caught_up_to = int(state["caught_up_to"])
        st.bulk = False
        for values in state["incidents"]:
            inc = Incident()
            for name, value in zip(INCIDENT_STATE, values, strict=True):
                setattr(inc, name, value)
            inc.stream = st
            st.incidents.append(inc)
            st.inc_by_id[inc.id] = inc
        for values, inc_seq in zip(
            state["alerts"], state["alert_incidents"], strict=True
        ):
            a = Alert()
            for name, value in zip(ALERT_STATE, values, strict=True):
                setattr(a, name, value)
            a.stream = st
            a.incident = st.incidents[inc_seq]
            a.incident.alerts.append(a)
            st.alerts.append(a)
            st.created_lists[a.source].append(a)
            st.by_id[a.id] = a
            st.by_id[a.provider_id] = a
        open_seq = state["open_incident"]
        st.open_incident = None if open_seq is None else st.incidents[open_seq]
        st._rebuild_indexes()
        return st

    # -- queries -------------------------------------------------------------------
    def iter_index(
        self,
        keys: SortedKeys,
        items: list,
        lo: int | None = None,
        lo_incl: bool = True,
        hi: int | None = None,
        hi_incl: bool = True,
        newest_first: bool = False,
    ) -> Iterator:
        start, end = keys.bounds(lo, lo_incl, hi, hi_incl)
        k = keys.keys
        rng = range(end - 1, start - 1, -1) if newest_first else range(start, end)
        for i in rng:
            yield items[k[i] & SEQ_MASK]

    def count_range(
        self, keys: SortedKeys, lo=None, lo_incl=True, hi=None, hi_incl=True
    ) -> int:
        start, end = keys.bounds(lo, lo_incl, hi, hi_incl)
        return end - start

    def slice_range(
        self,
        keys: SortedKeys,
        items: list,
        skip: int,
        top: int,
        lo=None,
        lo_incl=True,
        hi=None,
        hi_incl=True,
        newest_first=False,
    ) -> list:
        """O(log n + top): a page of a range with no residual filter."""
        start, end = keys.bounds(lo, lo_incl, hi, hi_incl)
        k = keys.keys
        if newest_first:
            hi_i = end - skip
            lo_i = max(start, hi_i - top)
            return [items[k[i] & SEQ_MASK] for i in range(hi_i - 1, lo_i - 1, -1)]
        a = start + skip
        b = min(end, a + top)
        return [items[k[i] & SEQ_MASK] for i in range(a, b)]

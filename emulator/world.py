"""The emulator's world: tenants, partner app, staff, clock, streams, faults, quotas.

Standalone (no Django). One ``World`` object is shared by the identity side (tokens,
consent, controls) and the APIs side (Defender, Graph, Cloud Apps). All mutation goes
through ``World.lock`` (an ``RLock``).

Control functions (called by ``controls.py`` under ``/_emulator/``):

* ``World.set_fault_profile(tenant_id | None, profile_dict)`` -> the stored profile.
* ``World.add_alert(tenant_id, source, fields)`` -> the canonical alert id.
* ``World.ground_truth(tenant_id, source)`` -> ``{provider_id: lastUpdate ISO}``.
* ``World.stats()`` -> request / 429 counters per tenant and API.
* ``World.update_random_alerts(n)`` -> number of alerts updated.
* ``World.advance(seconds)`` moves the clock.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from emulator import streams
from emulator.encoding import RenderCache
from emulator.faults import Faults
from emulator.quotas import Quotas


@dataclass(frozen=True)
class Resource:
    """A protected API: token audience, first-party app id, app roles it defines."""

    key: str
    audience: str
    app_id: str
    roles: tuple[str, ...]


RESOURCES: dict[str, Resource] = {
    "mde": Resource(
        "mde",
        "https://api.securitycenter.microsoft.com",
        "fc780465-2017-40d4-a0c5-307022471b92",
        (
            "Alert.Read.All",
            "Alert.ReadWrite.All",
            "Machine.Read.All",
            "Machine.Isolate",
        ),
    ),
    "xdr": Resource(
        "xdr",
        "https://api.security.microsoft.com",
        "8ee8fdad-f234-4243-8f3b-15c294843740",
        ("Incident.Read.All", "Incident.ReadWrite.All", "AdvancedHunting.Read.All"),
    ),
    "graph": Resource(
        "graph",
        "https://graph.microsoft.com",
        "00000003-0000-0000-c000-000000000000",
        (
            "SecurityAlert.Read.All",
            "SecurityAlert.ReadWrite.All",
            "SecurityIncident.Read.All",
            "SecurityIncident.ReadWrite.All",
        ),
    ),
    "mcas": Resource(
        "mcas",
        "05a65629-4c1b-48c1-a78b-804c4abdd4af",
        "05a65629-4c1b-48c1-a78b-804c4abdd4af",
        (
            "Investigation.read",
            "Investigation.manage",
            "Discovery.read",
            "Discovery.manage",
            "Settings.read",
            "Settings.manage",
        ),
    ),
}

# Hosts some clients use for the same resources (older MDE host, Graph with slash).
_AUDIENCE_ALIASES = {
    "https://api.securitycenter.windows.com": "mde",
    "https://securitycenter.onmicrosoft.com/windowsatpservice": "mde",
    "https://graph.microsoft.com/": "graph",
    "https://api.security.microsoft.com/": "xdr",
    "https://api.securitycenter.microsoft.com/": "mde",
}


def resource_for(value: str | None) -> Resource | None:
    """The Resource named by an audience URI, an app id or a ``<x>/.default`` scope."""
    if not value:
        return None
    v = value.strip()
    for suffix in ("/.default", ".default"):
        if v.endswith(suffix):
            v = v[: -len(suffix)]
            break
    v_cmp = v.rstrip("/").lower()
    for res in RESOURCES.values():
        if v_cmp in (res.audience.lower(), res.app_id.lower()):
            return res
    key = _AUDIENCE_ALIASES.get(v) or _AUDIENCE_ALIASES.get(v_cmp)
    return RESOURCES[key] if key else None


@dataclass
class Tenant:
    """A customer (or the MSSP home) Entra tenant."""

    id: str
    name: str
    domain: str
    region: str = "us"
    mcas_portal_name: str = ""
    admins: dict[str, str] = field(default_factory=dict)
    consented: bool = False
    granted_roles: dict[str, set[str]] = field(default_factory=dict)
    licensed: set[str] = field(default_factory=lambda: set(RESOURCES))
    ca_blocked: bool = False
    sp_object_id: str = ""
    disabled: bool = False
    mcas_url: str = ""  # "<base_url>/mcas/<mcas_portal_name>", set by World


@dataclass
class Secret:
    value: str
    secret_id: str
    expires_at: float


@dataclass
class Certificate:
    pem: str
    sha1_thumbprint_hex: str
    sha256_thumbprint_b64url: str


@dataclass
class AppRegistration:
    """The MSSP's multi-tenant app registration."""

    client_id: str
    display_name: str
    secrets: list[Secret] = field(default_factory=list)
    certificates: list[Certificate] = field(default_factory=list)
    redirect_uris: list[str] = field(default_factory=list)
    required_roles: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class StaffUser:
    """A user of the MSSP home tenant."""

    upn: str
    password: str
    display_name: str
    oid: str


def _guid(rng_or_seed: Any, *parts: Any) -> str:
    """A deterministic GUID from a seed and name parts."""
    name = ":".join(str(p) for p in (rng_or_seed, *parts))
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "emulator:" + name))


DEFAULT_REQUIRED_ROLES: dict[str, list[str]] = {
    "mde": ["Alert.ReadWrite.All", "Machine.Read.All", "Machine.Isolate"],
    "xdr": ["Incident.ReadWrite.All", "AdvancedHunting.Read.All"],
    "graph": ["SecurityAlert.ReadWrite.All", "SecurityIncident.ReadWrite.All"],
    "mcas": ["Investigation.manage"],
}


class World:
    """Everything the emulator knows. Build one with ``World.create(...)``."""

    def __init__(
        self,
        *,
        seed: int = 0,
        base_url: str = "https://127.0.0.1:8443",
        start: float | None = None,
        backlog_per_tenant: int = 300,
        quota_multiplier: float = 1.0,
    ):
        self.seed = seed
        self.base_url = base_url.rstrip("/")
        self.lock = threading.RLock()
        # ``start`` pins the emulated "now" at creation (deterministic streams).
        self.clock_offset = 0.0 if start is None else start - time.time()
        self.frozen_at: float | None = None
        # Quotas count real seconds (a frozen World clock must not freeze them);
        # ``advance`` moves them along with the World clock.
        self.quota_offset = 0.0
        self.start_us = int((time.time() if start is None else start) * streams.US)
        self.backlog_per_tenant = backlog_per_tenant
        self.streams: dict[str, streams.TenantStream] = {}
        self.tenant_index: dict[str, int] = {}
        self.quotas = Quotas(multiplier=quota_multiplier)
        self.faults = Faults(seed)
        self.update_rng = random.Random(f"updates:{seed}")  # noqa: S311
        self.machine_actions: dict[str, dict] = {}
        # Alerts as list pages served them (encoded), reused until an alert changes;
        # at most 64 MiB (~25,000 MDE alerts with evidence) however many tenants.
        self.rendered = RenderCache(max_bytes=64 * 1024 * 1024)
        self.counters: dict[tuple[str, str], Counter] = {}
        # API behaviour switches (see emulator.apis); tests and benchmarks flip them.
        self.api_options: dict[str, Any] = {
            "mde_top_over_limit": "error",  # "error" (400 ODataError) | "clamp"
            "mde_next_link": "without_top",  # "never" | "without_top" | "always"
            "xdr_top_over_limit": "clamp",  # "error" | "clamp"
            "graph_max_skip": 500,  # $skip above this -> 400 (None: no limit)
            "graph_alerts_max_top": 2000,
            "graph_alerts_default_top": 100,
            "graph_incidents_max_top": 50,
            "mcas_max_limit": 100,
        }
        self.app: AppRegistration | None = None
        self.home_tenant: Tenant | None = None
        self.staff: list[StaffUser] = []
        self.tenants: dict[str, Tenant] = {}
        self.control_token = _guid(seed, "control-token")
        self.request_log: deque[dict] = deque(maxlen=10_000)
        self.alerts_per_minute = 0.0

    # -- clock ---------------------------------------------------------------------
    def now(self) -> float:
        """Emulated epoch seconds: real time plus the controllable offset."""
        if self.frozen_at is not None:
            return self.frozen_at + self.clock_offset
        return time.time() + self.clock_offset

    def now_us(self) -> int:
        return int(self.now() * streams.US)

    def freeze_clock(self, frozen: bool = True, at: float | None = None) -> float:
        """Stop (or restart) the clock at the current emulated time (or ``at``);
        ``advance`` still moves it. Returns ``now()``."""
        with self.lock:
            current = self.now() if at is None else at
            if frozen:
                self.frozen_at, self.clock_offset = current, 0.0
            else:
                self.frozen_at, self.clock_offset = None, current - time.time()
        return self.now()

    def advance(self, seconds: float) -> float:
        """Move the clock forward (or back) and return the new ``now()``."""
        with self.lock:
            self.clock_offset += float(seconds)
            self.quota_offset += float(seconds)
        return self.now()

    def quota_now(self) -> float:
        """The time quotas are counted in: real time (even while the World clock
        is frozen) plus every ``advance``."""
        return time.time() + self.quota_offset

    # -- lookups -------------------------------------------------------------------
    def tenant_by_name_or_id(self, value: str | None) -> Tenant | None:
        """Tenant by GUID, verified domain or name (case-insensitive)."""
        if not value:
            return None
        v = value.lower()
        t = self.tenants.get(v)
        if t:
            return t
        for t in self._all_tenants():
            if v in (t.id.lower(), t.domain.lower(), t.name.lower()):
                return t
        return None

    def _all_tenants(self):
        if self.home_tenant is not None:
            yield self.home_tenant
        yield from self.tenants.values()

    # -- construction --------------------------------------------------------------
    @classmethod
    def create(
        cls,
        seed: int = 0,
        tenants: int = 5,
        alerts_per_minute: float = 1.0,
        base_url: str = "https://127.0.0.1:8443",
        *,
        start: float | None = None,
        backlog_per_tenant: int = 300,
        quota_multiplier: float = 1.0,
        **kwargs: Any,
    ) -> World:
        """A deterministic default world with ``tenants`` consented customers.

        ``alerts_per_minute`` is per tenant; each tenant starts with
        ``backlog_per_tenant`` alerts spread over the 30 days before ``start``
        (default: now). Streams are generated when a tenant is first queried.
        """
        w = cls(
            seed=seed,
            base_url=base_url,
            start=start,
            backlog_per_tenant=backlog_per_tenant,
            quota_multiplier=quota_multiplier,
        )
        w.alerts_per_minute = alerts_per_minute
        w.app = AppRegistration(
            client_id=_guid(seed, "app"),
            display_name="MSSP Partner Portal",
            secrets=[
                Secret(
                    value="emulator-secret-" + _guid(seed, "secret")[:8],
                    secret_id=_guid(seed, "secret-id"),
                    expires_at=time.time() + 365 * 86400,
                )
            ],
            redirect_uris=[
                "http://localhost:8000/consent/callback/",
                "https://localhost:8000/consent/callback/",
            ],
            required_roles={k: list(v) for k, v in DEFAULT_REQUIRED_ROLES.items()},
        )
        w.home_tenant = Tenant(
            id=_guid(seed, "home"),
            name="MSSP Home",
            domain="mssp.example",
            consented=True,
            sp_object_id=_guid(seed, "home", "sp"),
        )
        w.staff = [
            StaffUser(
                upn=f"analyst{i}@mssp.example",
                password=f"analyst{i}-password",
                display_name=f"Analyst {i}",
                oid=_guid(seed, "staff", i),
            )
            for i in range(1, 4)
        ]
        regions = ["us", "eu", "uk", "au", "us", "eu"]
        for i in range(1, tenants + 1):
            tid = _guid(seed, "tenant", i)
            w.tenants[tid] = Tenant(
                id=tid,
                name=f"Contoso {i}",
                domain=f"contoso-{i}.example",
                region=regions[(i - 1) % len(regions)],
                mcas_portal_name=f"contoso{i}",
                admins={f"admin@contoso-{i}.example": f"admin{i}-password"},
                consented=True,
                granted_roles={k: set(v) for k, v in DEFAULT_REQUIRED_ROLES.items()},
                sp_object_id=_guid(seed, "tenant", i, "sp"),
                mcas_url=f"{w.base_url}/mcas/contoso{i}",
            )
        return w

    # -- alert / incident streams ----------------------------------------------------
    def stream(self, tenant_id: str) -> streams.TenantStream:
        """The tenant's stream, built on first use and caught up to ``now()``.

        Callers hold ``self.lock`` while they use the result.
        """
        with self.lock:
            st = self.streams.get(tenant_id)
            if st is None:
                tenant = self.tenants.get(tenant_id)
                if tenant is None:
                    raise KeyError(f"unknown tenant {tenant_id}")
                index = self.tenant_index.get(tenant_id)
                if index is None:
                    index = self._index_of(tenant_id)
                st = streams.TenantStream(self, tenant, index)
                self.streams[tenant_id] = st
            st.catch_up(self.now_us())
            return st

    def _index_of(self, tenant_id: str) -> int:
        for i, tid in enumerate(self.tenants):
            self.tenant_index.setdefault(tid, i)
        return self.tenant_index.setdefault(tenant_id, len(self.tenant_index))

    # -- control functions (exposed by controls.py under /_emulator/) ------------------
    def set_fault_profile(
        self, tenant_id: str | None, profile: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """Install (or clear with None/{}) a fault profile for one tenant or, with
        ``tenant_id=None``, for every tenant. See ``emulator.faults`` for the keys.
        Returns the stored profile as a dict. Raises ValueError on bad input."""
        with self.lock:
            stored = self.faults.set_profile(tenant_id, profile)
            return stored.to_dict() if stored else None

    def add_alert(
        self, tenant_id: str, source: str = "mde", fields: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Add one alert now. ``source``: "mde" (MDE, Graph, XDR), "mcas" (Cloud
        Apps, Graph, XDR) or "mdo" (Graph, XDR). ``fields`` override the generated
        ones: title, description, severity (Informational/Low/Medium/High), status
        (New/InProgress/Resolved), assignedTo, classification, determination,
        category, detectionSource, threatFamilyName, mitreTechniques, comments,
        incidentId (attach to an existing incident), entities (overrides of the
        evidence's user, display, upn, netbios, host, file, file_path, url, cmd, ip,
        app, ...) and evidenceKinds (e.g. ["Process", "User", "File", "Url"]). Text
        is stored verbatim (hostile input welcome). Returns ``{"id",
        "providerAlertId", "incidentId", "lastUpdateTime"}``."""
        with self.lock:
            st = self.stream(tenant_id)
            alert = st.add_alert(source, fields or {}, self.now_us())
            return {
                "id": alert.id,
                "providerAlertId": alert.provider_id,
                "incidentId": alert.incident.id,
                "lastUpdateTime": streams.fmt_time(alert.last_update, trim=True),
            }

    def ground_truth(self, tenant_id: str, source: str) -> dict[str, str]:
        """Latest version of every record, as the APIs render ``lastUpdateTime``.

        ``source``: "mde" (MDE alert ids), "graph" (all alerts, Graph ids), "mcas"
        (Cloud Apps ``_id``), "mdo", "xdr" or "incidents" (incident ids as strings).
        """
        with self.lock:
            st = self.stream(tenant_id)
            fmt = streams.fmt_time
            if source in ("xdr", "incidents", "graph_incidents"):
                return {str(i.id): fmt(i.last_update, trim=True) for i in st.incidents}
            if source in ("graph", "alerts"):
                return {a.id: fmt(a.last_update, trim=True) for a in st.alerts}
            if source in streams.SOURCES:
                return {
                    a.provider_id: fmt(a.last_update, trim=True)
                    for a in st.alerts
                    if a.source == source
                }
            raise ValueError(f"unknown source {source!r}")

    def render_ahead(self, max_mb: int) -> dict[str, int]:
        """Renders every Defender for Endpoint alert, as list pages serve it (with
        evidence), into the render cache, whose bound becomes ``max_mb``: a backlog
        served from stored documents, as Microsoft's servers serve theirs. For
        benchmarks, where the emulator shares the machine with what is measured;
        an alert that changes afterwards is rendered again when served."""
        from emulator.apis.mde import render_alert

        if not 1 <= int(max_mb) <= 16384:
            raise ValueError("max_mb must be between 1 and 16384")
        with self.lock:
            self.rendered.max_bytes = int(max_mb) * 1024 * 1024
            count = 0
            for tenant_id in list(self.tenants):
                for alert in self.stream(tenant_id).alerts:
                    if alert.source == "mde":
                        self.rendered.fetch(alert, render_alert, True)
                        count += 1
            return {"alerts": count, "bytes": self.rendered.size}

    def update_random_alerts(self, n: int, tenant_id: str | None = None) -> int:
        """Move ``n`` random alerts one step along New -> InProgress -> Resolved (or
        add a comment), now, in already-generated streams (or ``tenant_id``'s).
        Returns how many were updated."""
        with self.lock:
            if tenant_id is not None:
                candidates = [self.stream(tenant_id)]
            else:
                candidates = [self.stream(tid) for tid in list(self.streams)]
                if not candidates and self.tenants:
                    candidates = [self.stream(next(iter(self.tenants)))]
            if not candidates:
                return 0
            now = self.now_us()
            done = 0
            for _ in range(n):
                st = candidates[self.update_rng.randrange(len(candidates))]
                if st.bump_random(self.update_rng, now) is not None:
                    done += 1
            return done

    def count(self, tenant_id: str | None, api: str, what: str, n: int = 1) -> None:
        """Bump a statistics counter (requests, status codes, 429s)."""
        with self.lock:
            self.counters.setdefault((tenant_id or "-", api), Counter())[what] += n

    def stats(self) -> dict[str, Any]:
        """Request statistics: totals plus per tenant per API, e.g.
        ``{"requests": 10, "throttled_provoked": 2, "throttled_injected": 1,
        "faults_injected": 3, "by_tenant": {tid: {"mde": {"requests": 5,
        "status_200": 4, "throttled_provoked": 1, ...}}}}``.
        ``throttled_provoked`` = 429s from quotas (the client's doing);
        ``throttled_injected`` = 429s from fault profiles."""
        with self.lock:
            total: Counter = Counter()
            by_tenant: dict[str, dict[str, dict[str, int]]] = {}
            for (tid, api), counter in self.counters.items():
                total.update(counter)
                by_tenant.setdefault(tid, {})[api] = dict(counter)
            return {
                "requests": total["requests"],
                "throttled_provoked": total["throttled_provoked"],
                "throttled_injected": total["throttled_injected"],
                "faults_injected": total["faults_injected"],
                "by_tenant": by_tenant,
            }

    def reset_stats(self) -> None:
        with self.lock:
            self.counters.clear()

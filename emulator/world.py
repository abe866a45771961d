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

import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any


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
        ("Investigation.read", "Investigation.manage"),
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

    def __init__(self, *, seed: int = 0, base_url: str = "https://127.0.0.1:8443"):
        self.seed = seed
        self.base_url = base_url.rstrip("/")
        self.lock = threading.RLock()
        self.clock_offset = 0.0
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
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> float:
        """Move the clock forward (or back) and return the new ``now()``."""
        with self.lock:
            self.clock_offset += float(seconds)
        return self.now()

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
        **kwargs: Any,
    ) -> World:
        """A deterministic default world with ``tenants`` consented customers."""
        w = cls(seed=seed, base_url=base_url)
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

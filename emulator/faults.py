"""Injected faults: per-tenant or global profiles with seeded randomness.

A profile (``World.set_fault_profile(tenant_id | None, profile)``) is a dict::

    {
      "rates": {"429": 0.1, "500": 0.02, "503": 0.0, "504": 0.0, "timeout": 0.0,
                "reset": 0.0, "truncated": 0.0, "malformed": 0.0},
      "latency_ms": 0,          # added to every call
      "timeout_seconds": 35,    # how long a "timeout" call sleeps before its 504
      "retry_after": 2,         # Retry-After of injected 429/503
      "apis": ["mde", "graph"], # optional: only these APIs (mde xdr hunting graph mcas)
      "script": [{"kind": "503", "count": 2}],  # the next N calls fail with kind
    }

Kinds: any HTTP status as a string ("401", "403", "404", "429", "500", "503", "504"),
"timeout", "reset" (connection dropped mid-body), "truncated" (partial body, full
Content-Length) and "malformed" (200 with invalid JSON). A tenant profile wins over the
global one. An empty dict or None clears.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

KINDS = ("429", "500", "503", "504", "timeout", "reset", "truncated", "malformed")
BODY_KINDS = ("reset", "truncated", "malformed")


@dataclass
class FaultProfile:
    rates: dict[str, float] = field(default_factory=dict)
    latency_ms: float = 0.0
    timeout_seconds: float = 35.0
    retry_after: int = 2
    apis: set[str] | None = None
    script: list[list] = field(default_factory=list)  # [[kind, remaining], ...]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultProfile:
        rates = {}
        for kind, rate in (data.get("rates") or {}).items():
            kind = str(kind)
            if not (kind in KINDS or (kind.isdigit() and len(kind) == 3)):
                raise ValueError(f"unknown fault kind {kind!r}")
            rate = float(rate)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"rate for {kind} must be within 0..1")
            rates[kind] = rate
        script = []
        for step in data.get("script") or []:
            kind = str(step["kind"])
            if not (kind in KINDS or (kind.isdigit() and len(kind) == 3)):
                raise ValueError(f"unknown fault kind {kind!r}")
            script.append([kind, int(step.get("count", 1))])
        apis = data.get("apis")
        return cls(
            rates=rates,
            latency_ms=float(data.get("latency_ms", 0) or 0),
            timeout_seconds=float(data.get("timeout_seconds", 35)),
            retry_after=int(data.get("retry_after", 2)),
            apis=set(apis) if apis else None,
            script=script,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rates": dict(self.rates),
            "latency_ms": self.latency_ms,
            "timeout_seconds": self.timeout_seconds,
            "retry_after": self.retry_after,
            "apis": sorted(self.apis) if self.apis else None,
            "script": [{"kind": k, "count": n} for k, n in self.script],
        }


class Faults:
    """Holds profiles; ``pick(tenant_id, api)`` -> (kind | None, profile | None)."""

    def __init__(self, seed: int = 0):
        self.rng = random.Random(f"faults:{seed}")  # noqa: S311
        self.global_profile: FaultProfile | None = None
        self.tenant_profiles: dict[str, FaultProfile] = {}

    def set_profile(
        self, tenant_id: str | None, data: dict[str, Any] | None
    ) -> FaultProfile | None:
        profile = FaultProfile.from_dict(data) if data else None
        if tenant_id is None:
            self.global_profile = profile
        elif profile is None:
            self.tenant_profiles.pop(tenant_id, None)
        else:
            self.tenant_profiles[tenant_id] = profile
        return profile

    def profile_for(self, tenant_id: str | None) -> FaultProfile | None:
        if tenant_id and tenant_id in self.tenant_profiles:
            return self.tenant_profiles[tenant_id]
        return self.global_profile

    def pick(
        self, tenant_id: str | None, api: str
    ) -> tuple[str | None, FaultProfile | None]:
        profile = self.profile_for(tenant_id)
        if profile is None or (profile.apis and api not in profile.apis):
            return None, profile
        if profile.script:
            step = profile.script[0]
            step[1] -= 1
            if step[1] <= 0:
                profile.script.pop(0)
            return step[0], profile
        for kind, rate in profile.rates.items():
            if rate and self.rng.random() < rate:
                return kind, profile
        return None, profile

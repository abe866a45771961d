"""Sliding-window request quotas per (API, tenant, app), as the real services throttle.

Limits (calls per window): MDE 100/min + 1,500/h; XDR incidents 50/min + 1,500/h;
advanced hunting 45/min + 1,500/h; Graph security 150/min; Cloud Apps 30/min per tenant.
``multiplier`` scales every limit (benchmarks); ``enabled=False`` switches them off.
Windows run on the world clock, so ``World.advance`` frees slots.
"""

from __future__ import annotations

import math
from collections import deque

LIMITS: dict[str, tuple[tuple[int, int], ...]] = {
    # api: ((window_seconds, max_calls), ...)
    "mde": ((60, 100), (3600, 1500)),
    "xdr": ((60, 50), (3600, 1500)),
    "hunting": ((60, 45), (3600, 1500)),
    "graph": ((60, 150),),
    "mcas": ((60, 30),),
}
PER_TENANT_ONLY = {"mcas"}  # Cloud Apps counts per tenant, whatever the app


class Quotas:
    """Call ``check(api, tenant_id, app_id, now)``: None (allowed, counted) or the
    integer seconds until a slot frees (the caller answers 429 + Retry-After)."""

    def __init__(self, multiplier: float = 1.0, enabled: bool = True):
        self.multiplier = multiplier
        self.enabled = enabled
        self.windows: dict[tuple, deque[float]] = {}

    def limits(self, api: str) -> list[tuple[int, int]]:
        return [
            (window, max(1, int(count * self.multiplier)))
            for window, count in LIMITS.get(api, ())
        ]

    def check(self, api: str, tenant_id: str, app_id: str, now: float) -> int | None:
        if not self.enabled:
            return None
        if api in PER_TENANT_ONLY:
            app_id = "*"
        wait = 0.0
        queues = []
        for window, limit in self.limits(api):
            q = self.windows.setdefault((api, tenant_id, app_id, window), deque())
            cutoff = now - window
            while q and q[0] <= cutoff:
                q.popleft()
            if len(q) >= limit:
                # the slot frees when the call that is ``limit`` back leaves the window
                wait = max(wait, q[len(q) - limit] + window - now)
            queues.append(q)
        if wait > 0:
            return max(1, math.ceil(wait))
        for q in queues:
            q.append(now)
        return None

    def reset(self) -> None:
        self.windows.clear()

"""Client-side quotas: Microsoft's documented call limits per app per customer tenant,
kept in Redis sliding windows shared by every worker and web process, so the portal
throttles itself before Microsoft does and one customer's backlog never slows
another's.

Every call the portal makes to a tenant's API takes one from the same windows: the
sync (``sync.runner``), verification's probes (``tenants.services``) and triage's
re-reads and PATCHes (``alerts.triage``). The windows are the caller's to give (the
source registry holds them: ``Source.api.quotas``), so this module knows no source.
"""

import hashlib
import time
import uuid
from collections.abc import Iterable
from typing import Any

from django.conf import settings

from core.redis import get_redis

#: Our windows are this much longer than Microsoft's: a call reserved now reaches
#: Microsoft a little later, and must still fall outside its window then.
QUOTA_MARGIN_SECONDS = 2

_QUOTA_SCRIPT = """
local now = tonumber(ARGV[1])
local member = ARGV[2]
local wait = 0
for i, key in ipairs(KEYS) do
    local window = tonumber(ARGV[1 + i * 2])
    local limit = tonumber(ARGV[2 + i * 2])
    redis.call('zremrangebyscore', key, '-inf', now - window)
    local used = redis.call('zcard', key)
    if used >= limit then
        local first = used - limit
        local oldest = redis.call('zrange', key, first, first, 'WITHSCORES')
        local free_at = tonumber(oldest[2]) + window
        if free_at - now > wait then wait = free_at - now end
    end
end
if wait > 0 then return tostring(wait) end
for i, key in ipairs(KEYS) do
    local window = tonumber(ARGV[1 + i * 2])
    redis.call('zadd', key, now, member)
    redis.call('pexpire', key, math.ceil(window * 1000))
end
return '0'
"""


class QuotaExhausted(Exception):
    """The tenant's quota for an API is used up for ``retry_after`` seconds; nothing
    was sent to Microsoft. ``message`` says so in words staff can act on."""

    def __init__(self, retry_after: float, message: str) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.message = message


def window_keys(
    tenant_id: str, api: str, windows: Iterable[tuple[int, int]]
) -> list[str]:
    """The Redis keys of a (tenant, API)'s windows. Quotas are per app per tenant:
    the app is (sign-in host, client id). (The ``sync:`` prefix is kept from when
    only the sync counted, so windows already open carry on.)"""
    app = hashlib.sha256(
        f"{settings.MS_LOGIN_URL}|{settings.MS_CLIENT_ID}".encode()
    ).hexdigest()[:12]
    return [f"sync:quota:{app}:{api}:{tenant_id}:{seconds}" for seconds, _ in windows]


def reserve_api_call(
    tenant_id: str, api: str, windows: Iterable[tuple[int, int]]
) -> float:
    """Takes one call from the (tenant, API) quota: 0 when allowed, else the seconds
    until a slot frees (nothing taken). ``windows`` are (seconds, calls) pairs."""
    windows = tuple(windows)
    keys = window_keys(tenant_id, api, windows)
    args: list[Any] = [f"{time.time():.6f}", uuid.uuid4().hex]
    for seconds, calls in windows:
        args += [seconds + QUOTA_MARGIN_SECONDS, calls]
    return float(get_redis().eval(_QUOTA_SCRIPT, len(keys), *keys, *args))


def take_api_call(
    tenant_id: str,
    api: str,
    windows: Iterable[tuple[int, int]],
    *,
    max_wait: float,
    label: str,
) -> None:
    """Takes one call, waiting at most ``max_wait`` seconds in all for a slot; raises
    ``QuotaExhausted`` (nothing taken) when the quota frees later than that. For
    callers a person waits on (verification, triage), unlike the sync, which stops
    its run and leaves the rest to the next one."""
    windows = tuple(windows)
    deadline = time.monotonic() + max_wait
    while True:
        wait = reserve_api_call(tenant_id, api, windows)
        if wait <= 0:
            return
        if time.monotonic() + wait > deadline:
            limits = " and ".join(
                f"{calls} per {seconds} s" for seconds, calls in windows
            )
            raise QuotaExhausted(
                wait,
                f"The portal has used this tenant's allowance of calls to {label} "
                f"({limits}, Microsoft's documented limit) and makes no more for "
                f"{wait:.0f} s. Nothing was sent; try again after that (syncs of a "
                "large backlog use most of it).",
            )
        time.sleep(wait)

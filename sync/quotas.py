"""Client-side quotas: Microsoft's documented call limits per app per customer tenant,
kept in Redis sliding windows shared by every worker, so the portal throttles itself
before Microsoft does and one customer's backlog never slows another's.

The limits are those of each source's API in the source registry
(``tenants.microsoft.sources``: ``Source.api.quotas``); sources of one API (Graph
alerts and incidents) share its windows."""

import hashlib
import time
import uuid
from typing import Any

from django.conf import settings

from core.redis import get_redis
from tenants.microsoft import sources

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


def reserve_api_call(tenant_id: str, source: str) -> float:
    """Takes one call from the (tenant, API) quota: 0 when allowed, else the seconds
    until a slot frees (nothing taken). Sliding windows in Redis, shared by every
    worker, at Microsoft's documented limits."""
    api = sources.get(source).api
    windows = api.quotas
    # Quotas are per app per tenant: the app is (sign-in host, client id).
    app = hashlib.sha256(
        f"{settings.MS_LOGIN_URL}|{settings.MS_CLIENT_ID}".encode()
    ).hexdigest()[:12]
    keys = [
        f"sync:quota:{app}:{api.name}:{tenant_id}:{seconds}" for seconds, _ in windows
    ]
    args: list[Any] = [f"{time.time():.6f}", uuid.uuid4().hex]
    for seconds, calls in windows:
        args += [seconds + QUOTA_MARGIN_SECONDS, calls]
    client = get_redis()
    wait = float(client.eval(_QUOTA_SCRIPT, len(keys), *keys, *args))
    return wait

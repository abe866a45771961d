"""One Redis client per process for the portal's own keys (quotas, lockout, health).

A client is safe to share between threads (each command takes a connection from its
pool); building one per call costs a table of reply handlers each time.
"""

import redis
from django.conf import settings

_clients: dict[tuple, redis.Redis] = {}


def get_redis(*, timeout: float | None = None) -> redis.Redis:
    """The process's client for `REDIS_URL`; `timeout` (seconds) bounds connecting
    and each reply, for callers that must answer even when Redis is away."""
    key = (settings.REDIS_URL, timeout)
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=timeout, socket_timeout=timeout
        )
    return client

"""Values shared for a few seconds by the requests that would compute the same thing.

The queue polls every 15 s per open tab; its counts, menus, alarms and stale tenants
are computed once per scope and kept in the cache for `SHARED_SECONDS`. Keys carry the
database's name, so two databases on one Redis (a test run, a demo) never mix.
"""

import contextlib
import hashlib
from collections.abc import Callable
from typing import Any

from django.core.cache import cache
from django.db import connection
from redis import RedisError

#: How long a shared value is served before it is computed again (pages say so).
SHARED_SECONDS = 10


def get_shared(kind: str, names: tuple, compute: Callable[[], Any]) -> Any:
    """`compute()`, shared for SHARED_SECONDS through the cache by the requests
    whose `names` (all that the result depends on) are equal; computed afresh when
    Redis is away: the page does not need it."""
    key = _key(kind, names)
    try:
        found = cache.get(key)
    except RedisError:
        found = None
    if found is None:
        found = compute()
        with contextlib.suppress(RedisError):
            cache.set(key, found, SHARED_SECONDS)
    return found


def forget_shared(kind: str, names: tuple) -> None:
    """Drops a shared value, so the next request computes it afresh."""
    with contextlib.suppress(RedisError):
        cache.delete(_key(kind, names))


def _key(kind: str, names: tuple) -> str:
    return (
        f"shared:{kind}:"
        + hashlib.sha256(
            repr((connection.settings_dict["NAME"], *names)).encode()
        ).hexdigest()
    )

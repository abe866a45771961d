"""Health of the parts the portal needs: Postgres, Redis, workers, beat.

Each probe is bounded in time, so /healthz answers within a few seconds even when a
part hangs.
"""

import contextlib
import time
from typing import Any

from django.db import connection

from core import services, tasks
from core.redis import get_redis

CANARY_TIMEOUT_SECONDS = 5.0


def check_postgres() -> dict[str, Any]:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return {
            "status": "down",
            "error": f"PostgreSQL is unreachable: {_first_line(exc)}",
        }
    return {"status": "ok", "latency_ms": _ms_since(started)}


def check_redis() -> dict[str, Any]:
    started = time.perf_counter()
    try:
        get_redis(timeout=2).ping()
    except Exception as exc:
        return {"status": "down", "error": f"Redis is unreachable: {_first_line(exc)}"}
    return {"status": "ok", "latency_ms": _ms_since(started)}


def check_workers() -> dict[str, Any]:
    """A canary task's round trip through the real broker and a worker."""
    started = time.perf_counter()
    try:
        result = tasks.canary.apply_async(
            args=[time.time()],
            expires=CANARY_TIMEOUT_SECONDS,
            retry=False,
        )
        result.get(timeout=CANARY_TIMEOUT_SECONDS, propagate=True)
    except Exception as exc:
        return {
            "status": "down",
            "error": (
                f"No Celery worker answered within {CANARY_TIMEOUT_SECONDS:.0f} s "
                f"({type(exc).__name__}). Start one: celery -A partnerportal worker"
            ),
        }
    finally:
        with contextlib.suppress(Exception):  # the result may never have been stored
            result.forget()
    return {"status": "ok", "latency_ms": _ms_since(started)}


def check_beat() -> dict[str, Any]:
    try:
        raw = get_redis(timeout=2).get(services.BEAT_HEARTBEAT_KEY)
    except Exception as exc:
        return {"status": "down", "error": f"Redis is unreachable: {_first_line(exc)}"}
    if raw is None:
        return {
            "status": "down",
            "error": "No heartbeat from the scheduler yet: is celery beat running?",
        }
    age = time.time() - float(raw)
    if age > services.BEAT_STALE_SECONDS:
        return {
            "status": "down",
            "error": f"The scheduler's last heartbeat was {age:.0f} s ago.",
        }
    return {"status": "ok", "age_seconds": round(age, 1)}


def overall() -> tuple[bool, dict[str, Any]]:
    """Every part's state; healthy only when Postgres, Redis and a worker answer.

    The scheduler is reported but does not fail the check: a lost beat delays syncs,
    it does not stop the portal serving.
    """
    parts = {"postgres": check_postgres(), "redis": check_redis()}
    if parts["redis"]["status"] == "ok":
        parts["workers"] = check_workers()
        parts["beat"] = check_beat()
    else:
        reason = "not checked: Redis (the broker) is down"
        parts["workers"] = {"status": "down", "error": reason}
        parts["beat"] = {"status": "down", "error": reason}
    healthy = all(
        parts[name]["status"] == "ok" for name in ("postgres", "redis", "workers")
    )
    return healthy, parts


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

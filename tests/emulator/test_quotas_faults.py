"""Quotas (429 + Retry-After at the documented counts) and injected faults."""

import pytest

from emulator.quotas import Quotas
from tests.emulator.api_helpers import call, first_tenant, make_world, token


def hammer(world, path, tok, n, method="GET", body=None):
    return [call(world, method, path, tok, {"$top": "1"}, body=body) for _ in range(n)]


@pytest.mark.parametrize(
    ("api", "path", "limit"),
    [
        ("mde", "/defender/api/alerts", 100),
        ("xdr", "/defender/api/incidents", 50),
        ("graph", "/graph/v1.0/security/alerts_v2", 150),
    ],
)
def test_per_minute_quota_answers_429_with_retry_after(api, path, limit):
    world = make_world()
    tenant = first_tenant(world)
    tok = token(world, tenant, api)
    replies = hammer(world, path, tok, limit + 1)
    assert all(r.status == 200 for r in replies[:limit])
    last = replies[-1]
    assert last.status == 429
    assert int(last.headers["Retry-After"]) >= 1
    assert last.json()["error"]["code"] == "TooManyRequests"
    world.advance(61)
    assert call(world, "GET", path, tok, {"$top": "1"}).status == 200
    stats = world.stats()
    assert stats["throttled_provoked"] == 1 and stats["throttled_injected"] == 0
    assert stats["by_tenant"][tenant.id][api]["throttled_provoked"] == 1


def test_mcas_quota_is_30_per_minute_and_hunting_45():
    world = make_world()
    tenant = first_tenant(world)
    base = f"/mcas/{tenant.mcas_portal_name}/api/v1/alerts/"
    replies = hammer(world, base, token(world, tenant, "mcas"), 31)
    assert replies[29].status == 200 and replies[30].status == 429
    assert "throttled" in replies[30].json()["detail"]
    hunt = hammer(
        world, "/defender/api/advancedhunting/run", token(world, tenant, "xdr"), 46,
        method="POST", body={"Query": "x"},
    )  # fmt: skip
    assert hunt[44].status == 200 and hunt[45].status == 429


def test_hourly_quota_and_retry_after_counts_down():
    q = Quotas()
    now = 1000.0
    for i in range(100):
        assert q.check("mde", "t", "a", now + i * 0.1) is None
    assert q.check("mde", "t", "a", now + 10) == 50
    assert q.check("mde", "t", "a", now + 59.95) == 1
    assert q.check("mde", "t", "a", now + 60.01) is None
    q = Quotas()
    for i in range(1500):  # one a second: the minute window never fills
        assert q.check("mde", "t", "a", now + i) is None
    assert q.check("mde", "t", "a", now + 1500) == 2100


def test_quotas_are_per_tenant_and_app_and_scalable():
    q = Quotas(multiplier=0.1)
    for _ in range(15):
        assert q.check("graph", "t1", "a", 0) is None
    assert q.check("graph", "t1", "a", 0) is not None
    assert q.check("graph", "t2", "a", 0) is None
    assert q.check("graph", "t1", "b", 0) is None
    assert Quotas(enabled=False).check("mcas", "t", "a", 0) is None


def test_fault_rates_inject_errors_and_count_injected_429s():
    world = make_world()
    tenant = first_tenant(world)
    tok = token(world, tenant, "mde")
    world.set_fault_profile(tenant.id, {"rates": {"429": 0.5}, "retry_after": 7})
    replies = hammer(world, "/defender/api/alerts", tok, 60)
    throttled = [r for r in replies if r.status == 429]
    assert 15 <= len(throttled) <= 45
    assert all(r.headers["Retry-After"] == "7" for r in throttled)
    stats = world.stats()
    assert stats["throttled_injected"] == len(throttled)
    assert stats["throttled_provoked"] == 0
    # other tenants are untouched
    other = list(world.tenants.values())[1]
    reply = call(world, "GET", "/defender/api/alerts", token(world, other, "mde"))
    assert reply.status == 200
    world.set_fault_profile(tenant.id, None)
    assert all(r.status == 200 for r in hammer(world, "/defender/api/alerts", tok, 5))


def test_scripted_next_n_calls_fail_then_recover():
    world = make_world()
    tenant = first_tenant(world)
    tok = token(world, tenant, "graph")
    world.set_fault_profile(
        None, {"script": [{"kind": "503", "count": 2}, {"kind": "500", "count": 1}]}
    )
    statuses = [
        r.status for r in hammer(world, "/graph/v1.0/security/alerts_v2", tok, 4)
    ]
    assert statuses == [503, 503, 500, 200]
    err = call(world, "GET", "/graph/v1.0/security/alerts_v2", tok)
    assert err.status == 200


def test_body_faults_reset_truncate_and_malform():
    world = make_world()
    tenant = first_tenant(world)
    tok = token(world, tenant, "mde")
    world.set_fault_profile(tenant.id, {"script": [{"kind": "malformed", "count": 1}]})
    bad = call(world, "GET", "/defender/api/alerts", tok)
    with pytest.raises(ValueError):
        bad.json()
    world.set_fault_profile(tenant.id, {"script": [{"kind": "truncated", "count": 1}]})
    cut = call(world, "GET", "/defender/api/alerts", tok)
    assert len(cut.text.encode()) < int(cut.headers["Content-Length"])
    assert cut.headers["Connection"] == "close"
    world.set_fault_profile(tenant.id, {"script": [{"kind": "reset", "count": 1}]})
    with pytest.raises(ConnectionResetError):
        call(world, "GET", "/defender/api/alerts", tok)


def test_timeout_and_latency_and_api_selection():
    import time

    world = make_world()
    tenant = first_tenant(world)
    world.set_fault_profile(
        tenant.id,
        {"rates": {"timeout": 1.0}, "timeout_seconds": 0.05, "apis": ["graph"],
         "latency_ms": 20},
    )  # fmt: skip
    started = time.perf_counter()
    reply = call(
        world, "GET", "/graph/v1.0/security/alerts_v2", token(world, tenant, "graph")
    )
    assert reply.status == 504 and time.perf_counter() - started >= 0.07
    ok = call(world, "GET", "/defender/api/alerts", token(world, tenant, "mde"))
    assert ok.status == 200


def test_bad_fault_profile_is_rejected():
    world = make_world()
    with pytest.raises(ValueError):
        world.set_fault_profile(None, {"rates": {"429": 2}})
    with pytest.raises(ValueError):
        world.set_fault_profile(None, {"rates": {"explode": 0.1}})

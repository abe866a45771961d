"""World: records, clock, deterministic lazy streams, updates, controls."""

import time

from emulator import streams
from emulator.world import RESOURCES, World, resource_for
from tests.emulator.api_helpers import START, first_tenant, make_world


def test_resource_for_accepts_audience_app_id_and_default_scope():
    assert (
        resource_for("https://api.securitycenter.microsoft.com/.default").key == "mde"
    )
    assert resource_for("https://graph.microsoft.com").key == "graph"
    assert resource_for(RESOURCES["xdr"].app_id).key == "xdr"
    assert resource_for("05a65629-4c1b-48c1-a78b-804c4abdd4af/.default").key == "mcas"
    assert resource_for("https://example.com") is None


def test_default_world_has_consented_tenants_and_an_app():
    world = World.create(seed=0, tenants=5)
    assert len(world.tenants) == 5
    tenant = first_tenant(world)
    assert world.tenant_by_name_or_id(tenant.domain) is tenant
    assert world.app.client_id and world.app.secrets
    assert tenant.mcas_url.endswith(f"/mcas/{tenant.mcas_portal_name}")


def test_clock_advances_and_freezes():
    world = World.create(tenants=1, start=START)
    assert abs(world.now() - START) < 5
    world.freeze_clock()
    frozen = world.now()
    time.sleep(0.01)
    assert world.now() == frozen
    assert world.advance(60) == frozen + 60


def test_streams_are_deterministic_for_a_seed():
    a, b = make_world(seed=9), make_world(seed=9)
    tid = first_tenant(a).id
    assert a.ground_truth(tid, "graph") == b.ground_truth(tid, "graph")
    assert len(a.ground_truth(tid, "graph")) >= 120
    c = make_world(seed=10)
    assert a.ground_truth(tid, "graph") != c.ground_truth(first_tenant(c).id, "graph")


def test_backlog_spans_thirty_days_and_mixes_sources():
    world = make_world(backlog_per_tenant=300)
    st = world.stream(first_tenant(world).id)
    created = [a.created for a in st.alerts[:300]]
    assert min(created) >= world.start_us - 30 * streams.DAY_US - 10 * streams.US
    assert max(created) <= world.start_us
    assert {a.source for a in st.alerts} == {"mde", "mcas", "mdo"}
    assert {a.status for a in st.alerts} == {"New", "InProgress", "Resolved"}
    assert all(a.incident in st.incidents for a in st.alerts)


def test_new_alerts_arrive_and_updates_move_last_update_time():
    world = make_world(alerts_per_minute=0.1)
    tid = first_tenant(world).id
    before = world.ground_truth(tid, "graph")
    world.advance(86400)
    after = world.ground_truth(tid, "graph")
    new = set(after) - set(before)
    assert 130 <= len(new) <= 150
    moved = [k for k in before if after[k] != before[k]]
    assert moved and all(after[k] > before[k] for k in moved)


def test_index_stays_sorted_by_last_update():
    world = make_world(alerts_per_minute=3)
    tid = first_tenant(world).id
    world.advance(7200)
    world.update_random_alerts(50)
    st = world.stream(tid)
    for keys in (st.idx_all.keys, st.inc_idx.keys, st.idx_source["mde"].keys):
        assert keys == sorted(keys)
    assert len(st.idx_all.keys) == len(st.alerts)
    for key in st.idx_all.keys:
        alert = st.alerts[key & streams.SEQ_MASK]
        assert key >> streams.SEQ_BITS == alert.last_update


def test_update_random_alerts_bumps_ground_truth():
    world = make_world()
    tid = first_tenant(world).id
    before = world.ground_truth(tid, "graph")
    world.advance(1)
    assert world.update_random_alerts(10, tid) == 10
    after = world.ground_truth(tid, "graph")
    assert 1 <= sum(after[k] != before[k] for k in before) <= 10


def test_add_alert_keeps_hostile_text_and_shows_in_ground_truth():
    world = make_world()
    tid = first_tenant(world).id
    out = world.add_alert(
        tid, "mde", {"title": "<script>alert(1)</script>", "severity": "High"}
    )
    alert = world.stream(tid).by_id[out["id"]]
    assert alert.title == "<script>alert(1)</script>"
    assert world.ground_truth(tid, "mde")[out["id"]] == out["lastUpdateTime"]
    assert str(out["incidentId"]) in world.ground_truth(tid, "xdr")
    mcas = world.add_alert(tid, "mcas", {"description": "x\u202e\x00y"})
    assert mcas["providerAlertId"] in world.ground_truth(tid, "mcas")


def test_large_world_is_lazy_and_fast():
    started = time.perf_counter()
    world = World.create(tenants=1000, backlog_per_tenant=200, start=START)
    assert not world.streams
    for tid in list(world.tenants)[:50]:
        world.stream(tid)
    assert time.perf_counter() - started < 5


def test_stats_count_requests_per_tenant_and_api():
    world = make_world()
    world.count("t1", "mde", "requests")
    world.count("t1", "mde", "throttled_provoked")
    stats = world.stats()
    assert stats["requests"] == 1 and stats["throttled_provoked"] == 1
    assert stats["by_tenant"]["t1"]["mde"]["requests"] == 1

"""JSON encoding and the cache of rendered alerts behind the list endpoints."""

import json

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from emulator.apis import graph, mcas, mde, xdr
from emulator.apis.common import Call
from emulator.encoding import Encoded, RenderCache, encode
from tests.emulator.api_helpers import call, first_tenant, make_world, token

ALERTS = "/defender/api/alerts"
EVIDENCE = {"$top": "50", "$expand": "evidence"}


def _graph_call(world, headers: dict) -> Call:
    request = Request(EnvironBuilder(path="/graph/", headers=headers).get_environ())
    return Call(world, request, "graph")


def _json_dumps(body) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def test_encode_writes_what_json_dumps_wrote():
    body = {
        "text": 'Ünïcødé ☃ 😀 \u2028 \x1f "quoted" back\\slash </script>',
        "none": None,
        "flags": [True, False],
        "numbers": [0, -1, 2**63 - 1],
        "nested": {"list": [{"a": 1}], "empty": {}},
    }
    assert encode(body) == _json_dumps(body)
    # What orjson refuses goes through json, with the same result as before.
    odd = {"huge": 10**30, "keys": {1: "int key"}}
    assert encode(odd) == _json_dumps(odd)
    assert encode({**odd, "piece": Encoded(b'{"a":[1]}')}) == _json_dumps(
        {**odd, "piece": {"a": [1]}}
    )
    assert encode({"piece": Encoded(b'{"a":[1]}')}) == b'{"piece":{"a":[1]}}'


def test_list_pages_served_from_the_cache_equal_fresh_renderings():
    world = make_world(backlog_per_tenant=200)
    tenant = first_tenant(world)
    st = world.stream(tenant.id)
    tok = token(world, tenant, "mde")
    xdr_tok = token(world, tenant, "xdr")
    graph_tok = token(world, tenant, "graph")
    mcas_tok = token(world, tenant, "mcas")
    portal = f"/mcas/{tenant.mcas_portal_name}/api/v1/alerts/"
    requests = [
        (ALERTS, tok, EVIDENCE, {}),
        (ALERTS, tok, {"$top": "50"}, {}),
        ("/defender/api/incidents", xdr_tok, {"$top": "20"}, {}),
        ("/graph/v1.0/security/alerts_v2", graph_tok, {"$top": "50"}, {}),
        (
            "/graph/v1.0/security/alerts_v2",
            graph_tok,
            {"$top": "50"},
            {"Prefer": "include-unknown-enum-members"},
        ),
        ("/graph/v1.0/security/incidents", graph_tok, {"$expand": "alerts"}, {}),
        (portal, mcas_tok, {"limit": "50"}, {}),
    ]
    replies = [
        call(world, "GET", path, bearer, query, headers=headers)
        for path, bearer, query, headers in requests
    ]
    assert [r.status for r in replies] == [200] * len(requests)
    cold = [r.text for r in replies]
    assert world.rendered.entries
    warm = [
        call(world, "GET", path, bearer, query, headers=headers).text
        for path, bearer, query, headers in requests
    ]
    assert warm == cold

    page = json.loads(cold[0])["value"]
    assert page == [mde.render_alert(st.by_id[a["id"]], True) for a in page]
    incidents = json.loads(cold[2])["value"]
    assert incidents == [
        xdr.render_incident(st.inc_by_id[i["incidentId"]]) for i in incidents
    ]
    enums = graph.Enums(_graph_call(world, {"Prefer": "include-unknown-enum-members"}))
    page = json.loads(cold[4])["value"]
    assert page == [graph.render_alert(st.by_id[a["id"]], enums) for a in page]
    page = json.loads(cold[6])["data"]
    assert page == [mcas.render_alert(st.by_id[a["_id"]], world.base_url) for a in page]


def test_a_changed_alert_is_rendered_again_not_served_stale():
    world = make_world(backlog_per_tenant=200)
    tenant = first_tenant(world)
    tok = token(world, tenant, "mde")
    before = call(world, "GET", ALERTS, tok, EVIDENCE).json()["value"]
    entries = len(world.rendered.entries)
    target = next(a for a in before if a["status"] != "Resolved")
    world.advance(5)
    patch = {"status": "Resolved", "comment": "contained", "assignedTo": "me@x.test"}
    call(world, "PATCH", f"{ALERTS}/{target['id']}", tok, body=patch)
    query = {**EVIDENCE, "$filter": f"id eq '{target['id']}'"}
    (changed,) = call(world, "GET", ALERTS, tok, query).json()["value"]
    assert changed["status"] == "Resolved"
    assert changed["assignedTo"] == "me@x.test"
    assert [c["comment"] for c in changed["comments"]] == ["contained"]
    assert changed["lastUpdateTime"] > target["lastUpdateTime"]
    # Its old rendering was replaced, not kept beside the new one.
    assert len(world.rendered.entries) == entries

    # Changes the stream makes on its own (the life cycle) are seen as well.
    incidents = "/defender/api/incidents"
    xdr_tok = token(world, tenant, "xdr")
    listed = call(world, "GET", incidents, xdr_tok, {"$top": "100"}).json()["value"]
    world.update_random_alerts(40, tenant.id)
    st = world.stream(tenant.id)
    again = call(world, "GET", incidents, xdr_tok, {"$top": "100"}).json()["value"]
    assert again == [xdr.render_incident(st.inc_by_id[i["incidentId"]]) for i in again]
    assert again != listed


def test_the_render_cache_keeps_within_its_bound_dropping_the_least_recent():
    world = make_world(backlog_per_tenant=200)
    st = world.stream(first_tenant(world).id)
    alerts = [a for a in st.alerts if a.source == "mde"][:60]
    cache = RenderCache(max_bytes=40_000)
    for alert in alerts:
        cache.fetch(alert, mde.render_alert, True)
        cache.fetch(alerts[0], mde.render_alert, True)  # kept in use
        assert cache.size <= cache.max_bytes
    assert cache.size == sum(
        len(encoded.data) + cache.ENTRY_OVERHEAD
        for _, encoded in cache.entries.values()
    )
    kept = [key[0] for key in cache.entries]
    assert alerts[0] in kept and alerts[1] not in kept
    assert kept[-2:] == [alerts[-1], alerts[0]]
    assert 0 < len(kept) < len(alerts)


def test_render_ahead_serves_the_same_pages_from_the_cache():
    world = make_world(backlog_per_tenant=300)
    tenant = first_tenant(world)
    tok = token(world, tenant, "mde")
    cold = call(world, "GET", ALERTS, tok, EVIDENCE).text
    fresh = make_world(backlog_per_tenant=300)
    done = fresh.render_ahead(256)
    mde_alerts = sum(
        a.source == "mde" for tid in fresh.tenants for a in fresh.stream(tid).alerts
    )
    assert done["alerts"] == mde_alerts > 0
    assert len(fresh.rendered.entries) == mde_alerts
    assert fresh.rendered.max_bytes == 256 * 1024 * 1024
    warm = call(fresh, "GET", ALERTS, token(fresh, tenant, "mde"), EVIDENCE).text
    assert warm == cold
    assert len(fresh.rendered.entries) == mde_alerts  # served, nothing rendered anew
    with pytest.raises(ValueError):
        fresh.render_ahead(0)

"""Graph security alerts_v2 and incidents."""

from tests.emulator.api_helpers import call, first_tenant, make_world, token

ALERTS = "/graph/v1.0/security/alerts_v2"
INCIDENTS = "/graph/v1.0/security/incidents"


def setup():
    world = make_world(backlog_per_tenant=300)
    tenant = first_tenant(world)
    return world, tenant, token(world, tenant, "graph")


def test_alerts_v2_shape_count_and_next_link():
    world, tenant, tok = setup()
    body = call(world, "GET", ALERTS, tok, {"$top": "10", "$count": "true"}).json()
    assert body["@odata.count"] == len(world.ground_truth(tenant.id, "graph"))
    assert body["@odata.nextLink"].startswith(f"{world.base_url}{ALERTS}?")
    assert "$skip=10" in body["@odata.nextLink"]
    alert = body["value"][0]
    assert alert["@odata.type"] == "#microsoft.graph.security.alert"
    assert alert["status"] in {"new", "inProgress", "resolved"}
    assert isinstance(alert["incidentId"], str)
    assert all(e["@odata.type"].startswith("#microsoft.graph.security.") for a in
               body["value"] for e in a["evidence"])  # fmt: skip


def test_mde_alert_has_same_id_in_graph_and_mcas_alerts_appear_too():
    world, tenant, tok = setup()
    mde_ids = set(world.ground_truth(tenant.id, "mde"))
    graph = call(world, "GET", ALERTS, tok, {"$top": "300"}).json()["value"]
    ids = {a["id"] for a in graph}
    assert mde_ids <= ids
    sources = {a["serviceSource"] for a in graph}
    assert {"microsoftDefenderForEndpoint", "microsoftDefenderForCloudApps"} <= sources


def test_follow_next_links_to_the_end():
    world, tenant, tok = setup()
    cursor = "2025-12-20T00:00:00Z"
    flt = f"lastUpdateDateTime ge {cursor}"
    url = ALERTS
    query = {"$filter": flt, "$top": "25", "$orderby": "lastUpdateDateTime asc"}
    seen = []
    while True:
        body = call(world, "GET", url, tok, query).json()
        seen += [a["id"] for a in body["value"]]
        link = body.get("@odata.nextLink")
        if not link:
            break
        url, _, qs = link[len(world.base_url) :].partition("?")
        from urllib.parse import parse_qsl

        query = dict(parse_qsl(qs))
    truth = world.ground_truth(tenant.id, "graph")
    assert len(seen) == len(set(seen))
    assert set(seen) == {k for k, v in truth.items() if v >= cursor[:-1]}


def test_filters_skip_limit_and_errors():
    world, _, tok = setup()
    body = call(world, "GET", ALERTS, tok, {"$filter": "severity eq 'high' and "
                "serviceSource eq 'microsoftDefenderForEndpoint'"}).json()  # fmt: skip
    assert body["value"] and all(a["severity"] == "high" for a in body["value"])
    reply = call(world, "GET", ALERTS, tok, {"$skip": "501"})
    assert reply.status == 400
    err = reply.json()["error"]
    assert err["innerError"]["request-id"] and err["innerError"]["date"]
    bad = call(world, "GET", ALERTS, tok, {"$filter": "investigationState eq 'x'"})
    assert bad.status == 400


def test_unknown_future_enum_members_need_prefer_header():
    world, tenant, tok = setup()
    added = world.add_alert(
        tenant.id, "mde", {"detectionSource": "MicrosoftDefenderForServers"}
    )
    path = f"{ALERTS}/{added['id']}"
    assert (
        call(world, "GET", path, tok).json()["detectionSource"] == "unknownFutureValue"
    )
    preferred = call(
        world, "GET", path, tok, headers={"Prefer": "include-unknown-enum-members"}
    ).json()
    assert preferred["detectionSource"] == "microsoftDefenderForServers"


def test_patch_alert_writes_back():
    world, tenant, tok = setup()
    alert = call(world, "GET", ALERTS, tok, {"$top": "1"}).json()["value"][0]
    world.advance(2)
    reply = call(
        world, "PATCH", f"{ALERTS}/{alert['id']}", tok,
        body={"status": "inProgress", "assignedTo": "soc@mssp.example",
              "classification": "truePositive", "determination": "malware"},
    )  # fmt: skip
    assert reply.status == 200, reply.text
    out = reply.json()
    assert out["assignedTo"] == "soc@mssp.example" and out["determination"] == "malware"
    assert (
        world.ground_truth(tenant.id, "graph")[alert["id"]] == out["lastUpdateDateTime"]
    )
    bad = call(world, "PATCH", f"{ALERTS}/{alert['id']}", tok, body={"status": "x"})
    assert bad.status == 400
    reader = token(world, tenant, "graph", roles=["SecurityAlert.Read.All"])
    assert (
        call(world, "PATCH", f"{ALERTS}/{alert['id']}", reader, body={}).status == 403
    )


def test_incidents_top_limit_expand_and_patch():
    world, tenant, tok = setup()
    reply = call(world, "GET", INCIDENTS, tok, {"$top": "1000"})
    assert reply.status == 400
    assert reply.json()["error"]["message"] == (
        "The limit of '50' for Top query has been exceeded. "
        "The value from the incoming request is '1000'."
    )
    body = call(world, "GET", INCIDENTS, tok, {"$top": "5", "$expand": "alerts"}).json()
    assert len(body["value"]) == 5 and all(i["alerts"] for i in body["value"])
    plain = call(world, "GET", INCIDENTS, tok, {"$top": "5"}).json()["value"]
    assert "alerts" not in plain[0]
    inc = plain[0]
    world.advance(2)
    reply = call(
        world, "PATCH", f"{INCIDENTS}/{inc['id']}", tok,
        body={"status": "resolved", "classification": "falsePositive",
              "determination": "notMalicious", "customTags": ["x"]},
    )  # fmt: skip
    assert reply.status == 200, reply.text
    assert reply.json()["status"] == "resolved"
    assert (
        world.ground_truth(tenant.id, "incidents")[inc["id"]]
        == reply.json()["lastUpdateDateTime"]
    )


def test_graph_auth_errors_use_graph_shape():
    world, tenant, _ = setup()
    reply = call(world, "GET", ALERTS)
    assert reply.status == 401
    assert reply.json()["error"]["code"] == "InvalidAuthenticationToken"
    none = token(world, tenant, "graph", roles=[])
    assert call(world, "GET", ALERTS, none).status == 403
    alerts_only = token(world, tenant, "graph", roles=["SecurityAlert.Read.All"])
    assert call(world, "GET", INCIDENTS, alerts_only).status == 403

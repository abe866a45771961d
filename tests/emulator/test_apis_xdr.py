"""XDR incidents API and advanced hunting."""

from tests.emulator.api_helpers import call, first_tenant, make_world, token

INCIDENTS = "/defender/api/incidents"


def setup():
    world = make_world(backlog_per_tenant=300)
    tenant = first_tenant(world)
    return world, tenant, token(world, tenant, "xdr")


def test_incidents_newest_first_with_embedded_alerts():
    world, tenant, tok = setup()
    body = call(world, "GET", INCIDENTS, tok).json()
    assert body["@odata.context"].endswith("$metadata#Incidents")
    incidents = body["value"]
    assert len(incidents) == 100  # $top defaults to the max page size
    times = [i["lastUpdateTime"] for i in incidents]
    assert times == sorted(times, reverse=True)
    alert = incidents[0]["alerts"][0]
    assert alert["incidentId"] == incidents[0]["incidentId"]
    assert {"devices", "entities", "serviceSource", "lastUpdatedTime"} <= set(alert)


def test_page_incidents_to_the_end_without_gaps_or_duplicates():
    world, tenant, tok = setup()
    truth = world.ground_truth(tenant.id, "xdr")
    cursor = "2025-12-01T00:00:00Z"
    seen: list[int] = []
    skip = 0
    while True:
        page = call(
            world,
            "GET",
            INCIDENTS,
            tok,
            {
                "$filter": f"lastUpdateTime ge {cursor}",
                "$top": "30",
                "$skip": str(skip),
            },
        ).json()["value"]
        seen += [i["incidentId"] for i in page]
        if len(page) < 30:
            break
        skip += 30
    assert len(seen) == len(set(seen))
    assert {str(i) for i in seen} == {k for k, v in truth.items() if v >= cursor[:-1]}


def test_filters_and_top_cap():
    world, _, tok = setup()
    active = call(world, "GET", INCIDENTS, tok, {"$filter": "status eq 'Active'"})
    assert {i["status"] for i in active.json()["value"]} == {"Active"}
    capped = call(world, "GET", INCIDENTS, tok, {"$top": "500"}).json()["value"]
    assert len(capped) == 100
    world.api_options["xdr_top_over_limit"] = "error"
    assert call(world, "GET", INCIDENTS, tok, {"$top": "500"}).status == 400
    bad = call(world, "GET", INCIDENTS, tok, {"$filter": "severity eq 'High'"})
    assert bad.status == 400 and bad.json()["error"]["code"] == "ODataError"


def test_patch_incident_resolves_its_alerts_and_moves_ground_truth():
    world, tenant, tok = setup()
    inc = call(
        world, "GET", INCIDENTS, tok, {"$filter": "status eq 'Active'", "$top": "1"}
    ).json()["value"][0]
    world.advance(3)
    reply = call(
        world, "PATCH", f"{INCIDENTS}/{inc['incidentId']}", tok,
        body={"status": "Resolved", "classification": "TruePositive",
              "determination": "Malware", "assignedTo": "soc@mssp.example",
              "tags": ["portal"], "comment": "done"},
    )  # fmt: skip
    assert reply.status == 200, reply.text
    out = reply.json()
    assert out["status"] == "Resolved" and out["tags"] == ["portal"]
    assert all(a["status"] == "Resolved" for a in out["alerts"])
    assert out["comments"][-1]["comment"] == "done"
    truth = world.ground_truth(tenant.id, "xdr")
    assert truth[str(inc["incidentId"])] == out["lastUpdateTime"]
    assert out["lastUpdateTime"] > inc["lastUpdateTime"]
    assert (
        call(world, "PATCH", f"{INCIDENTS}/1", tok, body={"status": "Active"}).status
        == 404
    )
    bad = call(world, "PATCH", f"{INCIDENTS}/{inc['incidentId']}", tok, body={"x": 1})
    assert bad.status == 400


def test_incident_roles_and_mde_audience():
    world, tenant, _ = setup()
    mde_tok = token(world, tenant, "mde")  # right host, but only Alert roles
    assert call(world, "GET", INCIDENTS, mde_tok).status == 403
    reader = token(world, tenant, "xdr", roles=["Incident.Read.All"])
    assert call(world, "GET", INCIDENTS, reader).status == 200
    assert call(world, "PATCH", f"{INCIDENTS}/1000001", reader, body={}).status == 403


def test_advanced_hunting_is_canned():
    world, tenant, tok = setup()
    reply = call(
        world, "POST", "/defender/api/advancedhunting/run", tok,
        body={"Query": "DeviceProcessEvents | limit 5"},
    )  # fmt: skip
    assert reply.status == 200
    body = reply.json()
    assert {"Stats", "Schema", "Results"} <= set(body) and body["Results"]
    assert (
        call(world, "POST", "/defender/api/advancedhunting/run", tok, body={}).status
        == 400
    )

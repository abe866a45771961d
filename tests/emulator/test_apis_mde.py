"""MDE alerts API: filters, paging, PATCH write-back, isolation, auth."""

from emulator import streams
from tests.emulator.api_helpers import call, first_tenant, make_world, token

ALERTS = "/defender/api/alerts"


def setup():
    world = make_world(backlog_per_tenant=300)
    tenant = first_tenant(world)
    return world, tenant, token(world, tenant, "mde")


def test_list_alerts_envelope_and_shape():
    world, tenant, tok = setup()
    reply = call(world, "GET", ALERTS, tok, {"$top": "5"})
    assert reply.status == 200
    body = reply.json()
    assert body["@odata.context"].endswith("$metadata#Alerts")
    assert len(body["value"]) == 5 and "@odata.nextLink" not in body
    alert = body["value"][0]
    assert alert["aadTenantId"] == tenant.id
    assert alert["id"].startswith("da") and len(alert["machineId"]) == 40
    assert alert["evidence"] == []


def test_expand_evidence_and_single_alert():
    world, _, tok = setup()
    value = call(world, "GET", ALERTS, tok, {"$top": "20", "$expand": "evidence"})
    alerts = value.json()["value"]
    assert any(a["evidence"] for a in alerts)
    one = call(world, "GET", f"{ALERTS}/{alerts[0]['id']}", tok).json()
    assert one["id"] == alerts[0]["id"] and "evidence" in one


def test_page_to_the_end_with_cursor_and_skip_has_no_gaps_or_duplicates():
    world, tenant, tok = setup()
    truth = world.ground_truth(tenant.id, "mde")
    cursor = "2025-12-10T00:00:00Z"
    expected = {k for k, v in truth.items() if v >= cursor[:-1]}
    seen: list[str] = []
    skip = 0
    while True:
        reply = call(
            world,
            "GET",
            "/defender/api/v1.0/alerts",
            tok,
            {
                "$filter": f"lastUpdateTime ge {cursor}",
                "$top": "17",
                "$skip": str(skip),
            },
        )
        page = reply.json()["value"]
        seen += [a["id"] for a in page]
        if len(page) < 17:
            break
        skip += 17
    assert len(seen) == len(set(seen))
    assert set(seen) == expected
    times = [truth[i] for i in seen]
    assert times == sorted(times)


def test_filters_on_documented_fields():
    world, tenant, tok = setup()
    for flt, check in [
        ("status eq 'New'", lambda a: a["status"] == "New"),
        ("severity eq 'High' and status ne 'Resolved'",
         lambda a: a["severity"] == "High" and a["status"] != "Resolved"),
        ("assignedTo eq null", lambda a: a["assignedTo"] is None),
        ("startswith(category, 'Cred')", lambda a: a["category"].startswith("Cred")),
        ("alertCreationTime ge 2025-12-20T00:00:00Z",
         lambda a: a["alertCreationTime"] >= "2025-12-20"),
    ]:  # fmt: skip
        reply = call(world, "GET", ALERTS, tok, {"$filter": flt})
        assert reply.status == 200, reply.text
        values = reply.json()["value"]
        assert values and all(check(a) for a in values), flt
    inc = values[0]["incidentId"]
    by_inc = call(world, "GET", ALERTS, tok, {"$filter": f"incidentId eq {inc}"})
    assert {a["incidentId"] for a in by_inc.json()["value"]} == {inc}


def test_bad_filter_and_top_over_limit_are_400_in_mde_shape():
    world, _, tok = setup()
    reply = call(world, "GET", ALERTS, tok, {"$filter": "bogus eq 1"})
    assert reply.status == 400
    err = reply.json()["error"]
    assert err["code"] == "ODataError" and "bogus" in err["message"] and err["target"]
    assert call(world, "GET", ALERTS, tok, {"$top": "10001"}).status == 400
    world.api_options["mde_top_over_limit"] = "clamp"
    assert call(world, "GET", ALERTS, tok, {"$top": "10001"}).status == 200


def test_next_link_behaviour_is_configurable():
    world = make_world(backlog_per_tenant=300)
    tenant = first_tenant(world)
    tok = token(world, tenant, "mde")
    world.api_options["mde_next_link"] = "always"
    body = call(world, "GET", ALERTS, tok, {"$top": "10"}).json()
    assert body["@odata.nextLink"].startswith(world.base_url + ALERTS)
    assert "$skip=10" in body["@odata.nextLink"]
    world.api_options["mde_next_link"] = "never"
    assert (
        "@odata.nextLink" not in call(world, "GET", ALERTS, tok, {"$top": "10"}).json()
    )


def test_patch_updates_alert_bumps_time_and_ground_truth():
    world, tenant, tok = setup()
    alert = call(world, "GET", ALERTS, tok, {"$top": "1"}).json()["value"][0]
    world.advance(5)
    reply = call(
        world,
        "PATCH",
        f"{ALERTS}/{alert['id']}",
        tok,
        body={
            "status": "Resolved",
            "classification": "FalsePositive",
            "determination": "Other",
            "comment": "Closed from partner portal",
        },
    )
    assert reply.status == 200, reply.text
    updated = reply.json()
    assert updated["status"] == "Resolved" and updated["resolvedTime"]
    assert updated["lastUpdateTime"] > alert["lastUpdateTime"]
    assert updated["comments"][-1]["comment"] == "Closed from partner portal"
    assert (
        world.ground_truth(tenant.id, "mde")[alert["id"]] == updated["lastUpdateTime"]
    )
    # the same alert through Graph shows the change
    graph = call(
        world,
        "GET",
        f"/graph/v1.0/security/alerts_v2/{alert['id']}",
        token(world, tenant, "graph"),
    ).json()
    assert graph["status"] == "resolved" and graph["classification"] == "falsePositive"


def test_patch_body_is_case_sensitive_and_validated():
    world, _, tok = setup()
    alert_id = call(world, "GET", ALERTS, tok, {"$top": "1"}).json()["value"][0]["id"]
    for body in ({"Status": "Resolved"}, {"status": "Closed"}, {}):
        reply = call(world, "PATCH", f"{ALERTS}/{alert_id}", tok, body=body)
        assert reply.status == 400
        assert reply.json()["error"]["code"] == "InvalidRequestBody"
    assert (
        call(world, "PATCH", f"{ALERTS}/da0_0", tok, body={"status": "New"}).status
        == 404
    )


def test_patch_needs_readwrite_role():
    world, tenant, _ = setup()
    reader = token(world, tenant, "mde", roles=["Alert.Read.All"])
    alert_id = call(world, "GET", ALERTS, reader, {"$top": "1"}).json()["value"][0][
        "id"
    ]
    reply = call(world, "PATCH", f"{ALERTS}/{alert_id}", reader, body={"status": "New"})
    assert reply.status == 403 and reply.json()["error"]["code"] == "Forbidden"


def test_auth_failures():
    world, tenant, tok = setup()
    assert call(world, "GET", ALERTS).status == 401
    assert call(world, "GET", ALERTS, "not-a-jwt").status == 401
    graph_tok = token(world, tenant, "graph")
    assert call(world, "GET", ALERTS, graph_tok).status == 401  # wrong audience
    no_roles = token(world, tenant, "mde", roles=[])
    assert call(world, "GET", ALERTS, no_roles).status == 403
    tenant.licensed.discard("mde")
    reply = call(world, "GET", ALERTS, tok)
    assert reply.status == 403 and "not licensed" in reply.json()["error"]["message"]
    tenant.licensed.add("mde")
    tenant.consented = False
    assert call(world, "GET", ALERTS, tok).status == 401
    tenant.consented = True
    world.advance(2 * 3600)  # token expired
    reply = call(world, "GET", ALERTS, tok)
    assert reply.status == 401 and reply.json()["error"]["code"] == "Unauthorized"


def test_xdr_audience_is_accepted_for_alerts_and_regional_alias_works():
    world, tenant, _ = setup()
    tok = token(world, tenant, "mde", audience="https://api.security.microsoft.com")
    assert (
        call(world, "GET", "/defender/eu/api/alerts", tok, {"$top": "1"}).status == 200
    )


def test_geo_hosts_serve_defender_for_endpoint_but_not_xdr_incidents():
    # Reference §6.1: MDE's geo hosts are us, eu, uk, au, swa, ina, aea; §7 gives
    # XDR incidents none.
    world, tenant, _ = setup()
    mde_token = token(world, tenant, "mde")
    xdr_token = token(world, tenant, "xdr")
    for geo in ("us", "eu", "uk", "au", "swa", "ina", "aea"):
        alerts = call(world, "GET", f"/defender/{geo}/api/alerts", mde_token)
        assert alerts.status == 200, geo
        incidents = call(world, "GET", f"/defender/{geo}/api/incidents", xdr_token)
        assert incidents.status == 404, geo
    assert call(world, "GET", "/defender/api/incidents", xdr_token).status == 200


def test_tenant_isolation():
    world = make_world()
    a, b = list(world.tenants.values())
    ids_b = set(world.ground_truth(b.id, "mde"))
    page = call(world, "GET", ALERTS, token(world, a, "mde")).json()["value"]
    assert page and not ids_b & {x["id"] for x in page}
    reply = call(world, "GET", f"{ALERTS}/{next(iter(ids_b))}", token(world, a, "mde"))
    assert reply.status == 404


def test_isolate_machine_and_poll_action():
    world, tenant, _ = setup()
    tok = token(world, tenant, "mde")
    machine = world.stream(tenant.id).machines[3].id
    path = f"/defender/api/machines/{machine}/isolate"
    body = {"Comment": "Isolate machine due to alert 1234", "IsolationType": "Full"}
    reply = call(world, "POST", path, tok, body=body)
    assert reply.status == 201, reply.text
    action = reply.json()
    assert action["type"] == "Isolate" and action["status"] == "Pending"
    assert call(world, "POST", path, tok, body=body).status == 400  # already pending
    statuses = [
        call(world, "GET", f"/defender/api/machineactions/{action['id']}", tok).json()[
            "status"
        ]
        for _ in range(3)
    ]
    assert statuses == ["InProgress", "Succeeded", "Succeeded"]
    assert call(world, "POST", path, tok, body={"comment": "x"}).status == 400
    missing = call(world, "POST", "/defender/api/machines/abc/isolate", tok, body=body)
    assert (
        missing.status == 404 and missing.json()["error"]["code"] == "ResourceNotFound"
    )


def test_paging_a_large_tenant_is_cheap():
    import time

    world = make_world(tenants=1, backlog_per_tenant=20_000)
    tenant = first_tenant(world)
    tok = token(world, tenant, "mde")
    world.stream(tenant.id)
    started = time.perf_counter()
    cursor = streams.fmt_time(world.start_us - 2 * streams.DAY_US)
    reply = call(
        world, "GET", ALERTS, tok,
        {"$filter": f"lastUpdateTime ge {cursor}", "$top": "100", "$skip": "100"},
    )  # fmt: skip
    assert reply.status == 200 and reply.json()["value"]
    assert time.perf_counter() - started < 0.5

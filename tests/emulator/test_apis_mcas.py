"""Cloud Apps alerts API."""

from tests.emulator.api_helpers import call, first_tenant, make_world, token


def setup():
    world = make_world(backlog_per_tenant=400)
    tenant = first_tenant(world)
    base = f"/mcas/{tenant.mcas_portal_name}/api/v1/alerts/"
    return world, tenant, token(world, tenant, "mcas"), base


def test_list_envelope_ms_timestamps_and_paging():
    world, tenant, tok, base = setup()
    truth = world.ground_truth(tenant.id, "mcas")
    seen = []
    skip = 0
    while True:
        body = call(
            world,
            "POST",
            base,
            tok,
            body={
                "skip": skip,
                "limit": 30,
                "sortField": "date",
                "sortDirection": "asc",
            },
        ).json()
        assert set(body) == {"data", "hasNext", "max", "total", "moreThanTotal"}
        seen += [a["_id"] for a in body["data"]]
        if not body["hasNext"]:
            break
        skip += 30
    assert len(seen) == len(set(seen)) and set(seen) == set(truth)
    first = call(world, "GET", base, tok, {"limit": "1"}).json()["data"][0]
    assert isinstance(first["timestamp"], int) and first["timestamp"] > 1e12
    assert isinstance(first["severityValue"], int)


def test_limit_is_capped_at_100_and_filters_work():
    world, _, tok, base = setup()
    assert (
        len(call(world, "POST", base, tok, body={"limit": 500}).json()["data"]) <= 100
    )
    body = call(
        world, "POST", base, tok,
        body={"filters": {"severity": {"eq": [2]}, "alertOpen": {"eq": True}}},
    ).json()  # fmt: skip
    assert all(a["severityValue"] == 2 and a["resolutionStatusValue"] == 0
               for a in body["data"])  # fmt: skip
    bad = call(world, "POST", base, tok, body={"filters": {"nope": {"eq": 1}}})
    assert bad.status == 400 and bad.json()["error"] is True


def test_get_read_and_close():
    world, tenant, tok, base = setup()
    alert = call(world, "GET", base, tok, {"limit": "1"}).json()["data"][0]
    pk = alert["_id"]
    assert call(world, "GET", f"{base}{pk}/", tok).json()["_id"] == pk
    assert call(world, "POST", f"{base}{pk}/read/", tok).status == 200
    assert call(world, "GET", f"{base}{pk}/", tok).json()["statusValue"] in (1, 2)
    world.advance(2)
    before = world.ground_truth(tenant.id, "mcas")[pk]
    reply = call(
        world, "POST", f"{base}close_false_positive/", tok,
        body={"filters": {"id": {"eq": [pk, "0" * 24]}}, "comment": "noise",
              "reasonId": 1},
    )  # fmt: skip
    assert reply.json() == {"closed_false_positive": 1, "alertsNotFound": ["0" * 24]}
    closed = call(world, "GET", f"{base}{pk}/", tok).json()
    assert closed["resolutionStatusValue"] == 3
    assert world.ground_truth(tenant.id, "mcas")[pk] > before
    assert call(world, "GET", f"{base}{'f' * 24}/", tok).status == 404


def test_mcas_auth():
    world, tenant, tok, base = setup()
    assert call(world, "GET", base).status == 401
    reader = token(world, tenant, "mcas", roles=["Investigation.read"])
    assert call(world, "GET", base, reader).status == 200
    close = call(world, "POST", f"{base}close_benign/", reader, body={})
    assert close.status == 403
    other = list(world.tenants.values())[1]
    wrong_portal = f"/mcas/{other.mcas_portal_name}/api/v1/alerts/"
    assert call(world, "GET", wrong_portal, tok).status == 401


def test_discovery_roles_close_alerts_but_do_not_list_them():
    # Reference §9.1: Discovery.manage closes alerts; neither Discovery role is said
    # to list or fetch them.
    world, tenant, tok, base = setup()
    pk = call(world, "GET", base, tok, {"limit": "1"}).json()["data"][0]["_id"]
    manager = token(world, tenant, "mcas", roles=["Discovery.manage"])
    viewer = token(world, tenant, "mcas", roles=["Discovery.read"])

    closed = call(
        world, "POST", f"{base}close_benign/", manager,
        body={"filters": {"id": {"eq": [pk]}}, "reasonId": 4},
    )  # fmt: skip

    assert closed.status == 200 and closed.json()["closed_benign"] == 1
    assert call(world, "GET", base, manager).status == 403
    assert call(world, "GET", base, viewer).status == 403
    assert call(world, "GET", f"{base}{pk}/", viewer).status == 403
    assert call(world, "POST", f"{base}close_benign/", viewer, body={}).status == 403

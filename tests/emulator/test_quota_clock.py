"""Quotas count real seconds: a frozen World clock (tests and benches freeze it to
compare with the ground truth) must not keep a full quota window full for ever."""

import time

import time_machine

from tests.emulator.api_helpers import call, first_tenant, make_world, token

PATH = "/mcas/{portal}/api/v1/alerts/"


def test_a_frozen_clock_does_not_freeze_the_quota_window():
    world = make_world()
    tenant = first_tenant(world)
    tok = token(world, tenant, "mcas")
    path = PATH.format(portal=tenant.mcas_portal_name)
    world.freeze_clock(True)
    with time_machine.travel(time.time(), tick=False) as traveller:
        replies = [call(world, "GET", path, tok) for _ in range(31)]
        assert replies[29].status == 200 and replies[30].status == 429
        traveller.shift(61)
        assert call(world, "GET", path, tok).status == 200
    assert world.stats()["throttled_provoked"] == 1


def test_advancing_the_clock_still_frees_the_quota():
    world = make_world()
    tenant = first_tenant(world)
    tok = token(world, tenant, "mcas")
    path = PATH.format(portal=tenant.mcas_portal_name)
    world.freeze_clock(True)
    replies = [call(world, "GET", path, tok) for _ in range(31)]
    assert replies[30].status == 429
    world.advance(61)
    assert call(world, "GET", path, tok).status == 200

"""The emulator's saved world: a restarted emulator is the same Microsoft cloud."""

import json

import pytest

from emulator import app as emulator_app
from emulator import consent, persistence


def _world(state_dir):
    saved = persistence.read(state_dir)
    world, _ = emulator_app.build_world(state_dir, seed=3, tenants=3, saved=saved)
    return world


def test_a_reloaded_world_keeps_consent_secrets_faults_and_alerts(tmp_path):
    world = _world(tmp_path)
    tenant = next(iter(world.tenants.values()))
    consent.grant(world, tenant)
    added = world.add_alert(tenant.id, "mde", {"title": "Saved across restarts"})
    world.set_fault_profile(tenant.id, {"rates": {"429": 0.5}})
    alerts = world.ground_truth(tenant.id, "graph")
    persistence.save(world, tmp_path)

    again = _world(tmp_path)

    assert again.tenants[tenant.id].consented
    assert again.tenants[tenant.id].granted_roles == tenant.granted_roles
    assert again.app.secrets[0].value == world.app.secrets[0].value
    assert again.faults.tenant_profiles[tenant.id].rates == {"429": 0.5}
    reloaded = again.ground_truth(tenant.id, "graph")
    assert {k: reloaded[k] for k in alerts} == alerts
    assert again.stream(tenant.id).by_id[added["id"]].title == "Saved across restarts"


def test_saving_twice_gives_the_same_file(tmp_path):
    world = _world(tmp_path)
    world.freeze_clock()
    world.stream(next(iter(world.tenants)))
    first = persistence.save(world, tmp_path).read_bytes()
    assert persistence.save(world, tmp_path).read_bytes() == first
    assert not list(tmp_path.glob(".world.json.*.tmp"))


@pytest.mark.parametrize(
    "content",
    ['{"format": "microsoft-cloud-emulator-world", "ver', '{"version": 0}'],
)
def test_an_unreadable_saved_world_is_refused_in_words(tmp_path, content):
    persistence.world_path(tmp_path).write_text(content)
    with pytest.raises(persistence.UnreadableWorld, match="world.json"):
        persistence.read(tmp_path)


def test_a_damaged_saved_world_is_refused_in_words(tmp_path):
    persistence.save(_world(tmp_path), tmp_path)
    data = json.loads(persistence.world_path(tmp_path).read_text())
    del data["app"]
    with pytest.raises(persistence.UnreadableWorld, match="damaged"):
        emulator_app.build_world(tmp_path, saved=data)

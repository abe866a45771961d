"""What bench/soak.py found under faults, each pinned by a test.

* Two sources of one tenant writing copies of one alert at the same time each saw
  their copy alone and both stayed primaries (shown twice in the queue).
* A new Cloud Apps alert whose Graph copy was already stored stayed a primary.
* One 503 while checking access left that source unsynced until staff checked again.
* A tenant back from revoked waited out the backoff of its earlier failures.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from alerts import storage
from alerts.models import Alert
from sync import runner
from sync import services as sync_services
from sync.models import SyncRun, SyncState
from tenants import services
from tenants.models import Capability, Tenant
from tests.tenants.sync_helpers import consented_emulator, verified_tenants


@pytest.fixture
def emulator(tmp_path_factory):
    with consented_emulator(tmp_path_factory, tenants=1, backlog_per_tenant=20) as emu:
        yield emu


def row(source: str, provider_id: str, *, origin: str | None = None) -> dict:
    moment = timezone.now() - timedelta(minutes=5)
    raw = {"id": provider_id}
    if origin:
        raw["providerAlertId"] = origin
    return {
        "source": source,
        "provider_id": provider_id,
        "title": "Copy",
        "description": "",
        "severity": "low",
        "status": "new",
        "category": "",
        "classification": "",
        "determination": "",
        "assigned_to": "",
        "created_at_source": moment,
        "updated_at_source": moment,
        "first_activity_at": None,
        "last_activity_at": None,
        "resolved_at": None,
        "incident_provider_id": "",
        "devices": [],
        "users": [],
        "evidence": [],
        "evidence_summary": "",
        "entities_text": "",
        "portal_url": "",
        "raw": raw,
    }


def write(tenant: Tenant, rows: list[dict]) -> None:
    _, _, written = storage.upsert_alerts(tenant.pk, rows)
    storage.link_alerts(tenant.pk, written=written, incident_ids=[])


def primaries(tenant: Tenant) -> list[str]:
    return sorted(
        Alert.objects.filter(tenant=tenant, duplicate_of__isnull=True).values_list(
            "source", flat=True
        )
    )


def test_a_new_cloud_apps_alert_whose_graph_copy_is_stored_becomes_its_duplicate(
    db, portal_on_emulator, emulator
):
    tenant = verified_tenants(emulator, count=1)[0]
    write(tenant, [row("graph", "ca-X", origin="M1")])
    write(tenant, [row("mcas", "M1")])
    assert primaries(tenant) == ["graph"]
    copy = Alert.objects.get(tenant=tenant, source="mcas")
    assert copy.duplicate_of.provider_id == "ca-X"


def test_copies_written_by_two_runs_at_once_leave_one_primary(
    transactional_db, portal_on_emulator, emulator
):
    tenant = verified_tenants(emulator, count=1)[0]
    state = SyncState.objects.get(tenant=tenant, source="graph_alerts")
    SyncState.objects.filter(pk=state.pk).update(
        lease_owner="graph-run", lease_until=timezone.now() + timedelta(minutes=5)
    )
    run = SyncRun.objects.create(sync=state, started_at=timezone.now())
    graph_runner = runner._Runner(SyncState.objects.get(pk=state.pk), run, "graph-run")
    mde_wrote, release, graph_done = (threading.Event() for _ in range(3))
    failures: list[BaseException] = []

    def mde_run_mid_page() -> None:
        # Another run's page, its transaction still open: what _save does, paused.
        try:
            with transaction.atomic():
                storage.lock_tenant_writes(tenant.pk)
                write(tenant, [row("mde", "da1")])
                mde_wrote.set()
                release.wait(10)
        except BaseException as exc:  # noqa: BLE001 (reported by the test)
            failures.append(exc)
        finally:
            connection.close()

    def graph_run_page() -> None:
        try:
            graph_runner._save(runner.Batch(alerts=[row("graph", "da1", origin="da1")]))
        except BaseException as exc:  # noqa: BLE001 (reported by the test)
            failures.append(exc)
        finally:
            graph_done.set()
            connection.close()

    first = threading.Thread(target=mde_run_mid_page)
    first.start()
    assert mde_wrote.wait(10)
    second = threading.Thread(target=graph_run_page)
    second.start()
    # The Graph page waits for the MDE page's transaction instead of linking blind.
    assert not graph_done.wait(1.0)
    release.set()
    first.join(10)
    second.join(10)
    assert not failures, failures
    assert primaries(tenant) == ["mde"]
    graph = Alert.objects.get(tenant=tenant, source="graph")
    assert graph.duplicate_of.source == "mde"


def test_a_source_whose_check_met_a_503_is_synced_and_its_success_settles_it(
    db, portal_on_emulator, emulator
):
    tenant = verified_tenants(emulator, count=1)[0]
    SyncState.objects.filter(tenant=tenant).delete()
    emulator.control(
        "POST",
        "faults/api",
        {"profile": {"apis": ["mde"], "rates": {"503": 1.0}, "retry_after": 0}},
    )
    services.verify_tenant_access(tenant=tenant)
    tenant.refresh_from_db()
    assert tenant.state == Tenant.State.VERIFIED
    mde = Capability.objects.get(tenant=tenant, source="mde_alerts")
    assert mde.status == Capability.Status.ERROR
    state = SyncState.objects.get(tenant=tenant, source="mde_alerts")
    assert state.pk in sync_services.dispatch_due_syncs()

    emulator.control("POST", "faults/api", {"profile": {}})
    assert runner.sync_source(sync_state_id=state.pk).outcome == "ok"
    mde.refresh_from_db()
    assert (mde.status, mde.detail) == (Capability.Status.OK, "")


def test_a_tenant_back_from_revoked_syncs_now_not_after_its_old_backoff(
    db, portal_on_emulator, emulator
):
    tenant = verified_tenants(emulator, count=1)[0]
    Tenant.objects.filter(pk=tenant.pk).update(state=Tenant.State.REVOKED)
    later = timezone.now() + timedelta(hours=2)
    SyncState.objects.filter(tenant=tenant).update(
        next_due_at=later, consecutive_failures=7
    )
    tenant.refresh_from_db()
    services.verify_tenant_access(tenant=tenant)
    tenant.refresh_from_db()
    assert tenant.state == Tenant.State.VERIFIED
    states = SyncState.objects.filter(tenant=tenant)
    assert states.count() == 5
    assert all(s.next_due_at <= timezone.now() for s in states)
    assert {s.consecutive_failures for s in states} == {0}
    assert len(sync_services.dispatch_due_syncs()) == 5

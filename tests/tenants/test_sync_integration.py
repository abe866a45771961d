"""Sync end to end: real Celery worker and beat, real Redis and Postgres, and the
emulator over HTTPS with tenants whose alerts keep changing.

Each test ends with the database equal to the emulator's ground truth: no alert or
incident missing, none extra, none older than the emulator's latest version (rows are
unique per tenant, source and provider id, so there are no duplicates to count).
"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from alerts.models import Alert
from sync.models import SyncRun, SyncState
from tenants.models import Tenant
from tests.conftest import WorkerProcess
from tests.tenants.sync_helpers import consented_emulator, differences, verified_tenants

pytestmark = pytest.mark.integration

FAST = {
    "SYNC_INTERVAL_SECONDS": "2",
    "SYNC_OVERLAP_SECONDS": "60",
    "SYNC_LEASE_SECONDS": "6",
    "SYNC_DISPATCH_SECONDS": "1",
    "SYNC_PAGE_SIZE": "50",
}


@pytest.fixture
def emulator(tmp_path_factory):
    with consented_emulator(
        tmp_path_factory, tenants=3, backlog_per_tenant=120, alerts_per_minute=12
    ) as emu:
        yield emu


@pytest.fixture
def world(transactional_db, portal_on_emulator, emulator, tmp_path):
    """Three verified tenants and a way to start workers (with beat) on them."""
    tenants = verified_tenants(emulator)
    workers: list[WorkerProcess] = []

    def start_worker(**env) -> WorkerProcess:
        schedule = tmp_path / f"beat-{len(workers)}"
        worker = WorkerProcess(
            extra_args=["-B", "-s", str(schedule)],
            env={**portal_on_emulator, **FAST, **env},
        )
        workers.append(worker)
        worker.wait_ready()
        return worker

    yield tenants, start_worker
    for worker in workers:
        worker.stop()


def keep_changing(emulator, tenants, seconds: float) -> None:
    """Alerts change in every tenant for a while (new ones arrive by themselves)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for tenant in tenants:
            emulator.control(
                "POST", "alerts/update", {"n": 5, "tenant": str(tenant.tenant_id)}
            )
        time.sleep(0.5)


def converge(emulator, tenants, timeout: float = 90) -> None:
    """Stop the emulator's clock (no more changes) and wait for the DB to match."""
    emulator.control("POST", "clock/freeze", {"frozen": True})
    deadline = time.monotonic() + timeout
    report = {}
    while time.monotonic() < deadline:
        report = {t.display_name: differences(emulator, t) for t in tenants}
        if not any(report.values()):
            return
        time.sleep(1)
    summary = {
        name: {src: {k: len(v) for k, v in diff.items()} for src, diff in d.items()}
        for name, d in report.items()
    }
    raise AssertionError(f"not converged in {timeout} s: {summary}")


def test_changing_tenants_end_equal_to_the_ground_truth(world, emulator):
    tenants, start_worker = world
    start_worker()
    keep_changing(emulator, tenants, 12)
    converge(emulator, tenants)
    assert Alert.objects.filter(source="mde").exists()
    assert not SyncState.objects.exclude(last_error="").exists()


def test_faults_429_5xx_timeouts_and_malformed_pages_lose_nothing(world, emulator):
    tenants, start_worker = world
    emulator.control(
        "POST",
        "faults/api",
        {
            "profile": {
                "rates": {
                    "429": 0.05,
                    "500": 0.05,
                    "503": 0.03,
                    "timeout": 0.03,
                    "malformed": 0.05,
                    "truncated": 0.03,
                    "reset": 0.02,
                },
                "timeout_seconds": 1,
                "retry_after": 1,
            }
        },
    )
    start_worker()
    keep_changing(emulator, tenants, 15)
    converge(emulator, tenants, timeout=120)
    emulator.control("POST", "faults/api", {"profile": {}})
    stats = emulator.control("GET", "stats")["result"]
    assert stats["faults_injected"] > 0
    assert SyncRun.objects.exclude(error="").exists()  # faults did reach the sync


def test_a_worker_killed_mid_sync_loses_nothing(world, emulator):
    tenants, start_worker = world
    # Slow pages, so the kill lands in the middle of the backfill.
    emulator.control("POST", "faults/api", {"profile": {"latency_ms": 250}})
    first = start_worker(SYNC_PAGE_SIZE="10")
    deadline = time.monotonic() + 60
    while not SyncRun.objects.filter(outcome="running", pages__gte=0).exists():
        assert time.monotonic() < deadline, "no sync started"
        time.sleep(0.2)
    time.sleep(2)
    assert SyncState.objects.exclude(lease_owner="").exists()
    parent = psutil.Process(first.process.pid)
    for process in [*parent.children(recursive=True), parent]:
        os.kill(process.pid, signal.SIGKILL)
    first.process.wait()
    emulator.control("POST", "faults/api", {"profile": {}})
    start_worker()
    keep_changing(emulator, tenants, 5)
    converge(emulator, tenants, timeout=120)
    # The killed runs never finished; their leases expired and others took over.
    assert SyncRun.objects.filter(outcome="running").exists()


def test_a_tenant_revoked_mid_run_is_marked_and_the_others_carry_on(world, emulator):
    tenants, start_worker = world
    start_worker()
    keep_changing(emulator, tenants, 4)
    revoked = tenants[1]
    emulator.control("POST", f"tenants/{revoked.tenant_id}/revoke")
    deadline = time.monotonic() + 60
    while Tenant.objects.get(pk=revoked.pk).state != Tenant.State.REVOKED:
        assert time.monotonic() < deadline, "the revoked tenant was not marked"
        time.sleep(0.3)
    others = [tenants[0], tenants[2]]
    added = emulator.control(
        "POST", "alerts", {"tenant": str(others[0].tenant_id), "source": "mde"}
    )["result"]
    keep_changing(emulator, others, 4)
    converge(emulator, others)
    assert Alert.objects.filter(provider_id=added["id"], source="mde").exists()
    revoked.refresh_from_db()
    assert "consent" in revoked.last_error

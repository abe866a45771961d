"""Every call the portal makes to a tenant's API counts in one quota: verification's
probes and triage's re-reads and PATCHes take their calls from the Redis windows the
sync takes its calls from (``core.quotas``)."""

from __future__ import annotations

import time

import pytest

from alerts import triage
from alerts.models import Alert, TriageAction
from core import quotas as core_quotas
from core.redis import get_redis
from tenants import quotas as tenant_quotas
from tenants import services
from tenants.microsoft import sources
from tenants.models import Capability, Tenant
from tests.tenants.sync_helpers import consented_emulator, verified_tenants

pytestmark = pytest.mark.django_db


@pytest.fixture
def emulator(tmp_path_factory):
    with consented_emulator(tmp_path_factory, tenants=1, backlog_per_tenant=5) as emu:
        yield emu


@pytest.fixture
def tenant(portal_on_emulator, emulator) -> Tenant:
    tenant = verified_tenants(emulator, count=1)[0]
    redis = get_redis()
    for key in redis.scan_iter(f"sync:quota:*:{tenant.tenant_id}:*"):
        redis.delete(key)
    return tenant


def used(tenant: Tenant, api: sources.Api) -> int:
    """Calls counted in the tenant's shortest window of ``api``."""
    key = core_quotas.window_keys(str(tenant.tenant_id), api.name, api.quotas)[0]
    return get_redis().zcard(key)


def exhaust(tenant: Tenant, source: str) -> None:
    while tenant_quotas.reserve_api_call(str(tenant.tenant_id), source) == 0:
        pass


def api_requests(emulator, prefix: str) -> list[dict]:
    log = emulator.control("GET", "requests")["requests"]
    return [r for r in log if r["path"].startswith(prefix)]


def an_mde_alert(emulator, tenant: Tenant) -> Alert:
    from alerts import normalize
    from tenants import microsoft

    tid = str(tenant.tenant_id)
    created = emulator.control("POST", "alerts", {"tenant": tid, "source": "mde"})
    raw = microsoft.get_client().get_mde_alert(
        tid, created["result"]["id"], region=tenant.region
    )
    fields = normalize.mde_alert(raw, tenant_id=tid)
    return Alert.objects.create(tenant=tenant, source=Alert.Source.MDE, **fields)


def test_verification_probes_count_in_the_syncs_quota(tenant):
    services.verify_tenant_access(tenant=tenant)

    # One probe per source; Graph's two sources share one quota.
    assert used(tenant, sources.MDE) == 1
    assert used(tenant, sources.XDR) == 1
    assert used(tenant, sources.GRAPH) == 2
    assert used(tenant, sources.MCAS) == 1
    # The sync takes its next call from the same window.
    assert tenant_quotas.reserve_api_call(str(tenant.tenant_id), "mde_alerts") == 0
    assert used(tenant, sources.MDE) == 2


def test_a_probe_out_of_quota_calls_nothing_and_says_why(tenant, emulator, monkeypatch):
    monkeypatch.setattr(tenant_quotas, "MAX_WAIT_SECONDS", 0.0)
    exhaust(tenant, "mcas_alerts")
    emulator.control("DELETE", "requests")

    services.verify_tenant_access(tenant=tenant)

    cap = Capability.objects.get(tenant=tenant, source="mcas_alerts")
    assert cap.status == Capability.Status.ERROR
    assert "allowance of calls to Defender for Cloud Apps alerts" in cap.detail
    assert "30 per 60 s" in cap.detail and "try again after" in cap.detail
    assert not api_requests(emulator, "/mcas/")
    assert Capability.objects.get(tenant=tenant, source="mde_alerts").status == "ok"


def test_triage_reads_and_patches_count_in_the_syncs_quota(tenant, emulator):
    alert = an_mde_alert(emulator, tenant)
    for key in get_redis().scan_iter(f"sync:quota:*:{tenant.tenant_id}:*"):
        get_redis().delete(key)
    action = triage.request_triage(
        actor=None,
        alert=alert,
        based_on_updated_at=alert.updated_at_source,
        changes={"status": "in_progress"},
    )

    action = triage.apply_triage(action=action)

    assert action.status == TriageAction.Status.APPLIED, action.result_detail
    assert used(tenant, sources.MDE) == 2  # the re-read and the PATCH
    assert tenant_quotas.reserve_api_call(str(tenant.tenant_id), "mde_alerts") == 0
    assert used(tenant, sources.MDE) == 3


def test_triage_out_of_quota_sends_nothing_and_is_retried(
    tenant, emulator, monkeypatch
):
    from alerts import tasks as alert_tasks

    alert = an_mde_alert(emulator, tenant)
    action = triage.request_triage(
        actor=None,
        alert=alert,
        based_on_updated_at=alert.updated_at_source,
        changes={"status": "resolved"},
    )
    monkeypatch.setattr(tenant_quotas, "MAX_WAIT_SECONDS", 0.0)
    exhaust(tenant, "mde_alerts")
    emulator.control("DELETE", "requests")

    with pytest.raises(core_quotas.QuotaExhausted) as caught:
        triage.apply_triage(action=action)

    assert 0 < caught.value.retry_after <= 62
    assert "Defender for Endpoint alerts" in caught.value.message
    assert not api_requests(emulator, "/defender/")
    action.refresh_from_db()
    assert action.status == TriageAction.Status.QUEUED
    # The task retries when the quota frees, and says why if it gives up.
    retried = []
    monkeypatch.setattr(
        alert_tasks.write_back_triage,
        "retry",
        lambda countdown: retried.append(countdown) or RuntimeError("retry"),
    )
    with pytest.raises(RuntimeError):
        alert_tasks.write_back_triage(action.pk)
    assert 0 < retried[0] <= 62


def test_a_short_wait_for_the_quota_is_waited_within_the_bound(settings):
    tid = "99999999-0000-4000-8000-000000000001"
    windows = ((1, 1),)
    for key in core_quotas.window_keys(tid, "bounded", windows):
        get_redis().delete(key)
    assert core_quotas.reserve_api_call(tid, "bounded", windows) == 0

    with pytest.raises(core_quotas.QuotaExhausted):
        core_quotas.take_api_call(tid, "bounded", windows, max_wait=0.5, label="x")
    started = time.monotonic()
    core_quotas.take_api_call(tid, "bounded", windows, max_wait=10, label="x")

    assert 0.5 < time.monotonic() - started < 10

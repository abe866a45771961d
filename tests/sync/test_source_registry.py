"""A source added to the registry alone is verified, synced and shown: nothing else in
the portal names a source.

The fake source below reuses Defender for Endpoint's token, roles and payload shape
and lists through a function of this test that calls the emulator's MDE API, but it
has its own key, label, quota group (2 calls a minute), page limit (7) and paging
name; a runner, quota table or check that still branched on source names (or kept a
table keyed by them) fails here.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from django.core import checks
from django.urls import reverse

from alerts.checks import check_every_source_has_a_normaliser
from alerts.models import Alert
from core.redis import get_redis
from sync import runner
from sync.checks import check_every_source_has_a_paging_strategy
from sync.models import SyncState
from tenants import services as tenant_services
from tenants.microsoft import sources
from tenants.models import Capability, Tenant
from tests.factories import UserFactory
from tests.tenants.sync_helpers import consented_emulator, verified_tenants

FAKE_API = sources.Api("fake_api", ((60, 2),), "https://example.invalid/quotas")


def fake_source(calls: list, **changes) -> sources.Source:
    mde = sources.get("mde_alerts")

    def list_page(client, request: sources.PageRequest):
        calls.append(request)
        return client.list_mde_alerts(
            request.facts.tenant_id,
            since=request.since,
            top=request.top,
            skip=request.skip,
            region=request.facts.region,
        )

    fields = {
        "key": "fake_alerts",
        "label": "Fake test alerts",
        "api": FAKE_API,
        "resource": mde.resource,
        "read_roles": mde.read_roles,
        "write_roles": mde.write_roles,
        "docs": "https://example.invalid/fake-alerts",
        "page_limit": 7,
        "paging": "updated_oldest_first",
        "list_page": list_page,
        "payload": "mde_alert",
        "row_source": "mde",
    }
    fields.update(changes)
    return sources.Source(**fields)


@contextmanager
def registered(source: sources.Source):
    sources.register(source)
    try:
        yield source
    finally:
        sources.unregister(source.key)


@pytest.fixture
def emulator(tmp_path_factory):
    with consented_emulator(tmp_path_factory, tenants=1, backlog_per_tenant=40) as emu:
        yield emu


@pytest.fixture
def tenant(db, portal_on_emulator, emulator) -> Tenant:
    # Verified for the real sources only, with no sync run yet: every MDE-shaped row
    # stored below comes from the fake source.
    return verified_tenants(emulator, sources=("graph_alerts",), count=1)[0]


def test_a_registered_source_is_checked_synced_and_shown(tenant, client, settings):
    settings.SYNC_PAGE_SIZE = 1000
    calls: list[sources.PageRequest] = []
    tid = str(tenant.tenant_id)
    redis = get_redis()
    for key in redis.scan_iter(f"sync:quota:*:fake_api:{tid}:*"):
        redis.delete(key)

    with registered(fake_source(calls)):
        # (a) Verification probes it and records its capability.
        tenant_services.verify_tenant_access(tenant=tenant)
        cap = Capability.objects.get(tenant=tenant, source="fake_alerts")
        assert cap.status == Capability.Status.OK
        assert "Alert.Read.All" in cap.granted_roles
        assert calls[0].top == 1 and calls[0].since is None  # the probe
        calls.clear()
        # The probe took its call from the quota the sync uses; start (b) afresh.
        (probe_key,) = redis.scan_iter(f"sync:quota:*:fake_api:{tid}:60")
        assert redis.zcard(probe_key) == 1
        redis.delete(probe_key)

        # (b) The runner syncs it: its page limit, its paging, its quota group.
        state = SyncState.objects.get(tenant=tenant, source="fake_alerts")
        result = runner.sync_source(sync_state_id=state.pk)
        assert result.outcome == "throttled"  # our own quota: 2 calls, then wait
        assert result.pages == 2
        assert [c.top for c in calls] == [7, 7]
        assert calls[1].since > calls[0].since  # paged by update time
        stored = Alert.objects.filter(tenant=tenant, source="mde")
        assert stored.count() == 14
        state.refresh_from_db()
        newest = max(stored.values_list("updated_at_source", flat=True))
        assert state.cursor == newest > calls[1].since
        assert state.throttled_until is not None
        (quota_key,) = redis.scan_iter(f"sync:quota:*:fake_api:{tid}:60")
        assert redis.zcard(quota_key) == 2

        # (c) Tenant health lists it under its label.
        client.force_login(UserFactory(username="root", is_superuser=True))
        page = client.get(reverse("sync:tenant_health")).content.decode()
        assert "Fake test alerts" in page
        assert str(cap).endswith("Fake test alerts Connected")

    assert "fake_alerts" not in sources.SOURCES


def test_a_source_without_needed_tenant_facts_is_not_configured(tenant):
    calls: list = []
    tenant.mcas_url = ""
    tenant.save()
    needy = fake_source(
        calls, needs=("mcas_url",), needs_hint="Enter the fake portal's URL."
    )
    with registered(needy):
        tenant_services.verify_tenant_access(tenant=tenant)
        cap = Capability.objects.get(tenant=tenant, source="fake_alerts")
    assert cap.status == Capability.Status.NOT_CONFIGURED
    assert cap.detail == "Enter the fake portal's URL."
    assert calls == []


def test_the_system_check_names_a_source_whose_payload_has_no_normaliser():
    assert check_every_source_has_a_normaliser() == []
    with registered(fake_source([], payload="no_such_shape")):
        errors = check_every_source_has_a_normaliser()
        assert [e.id for e in errors] == ["alerts.E001"]
        assert "fake_alerts" in errors[0].msg and "no_such_shape" in errors[0].msg
        # Registered with Django: `manage.py check` reports it.
        assert "alerts.E001" in {e.id for e in checks.run_checks()}
    assert "alerts.E001" not in {e.id for e in checks.run_checks()}


def test_the_system_check_names_a_source_whose_paging_the_runner_lacks():
    assert check_every_source_has_a_paging_strategy() == []
    with registered(fake_source([], paging="sideways")):
        errors = check_every_source_has_a_paging_strategy()
        assert [e.id for e in errors] == ["sync.E001"]
        assert "fake_alerts" in errors[0].msg and "sideways" in errors[0].msg
        assert "sync.E001" in {e.id for e in checks.run_checks()}
    assert "sync.E001" not in {e.id for e in checks.run_checks()}

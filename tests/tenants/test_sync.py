"""The sync service, called as plain functions, against the emulator over HTTPS."""

from __future__ import annotations

import importlib
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alerts import normalize, storage
from alerts.models import Alert, AlertChange, Incident
from sync import runner
from sync import services as sync_services
from sync.models import SyncRun, SyncState
from tenants import quotas
from tenants.microsoft import schemas
from tenants.models import Tenant
from tests.tenants.sync_helpers import consented_emulator, differences, verified_tenants


@pytest.fixture
def emulator(tmp_path_factory):
    with consented_emulator(tmp_path_factory, tenants=2, backlog_per_tenant=120) as emu:
        yield emu


@pytest.fixture
def tenant(db, portal_on_emulator, emulator) -> Tenant:
    return verified_tenants(emulator, count=1)[0]


def state_of(tenant: Tenant, source: str) -> SyncState:
    return SyncState.objects.get(tenant=tenant, source=source)


def sync_all(tenant: Tenant) -> dict[str, runner.SyncResult]:
    return {
        s.source: runner.sync_source(sync_state_id=s.pk)
        for s in SyncState.objects.filter(tenant=tenant)
    }


def alert_row(provider_id: str, updated, **fields) -> dict:
    row = {
        "source": "mde",
        "provider_id": provider_id,
        "title": "t",
        "description": "",
        "severity": "low",
        "status": "new",
        "category": "",
        "classification": "",
        "determination": "",
        "assigned_to": "",
        "created_at_source": updated,
        "updated_at_source": updated,
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
        "raw": {"id": provider_id, "v": str(updated)},
    }
    row.update(fields)
    return row


# --- upsert ---------------------------------------------------------------------------


def test_newer_copy_wins_and_its_changes_are_recorded(tenant):
    t0 = timezone.now() - timedelta(hours=1)
    storage.upsert_alerts(tenant.pk, [alert_row("a1", t0)])
    created, updated, _ = storage.upsert_alerts(
        tenant.pk,
        [
            alert_row(
                "a1", t0 + timedelta(seconds=1), status="resolved", assigned_to="x"
            )
        ],
    )
    assert (created, updated) == (0, 1)
    alert = Alert.objects.get(provider_id="a1")
    assert alert.status == "resolved"
    change = AlertChange.objects.get(alert=alert)
    assert change.changes == {"status": ["new", "resolved"], "assigned_to": ["", "x"]}


def test_older_copy_never_overwrites_a_newer_one(tenant):
    t0 = timezone.now() - timedelta(hours=1)
    storage.upsert_alerts(tenant.pk, [alert_row("a1", t0, status="resolved")])
    created, updated, _ = storage.upsert_alerts(
        tenant.pk, [alert_row("a1", t0 - timedelta(seconds=5), status="new")]
    )
    assert (created, updated) == (0, 0)
    assert Alert.objects.get(provider_id="a1").status == "resolved"
    assert not AlertChange.objects.exists()


def test_same_copy_again_changes_nothing_and_one_page_may_hold_an_alert_twice(tenant):
    t0 = timezone.now() - timedelta(hours=1)
    rows = [alert_row("a1", t0), alert_row("a1", t0 + timedelta(seconds=1), title="n")]
    assert storage.upsert_alerts(tenant.pk, rows)[:2] == (1, 0)
    assert Alert.objects.get(provider_id="a1").title == "n"
    assert storage.upsert_alerts(tenant.pk, rows)[:2] == (0, 0)


def test_a_page_of_new_and_known_alerts_inserts_the_new_and_updates_the_known(tenant):
    t0 = timezone.now() - timedelta(hours=1)
    storage.upsert_alerts(tenant.pk, [alert_row("a1", t0), alert_row("a2", t0)])
    first = {a.provider_id: a for a in Alert.objects.filter(tenant=tenant)}
    later = t0 + timedelta(seconds=1)
    created, updated, written = storage.upsert_alerts(
        tenant.pk,
        [
            alert_row("a1", later, status="resolved"),  # known, newer
            alert_row("a2", t0 - timedelta(seconds=1)),  # known, older: ignored
            alert_row("a3", later, title="new one", raw={"id": "a3", "n": 1}),
        ],
    )
    assert (created, updated) == (1, 1)
    stored = {a.provider_id: a for a in Alert.objects.filter(tenant=tenant)}
    assert sorted((w.provider_id, w.id) for w in written) == [
        ("a1", first["a1"].pk),
        ("a3", stored["a3"].pk),
    ]
    new = stored["a3"]
    assert (new.title, new.raw, new.updated_at_source) == (
        "new one",
        {"id": "a3", "n": 1},
        later,
    )
    assert new.code not in (first["a1"].code, first["a2"].code)
    with connection.cursor() as cursor:  # the test's transaction: now() stands still
        cursor.execute("SELECT now()")
        assert new.first_seen_at == new.last_synced_at == cursor.fetchone()[0]
    assert stored["a1"].first_seen_at == first["a1"].first_seen_at
    assert list(AlertChange.objects.values_list("alert__provider_id", "changes")) == [
        ("a1", {"status": ["new", "resolved"]})
    ]
    # The search column is kept for rows COPY'd in as for upserted ones.
    assert Alert.objects.filter(pk=new.pk, search_vector="new").exists()


# --- runs -----------------------------------------------------------------------------


def test_payloads_keep_integers_beyond_64_bits_and_nan_becomes_null(tenant):
    t0 = timezone.now()
    big = {"id": "big", "n": 2**70, "small": -(2**63), "text": "é\u2028"}
    nan = {"id": "nan", "x": float("nan")}
    storage.upsert_alerts(
        tenant.pk, [alert_row("big", t0, raw=big), alert_row("nan", t0, raw=nan)]
    )
    assert Alert.objects.get(tenant=tenant, provider_id="big").raw == big
    assert Alert.objects.get(tenant=tenant, provider_id="nan").raw == {
        "id": "nan",
        "x": None,
    }


def test_a_nul_character_in_an_alert_is_replaced_and_its_page_kept(tenant, emulator):
    # PostgreSQL stores no NUL in text or jsonb: it failed the page on every try.
    made = emulator.control(
        "POST",
        "alerts",
        {
            "tenant": str(tenant.tenant_id),
            "source": "mde",
            "fields": {"title": "Run\x00key", "description": "a\x00b"},
        },
    )["result"]
    results = sync_all(tenant)
    assert {r.outcome for r in results.values()} == {"ok"}, results
    assert differences(emulator, tenant) == {}
    for source in ("mde", "graph", "xdr"):
        alert = Alert.objects.get(tenant=tenant, source=source, provider_id=made["id"])
        assert alert.title == "Run\ufffdkey"
        assert "a\ufffdb" in alert.description
    mde = Alert.objects.get(tenant=tenant, source="mde", provider_id=made["id"])
    assert mde.raw["title"] == "Run\ufffdkey"


def test_first_sync_equals_the_ground_truth_and_links_duplicates(tenant, emulator):
    results = sync_all(tenant)
    assert {r.outcome for r in results.values()} == {"ok"}, results
    assert differences(emulator, tenant) == {}
    # An MDE alert is also a Graph alert and an XDR alert: MDE's copy is the primary.
    mde = Alert.objects.filter(tenant=tenant, source="mde")
    assert mde.exists()
    for alert in mde[:20]:
        copies = Alert.objects.filter(tenant=tenant, provider_id=alert.provider_id)
        assert {c.source for c in copies} == {"mde", "graph", "xdr"}
        assert all(c.duplicate_of_id == alert.pk for c in copies if c.pk != alert.pk)
    # A Cloud Apps alert's primary is its Graph copy (it carries update times).
    for alert in Alert.objects.filter(tenant=tenant, source="mcas")[:10]:
        assert alert.duplicate_of.source == "graph"
        assert alert.duplicate_of.raw["providerAlertId"] == alert.provider_id
    # One primary per alert of the tenant.
    truth = emulator.control(
        "GET", "ground-truth", tenant=str(tenant.tenant_id), source="graph"
    )["result"]
    primaries = Alert.objects.filter(tenant=tenant, duplicate_of__isnull=True)
    assert primaries.count() == len(truth)
    # Alerts point at their incident: one row per incident, seen in XDR and Graph.
    linked = Alert.objects.filter(tenant=tenant, source="mde", incident__isnull=False)
    assert linked.count() == mde.count()
    incidents = Incident.objects.filter(tenant=tenant)
    assert incidents.count() == len(set(incidents.values_list("provider_id")))
    assert all(set(i.seen_in) == {"xdr", "graph"} for i in incidents)
    assert not Alert.objects.filter(tenant=tenant, incident__isnull=True).exclude(
        incident_provider_id=""
    )
    # Each alert has a code of its own, made by the database's default.
    codes = list(Alert.objects.filter(tenant=tenant).values_list("code", flat=True))
    assert None not in codes and len(set(codes)) == len(codes)


def test_run_twice_same_result(tenant, emulator):
    emulator.control("POST", "clock/freeze", {"frozen": True})
    sync_all(tenant)
    before = (
        Alert.objects.count(),
        Incident.objects.count(),
        AlertChange.objects.count(),
    )
    again = sync_all(tenant)
    assert all(r.created == 0 and r.updated == 0 for r in again.values()), again
    after = (
        Alert.objects.count(),
        Incident.objects.count(),
        AlertChange.objects.count(),
    )
    assert before == after
    assert differences(emulator, tenant) == {}


def test_cursor_comes_from_the_data_and_the_next_run_rereads_the_overlap(
    tenant, emulator, settings
):
    state = state_of(tenant, "mde_alerts")
    runner.sync_source(sync_state_id=state.pk)
    state.refresh_from_db()
    newest = max(
        Alert.objects.filter(tenant=tenant, source="mde").values_list(
            "updated_at_source", flat=True
        )
    )
    assert state.cursor == newest
    emulator.control("DELETE", "requests")
    runner.sync_source(sync_state_id=state.pk)
    calls = [
        r for r in emulator.control("GET", "requests")["requests"]
        if r["path"].endswith("/api/alerts")
    ]  # fmt: skip
    asked = parse_qs(urlsplit("?" + calls[0]["query"]).query)["$filter"][0]
    since = normalize.parse_time(asked.split(" ge ")[1])
    assert since == newest - timedelta(seconds=settings.SYNC_OVERLAP_SECONDS)


def test_changes_are_picked_up_on_the_next_run(tenant, emulator):
    sync_all(tenant)
    emulator.control(
        "POST", "alerts/update", {"n": 40, "tenant": str(tenant.tenant_id)}
    )
    added = emulator.control(
        "POST", "alerts", {"tenant": str(tenant.tenant_id), "source": "mde"}
    )["result"]
    sync_all(tenant)
    assert differences(emulator, tenant) == {}
    assert Alert.objects.filter(provider_id=added["id"], source="mde").exists()
    assert AlertChange.objects.exists()


def test_a_held_lease_keeps_a_second_run_out(tenant, emulator):
    state = state_of(tenant, "mde_alerts")
    SyncState.objects.filter(pk=state.pk).update(
        lease_owner="someone-else", lease_until=timezone.now() + timedelta(minutes=1)
    )
    emulator.control("DELETE", "requests")
    assert runner.sync_source(sync_state_id=state.pk).outcome == "busy"
    assert not SyncRun.objects.exists()
    assert not emulator.control("GET", "requests")["requests"]
    # An expired lease is taken over.
    SyncState.objects.filter(pk=state.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )
    assert runner.sync_source(sync_state_id=state.pk).outcome == "ok"


def test_a_run_that_lost_its_lease_writes_nothing(tenant, monkeypatch):
    state = state_of(tenant, "mde_alerts")
    real = runner._Runner._normalise

    def steal_lease(self, items):
        SyncState.objects.filter(pk=state.pk).update(lease_owner="thief")
        return real(self, items)

    monkeypatch.setattr(runner._Runner, "_normalise", steal_lease)
    assert runner.sync_source(sync_state_id=state.pk).outcome == "lease_lost"
    assert not Alert.objects.exists()
    state.refresh_from_db()
    assert state.cursor is None


def test_a_lease_lost_while_the_next_page_is_fetched_keeps_only_saved_pages(
    tenant, settings, monkeypatch
):
    settings.SYNC_PAGE_SIZE = 25
    state = state_of(tenant, "mde_alerts")
    real = runner._Runner._normalise
    calls = []

    def steal_lease_on_second_page(self, items):
        calls.append(len(items))
        if len(calls) == 2:
            SyncState.objects.filter(pk=state.pk).update(lease_owner="thief")
        return real(self, items)

    monkeypatch.setattr(runner._Runner, "_normalise", steal_lease_on_second_page)
    assert runner.sync_source(sync_state_id=state.pk).outcome == "lease_lost"
    # The first page is saved with its cursor; the second (and the third, fetched
    # ahead meanwhile) are not.
    saved = Alert.objects.filter(tenant=tenant, source="mde")
    assert saved.count() == 25
    state.refresh_from_db()
    assert state.cursor == max(saved.values_list("updated_at_source", flat=True))


def test_an_error_fetching_ahead_surfaces_after_the_current_page_is_saved(
    tenant, settings, monkeypatch
):
    settings.SYNC_PAGE_SIZE = 25
    state = state_of(tenant, "mde_alerts")
    real = runner._Runner._request
    calls = []

    def throttle_the_second_page(self, **kwargs):
        calls.append(kwargs)
        if len(calls) == 2:
            raise schemas.Throttled(9)
        return real(self, **kwargs)

    monkeypatch.setattr(runner._Runner, "_request", throttle_the_second_page)
    result = runner.sync_source(sync_state_id=state.pk)
    assert result.outcome == "throttled" and result.retry_after == 9
    assert result.pages == 1
    saved = Alert.objects.filter(tenant=tenant, source="mde")
    assert saved.count() == 25
    state.refresh_from_db()
    assert state.cursor == max(saved.values_list("updated_at_source", flat=True))
    # The page asked for ahead starts at the first page's newest time.
    assert calls[1]["since"] == state.cursor


def test_pages_are_bounded_and_a_run_with_progress_queues_the_next(
    tenant, emulator, settings, django_capture_on_commit_callbacks
):
    settings.SYNC_PAGE_SIZE = 25
    settings.SYNC_MAX_PAGES_PER_RUN = 2
    state = state_of(tenant, "mde_alerts")
    with django_capture_on_commit_callbacks() as callbacks:
        result = runner.sync_source(sync_state_id=state.pk)
    assert result.outcome == "more"
    assert result.pages == 2
    assert len(callbacks) == 1  # the next run, queued on commit
    state.refresh_from_db()
    assert state.next_due_at <= timezone.now()
    while runner.sync_source(sync_state_id=state.pk).outcome == "more":
        pass
    assert "mde" not in differences(emulator, tenant)


def test_small_pages_lose_nothing_while_alerts_change(tenant, emulator, settings):
    settings.SYNC_PAGE_SIZE = 10
    tid = str(tenant.tenant_id)
    for _ in range(6):
        emulator.control("POST", "alerts/update", {"n": 15, "tenant": tid})
        for state in SyncState.objects.filter(tenant=tenant):
            runner.sync_source(sync_state_id=state.pk)
    for _ in range(3):
        for state in SyncState.objects.filter(tenant=tenant):
            while runner.sync_source(sync_state_id=state.pk).outcome == "more":
                pass
    assert differences(emulator, tenant) == {}


# --- failures -------------------------------------------------------------------------


def test_throttling_is_recorded_and_the_source_waits(tenant, emulator):
    emulator.control(
        "POST",
        "faults/api",
        {
            "tenant": str(tenant.tenant_id),
            "profile": {"script": [{"kind": "429", "count": 1}], "retry_after": 7},
        },
    )
    state = state_of(tenant, "mde_alerts")
    result = runner.sync_source(sync_state_id=state.pk)
    assert result.outcome == "throttled"
    assert result.retry_after == 7
    state.refresh_from_db()
    assert state.throttled_until > timezone.now() + timedelta(seconds=5)
    assert "throttling" in state.last_error
    assert state.pk not in sync_services.dispatch_due_syncs()


def test_revoked_consent_marks_the_tenant_and_stops_its_syncs(tenant, emulator):
    emulator.control("POST", f"tenants/{tenant.tenant_id}/revoke")
    state = state_of(tenant, "mde_alerts")
    result = runner.sync_source(sync_state_id=state.pk)
    assert result.outcome == "failed"
    tenant.refresh_from_db()
    assert tenant.state == Tenant.State.REVOKED
    state.refresh_from_db()
    assert "consent" in state.last_error
    SyncState.objects.update(next_due_at=timezone.now())
    assert sync_services.dispatch_due_syncs() == []


def test_server_errors_back_off_and_show_in_words(tenant, emulator):
    emulator.control(
        "POST",
        "faults/api",
        {"tenant": str(tenant.tenant_id), "profile": {"rates": {"503": 1.0}}},
    )
    state = state_of(tenant, "mde_alerts")
    result = runner.sync_source(sync_state_id=state.pk)
    assert result.outcome == "failed"
    state.refresh_from_db()
    assert state.consecutive_failures == 1
    assert "did not answer properly" in state.last_error
    assert state.next_due_at > timezone.now() + timedelta(seconds=30)
    run = SyncRun.objects.get(sync=state)
    assert run.outcome == "failed" and run.error == state.last_error


# --- scheduling -----------------------------------------------------------------------


def test_dispatch_queues_each_due_source_once(
    tenant, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        first = sync_services.dispatch_due_syncs()
    assert sorted(first) == sorted(
        SyncState.objects.filter(tenant=tenant).values_list("pk", flat=True)
    )
    assert len(callbacks) == len(first)
    # A second beat right after finds nothing due: no duplicate enqueues.
    assert sync_services.dispatch_due_syncs() == []


def test_dispatch_skips_sources_that_are_not_connected(tenant):
    tenant.capabilities.filter(source="mcas_alerts").update(status="not_licensed")
    due = sync_services.dispatch_due_syncs()
    assert state_of(tenant, "mcas_alerts").pk not in due
    assert state_of(tenant, "mde_alerts").pk in due


def test_client_side_quota_stops_at_the_documented_limit(tenant):
    tid = str(tenant.tenant_id)
    assert all(quotas.reserve_api_call(tid, "mcas_alerts") == 0 for _ in range(30))
    wait = quotas.reserve_api_call(tid, "mcas_alerts")
    assert 0 < wait <= 62
    # Another tenant's quota is its own.
    other = "11111111-2222-3333-4444-555555555555"
    assert quotas.reserve_api_call(other, "mcas_alerts") == 0


def test_a_source_out_of_quota_yields_without_waiting(tenant, emulator):
    tid = str(tenant.tenant_id)
    while quotas.reserve_api_call(tid, "mde_alerts") == 0:
        pass
    emulator.control("DELETE", "requests")
    state = state_of(tenant, "mde_alerts")
    result = runner.sync_source(sync_state_id=state.pk)
    assert result.outcome == "throttled"
    assert not emulator.control("GET", "requests")["requests"]
    state.refresh_from_db()
    assert state.throttled_until > timezone.now()
    assert state.last_error == ""


LONG_COLUMNS = importlib.import_module(
    "tenants.migrations.0012_alert_text_columns_lz4"
).COLUMNS


def test_payloads_are_compressed_with_lz4_where_the_server_has_it(db):
    has_lz4 = importlib.import_module(
        "tenants.migrations.0010_raw_payloads_lz4"
    ).has_lz4
    with connection.cursor() as cursor:
        if not has_lz4(cursor):
            pytest.skip("this PostgreSQL was built without lz4; payloads keep pglz")
        cursor.execute(
            "SELECT attrelid::regclass::text, attcompression FROM pg_attribute"
            " WHERE attname = 'raw' AND attrelid IN"
            " ('tenants_alert'::regclass, 'tenants_incident'::regclass)"
        )
        assert sorted(cursor.fetchall()) == [
            ("tenants_alert", "l"),
            ("tenants_incident", "l"),
        ]
        # And an alert's other long columns (0012).
        cursor.execute(
            "SELECT attname, attcompression FROM pg_attribute"
            " WHERE attrelid = 'tenants_alert'::regclass AND attname = ANY(%s)",
            [list(LONG_COLUMNS)],
        )
        assert dict(cursor.fetchall()) == dict.fromkeys(LONG_COLUMNS, "l")


def test_alerts_no_other_source_holds_are_linked_without_reading_them_back(tenant):
    t0 = timezone.now() - timedelta(hours=1)
    rows = [alert_row(f"da{i}", t0) for i in range(3)]
    written = storage.upsert_alerts(tenant.pk, rows)[2]
    with CaptureQueriesContext(connection) as queries:
        storage.link_alerts(tenant.pk, written=written, incident_ids=[])
    member_reads = [q for q in queries if '"duplicate_of_id"' in q["sql"]]
    assert member_reads == [], "a page of alerts alone read its rows back"
    # Once Graph holds a copy, the copies are linked: the MDE one is the primary.
    graph = storage.upsert_alerts(tenant.pk, [alert_row("da1", t0, source="graph")])[2]
    storage.link_alerts(tenant.pk, written=graph, incident_ids=[])
    later = t0 + timedelta(seconds=1)
    again = storage.upsert_alerts(tenant.pk, [alert_row("da1", later, title="newer")])[
        2
    ]
    assert len(again) == 1
    storage.link_alerts(tenant.pk, written=again, incident_ids=[])
    copies = dict(
        Alert.objects.filter(provider_id="da1").values_list("source", "duplicate_of")
    )
    primary = Alert.objects.get(provider_id="da1", source="mde")
    assert copies == {"mde": None, "graph": primary.pk}

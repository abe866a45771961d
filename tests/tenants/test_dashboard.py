"""The dashboard with the Django test client: scope, filters, keyset, 400s, CSP,
query counts, hostile content, triage requests and Microsoft staff sign-in."""

import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import StaffIdentity
from alerts import keyset, queue, triage
from alerts.models import Alert, AlertChange, TriageAction
from core import services as core_services
from tenants.models import Customer, Tenant
from tests.factories import (
    AlertFactory,
    CapabilityFactory,
    CustomerFactory,
    IncidentFactory,
    SyncStateFactory,
    TenantFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db
NOW = timezone.now()


@pytest.fixture
def analyst():
    return UserFactory(username="ana")


@pytest.fixture
def world(analyst):
    """Two customers; the analyst is assigned to one of them only."""
    mine = TenantFactory(customer=CustomerFactory(name="Mine Ltd", staff=[analyst]))
    theirs = TenantFactory(customer=CustomerFactory(name="Theirs Inc"))
    incident = IncidentFactory(tenant=mine)
    alert = AlertFactory(tenant=mine, title="Mine alert", incident=incident)
    AlertFactory(tenant=mine, title="Sibling alert", incident=incident)
    other = AlertFactory(tenant=theirs, title="Their alert")
    other_incident = IncidentFactory(tenant=theirs, title="Their incident")
    return {
        "mine": mine,
        "theirs": theirs,
        "alert": alert,
        "other": other,
        "incident": incident,
        "other_incident": other_incident,
    }


def page_urls(world) -> list[str]:
    return [
        reverse("alerts:overview"),
        reverse("alerts:queue"),
        reverse("alerts:queue_export"),
        reverse("alerts:incident_list"),
        reverse("sync:tenant_health"),
        reverse("alerts:alert_detail", kwargs={"code": world["alert"].code}),
        reverse("alerts:incident_detail", kwargs={"code": world["incident"].code}),
    ]


def test_every_dashboard_view_sends_anonymous_visitors_to_sign_in(client, world):
    for url in page_urls(world):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/"), url
    triage_url = reverse("alerts:alert_triage", kwargs={"code": world["alert"].code})
    assert client.post(triage_url)["Location"].startswith("/accounts/login/")


def test_staff_without_access_get_404_for_anything_outside_their_scope(client, world):
    outsider = UserFactory(username="outsider")
    client.force_login(outsider)
    for url in page_urls(world)[-2:]:
        assert client.get(url).status_code == 404, url
    assert client.get(url, HTTP_HX_REQUEST="true").status_code == 404
    triage_url = reverse("alerts:alert_triage", kwargs={"code": world["alert"].code})
    assert client.post(triage_url, {"status": "resolved"}).status_code == 404
    customer = world["mine"].customer.code
    queue = reverse("alerts:queue")
    assert client.get(queue, {"customer": customer}).status_code == 404
    export = reverse("alerts:queue_export")
    assert client.get(export, {"customer": customer}).status_code == 404
    # Lists answer, but show nothing of anyone.
    for url in page_urls(world)[:5]:
        body = client.get(url).content.decode()
        for text in ("Mine alert", "Their alert", "Mine Ltd", "Theirs Inc"):
            assert text not in body, (url, text)


def test_staff_see_their_customers_directly_or_through_a_group(client, world):
    group_member = UserFactory(username="grouped")
    group = Group.objects.create(name="night shift")
    group_member.groups.add(group)
    world["theirs"].customer.staff_groups.add(group)
    client.force_login(group_member)
    body = client.get(reverse("alerts:queue")).content.decode()
    assert "Their alert" in body
    assert "Mine alert" not in body
    detail = reverse("alerts:alert_detail", kwargs={"code": world["other"].code})
    assert client.get(detail).status_code == 200
    mine = reverse("alerts:alert_detail", kwargs={"code": world["alert"].code})
    assert client.get(mine).status_code == 404


def test_superusers_see_every_customer(client, world):
    client.force_login(UserFactory(username="root", is_superuser=True))
    body = client.get(reverse("alerts:queue")).content.decode()
    assert "Mine alert" in body
    assert "Their alert" in body


def test_queue_hides_duplicates_and_filters_by_everything(client, world, analyst):
    mine = world["mine"]
    now = timezone.now()
    AlertFactory(
        tenant=mine, title="Graph copy", source="graph", duplicate_of=world["alert"]
    )
    AlertFactory(
        tenant=mine,
        title="Old resolved low",
        severity="low",
        status="resolved",
        category="Persistence",
        updated_at_source=now - timedelta(days=3),
    )
    AlertFactory(
        tenant=mine,
        title="Assigned high",
        severity="high",
        assigned_to=analyst.email,
        entities_text="dc01.contoso.example e3b0c44298fc1c149afbf4c8996fb924",
    )
    client.force_login(analyst)
    queue = reverse("alerts:queue")

    def titles(**params) -> set[str]:
        response = client.get(queue, params)
        assert response.status_code == 200, response.content[:500]
        return {a.title for a in response.context["page"].alerts}

    everything = {"Mine alert", "Sibling alert", "Old resolved low", "Assigned high"}
    assert titles() == everything
    assert titles(severity="high") == {"Assigned high"}
    assert titles(severity=["high", "low"]) == {"Assigned high", "Old resolved low"}
    assert titles(status="resolved") == {"Old resolved low"}
    assert titles(category="persistence") == {"Old resolved low"}
    assert titles(assigned="me") == {"Assigned high"}
    assert "Assigned high" not in titles(assigned="unassigned")
    assert "Old resolved low" not in titles(range="24h")
    assert titles(source="graph") == set()
    assert titles(customer=str(mine.customer.code)) == everything
    # Free text: title, description and entities (host names, hashes, ...).
    assert titles(q="DC01.contoso") == {"Assigned high"}
    assert titles(q="e3b0c44298fc") == {"Assigned high"}
    assert titles(q="encoded command") == everything
    assert titles(q="Sibling") == {"Sibling alert"}
    # % and _ are no wildcards: punctuation only separates words.
    assert titles(q="e3b0c44298fc%") == {"Assigned high"}
    assert titles(q="e3b0_c44298fc") == set()
    # Beside a search, the other filters are spelled `= ANY(...)` (EqualsAny).
    assert titles(q="encoded command", severity=["high", "low"]) == {
        "Assigned high",
        "Old resolved low",
    }
    assert titles(q="encoded command", status="resolved") == {"Old resolved low"}
    assert titles(q="encoded command", status=["new", "resolved"]) == everything
    assert titles(q="encoded command", source="graph") == set()


def test_queue_rows_show_times_ages_and_names(client, analyst):
    """The row's cells as the table prints them: created to the minute, updated to
    the second (UTC), the age from the creation time, or from when we first saw an
    alert without one; a tenant without a display name by its tenant id."""
    customer = CustomerFactory(name="Rows & Co", staff=[analyst])
    named = TenantFactory(customer=customer, display_name="contoso.example")
    unnamed = TenantFactory(customer=customer, display_name="")
    now = timezone.now()
    dated = AlertFactory(
        tenant=named,
        title="Dated",
        created_at_source=(now - timedelta(days=3, hours=2)).replace(
            hour=7, minute=5, second=9
        ),
        updated_at_source=(now - timedelta(days=1)).replace(
            hour=23, minute=59, second=58
        ),
    )
    undated = AlertFactory(tenant=unnamed, title="Undated", created_at_source=None)
    Alert.objects.filter(pk=undated.pk).update(first_seen_at=now - timedelta(hours=5))
    client.force_login(analyst)
    body = client.get(reverse("alerts:queue")).content.decode()

    def cells(alert) -> list[str]:
        row = re.search(rf'<tr [^>]*data-alert="{alert.code}">(.*?)</tr>', body, re.S)
        assert row, alert.title
        return [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(
            r"<td[^>]*>(.*?)</td>", row.group(1), re.S
        )]  # fmt: skip

    title, customer_name, tenant, _, _, _, created, updated, age = cells(dated)[2:]
    assert (title, customer_name, tenant) == (
        "Dated",
        "Rows &amp; Co",
        named.display_name,
    )
    assert created == f"{dated.created_at_source:%m-%d} 07:05"
    assert updated == f"{dated.updated_at_source:%m-%d} 23:59:58"
    assert age == f"{(now - dated.created_at_source).days}d"
    tenant, created, age = (cells(undated)[i] for i in (4, 8, 10))
    assert tenant == str(unnamed.tenant_id)
    assert (created, age) == ("—", "5h")


def test_queue_search_finds_whole_words_and_word_starts(client, analyst):
    tenant = TenantFactory(customer=CustomerFactory(staff=[analyst]))
    AlertFactory(
        tenant=tenant,
        title="Suspicious LSASS memory access",
        description="Credential theft attempt.",
        entities_text=(
            "FIN-WS-0142.corp.contoso.com CONTOSO\\svc_backup alice@contoso.com "
            "10.20.30.40 https://evil.example/payload.ps1 "
            "44d88612fea8a8f36de82e1278abb02f"
        ),
    )
    AlertFactory(tenant=tenant, title="Other", entities_text="10.20.30.4 fin-ws-9")
    client.force_login(analyst)

    def titles(q: str) -> set[str]:
        response = client.get(reverse("alerts:queue"), {"q": q})
        assert response.status_code == 200, response.content[:500]
        return {a.title for a in response.context["page"].alerts}

    lsass = {"Suspicious LSASS memory access"}
    # A host name, whole or its start, any case; a part of it between dots.
    assert titles("fin-ws-0142.corp.contoso.com") == lsass
    assert titles("FIN-WS-01") == lsass
    assert titles("contoso") == lsass
    # An IP; its last number also as the start of a longer one, unless it is a
    # single digit (10.20.30.4 is not 10.20.30.40).
    assert titles("10.20.30.40") == lsass
    assert titles("10.20.30.4") == {"Other"}
    assert titles("10.20.30") == {"Suspicious LSASS memory access", "Other"}
    # User names (down-level and UPN), a hash or its start, a URL, title words.
    assert titles("CONTOSO\\svc_backup") == lsass
    assert titles("svc_backup") == lsass
    assert titles("alice@contoso.com") == lsass
    assert titles("44D88612FEA8") == lsass
    assert titles("evil.example/payload.ps1") == lsass
    assert titles("lsass memory") == lsass
    assert titles("credential") == lsass
    # Every word must match, in any field; a word is not found from its middle.
    assert titles("lsass 10.20.30.40") == lsass
    assert titles("other 10.20.30.4") == {"Other"}
    assert titles("lsass fin-ws-9") == set()
    assert titles("ontoso") == set()
    assert titles("4d88612fea8") == set()


def test_search_asks_the_index_for_rare_words_and_checks_the_phrase(
    client, analyst, monkeypatch
):
    tenant = TenantFactory(customer=CustomerFactory(staff=[analyst]))
    # 60 hosts: each host's number is in under 5% of alerts, hence rare.
    for i in range(60):
        AlertFactory(
            tenant=tenant,
            title=f"Alert {i}",
            entities_text=f"ws-{i:04d}.corp.example 10.0.{i}.7",
        )
    # Words the host names share in reverse order: every word is there, not the phrase.
    AlertFactory(tenant=tenant, title="Reversed", entities_text="0017 ws corp")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE tenants_alert")
    monkeypatch.setattr(queue, "_common_words", (0.0, frozenset()))
    assert {"ws", "corp", "example", "10", "0", "7"} <= queue.common_words()
    client.force_login(analyst)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("alerts:queue"), {"q": "WS-0017.corp"})
    assert {a.title for a in response.context["page"].alerts} == {"Alert 17"}
    assert any("ts_match_vq" in q["sql"] for q in queries.captured_queries)
    response = client.get(reverse("alerts:queue"), {"q": "10.0.17.7"})
    assert {a.title for a in response.context["page"].alerts} == {"Alert 17"}
    response = client.get(reverse("alerts:queue"), {"q": "10.0.1"})
    assert {a.title for a in response.context["page"].alerts} == {"Alert 1"}
    response = client.get(reverse("alerts:queue"), {"q": "10.0.2"})
    assert {a.title for a in response.context["page"].alerts} == {"Alert 2"}
    response = client.get(reverse("alerts:queue"), {"q": "10.0.12"})
    assert {a.title for a in response.context["page"].alerts} == {"Alert 12"}
    response = client.get(reverse("alerts:queue"), {"q": "0017.ws"})
    assert {a.title for a in response.context["page"].alerts} == {"Reversed"}
    # The page's rows: Postgres checks the status and severity on the rows the index
    # found, and the phrase only on those they let through, sorted, until the page
    # is full (above the sort), not on every one.
    with CaptureQueriesContext(connection) as queries:
        client.get(
            reverse("alerts:queue"),
            {"q": "WS-0017.corp", "status": "new", "severity": "high"},
        )
    (rows,) = [q["sql"] for q in queries.captured_queries if "LIMIT 51" in q["sql"]]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + rows)
        plan = "\n".join(line for (line,) in cursor.fetchall())
    filters = re.findall(r"Filter: (.*)", plan)
    assert not any("ts_match_vq" in f and "ANY" in f for f in filters), plan
    assert any("status" in f and "ANY" in f for f in filters), plan
    candidates = plan[plan.index("Subquery Scan on candidate") :]
    assert re.match(
        r".*\n\s*Filter: ts_match_vq\(candidate\.search_vector, .*\n\s*->  Sort ",
        candidates,
    ), plan


def test_search_phrase_is_checked_in_page_order_across_pages(
    client, analyst, monkeypatch
):
    """The phrase left to the rows (see above) still gives every page the newest
    alerts that have it, in order, however many newer ones the index found without."""
    tenant = TenantFactory(customer=CustomerFactory(staff=[analyst]))
    now = timezone.now()
    for i in range(60):
        AlertFactory(
            tenant=tenant,
            title=f"Host {i}",
            entities_text=f"ws-77{i:02d}.corp.example",
            updated_at_source=now - timedelta(minutes=2 * i + 1),
        )
        # Newer than each host's alert: a word starting 77, but no "ws" before it.
        AlertFactory(
            tenant=tenant,
            title=f"Hash {i}",
            entities_text=f"77{i:02d}abc ws",
            updated_at_source=now - timedelta(minutes=2 * i),
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE tenants_alert")
    monkeypatch.setattr(queue, "_common_words", (0.0, frozenset()))
    assert "ws" in queue.common_words()
    client.force_login(analyst)
    seen, params = [], {"q": "ws-77"}
    for _ in range(3):
        with CaptureQueriesContext(connection) as queries:
            page = client.get(reverse("alerts:queue"), params).context["page"]
        # (The rows are read the way the test above pins.)
        assert any("AS candidate" in q["sql"] for q in queries.captured_queries)
        seen.append([a.title for a in page.alerts])
        if not page.next_cursor:
            break
        params = {"q": "ws-77", "after": page.next_cursor}
    assert seen == [
        [f"Host {i}" for i in range(50)],
        [f"Host {i}" for i in range(50, 60)],
    ]
    # Sorted by severity (then time), the same: one high alert first.
    Alert.objects.filter(title="Host 42").update(severity="high")
    Alert.objects.filter(title="Hash 0").update(severity="high")
    params = {"q": "ws-77", "sort": "severity"}
    page = client.get(reverse("alerts:queue"), params).context["page"]
    assert [a.title for a in page.alerts] == ["Host 42"] + [
        f"Host {i}" for i in range(50) if i != 42
    ]
    # The counts have the phrase too.
    counts = {c.severity: c.count for c in page.counts}
    assert sum(counts.values()) == 60, counts


def test_alarms_are_shared_between_pages_but_a_new_one_shows_at_once(client, analyst):
    client.force_login(analyst)
    message = "The portal credential expired (AADSTS7000222)"
    assert message not in client.get(reverse("alerts:queue")).content.decode()
    core_services.raise_partner_credential_alarm(message=message)
    assert message in client.get(reverse("alerts:queue")).content.decode()
    core_services.clear_partner_credential_alarm()
    assert message not in client.get(reverse("alerts:queue")).content.decode()


def test_a_search_word_without_letters_or_digits_is_a_clear_400(client, analyst):
    client.force_login(analyst)
    response = client.get(reverse("alerts:queue"), {"q": "ws-01 ---"})
    assert response.status_code == 400
    assert "needs a letter or digit" in response.content.decode()


def test_queue_counts_by_severity_for_the_current_filter(client, world, analyst):
    for _ in range(3):
        AlertFactory(tenant=world["mine"], severity="high")
    AlertFactory(tenant=world["mine"], severity="low", status="resolved")
    client.force_login(analyst)
    response = client.get(reverse("alerts:queue"), {"status": "new"})
    counts = {c.severity: c.count for c in response.context["page"].counts}
    assert counts == {
        "high": 3,
        "medium": 2,
        "low": 0,
        "informational": 0,
        "unknown": 0,
    }
    # Selecting a severity narrows the rows, not the facet counts.
    response = client.get(reverse("alerts:queue"), {"severity": "high"})
    assert len(response.context["page"].alerts) == 3
    assert {c.severity: c.count for c in response.context["page"].counts}["low"] == 1


@pytest.mark.parametrize(
    "narrowing",
    [
        {"status": "resolved"},
        {"source": "graph"},
        {"category": "ransomware"},
        {"assigned": "me"},
        {"assigned": "unassigned"},
        {"range": "24h"},
        {"q": "needle"},
        {"customer": "second"},
    ],
)
def test_shared_severity_counts_follow_every_filter(client, analyst, narrowing):
    """The counts are shared for a few seconds by requests of the same filter: a
    request with one more filter must not be answered with the wider filter's."""
    first = CustomerFactory(staff=[analyst])
    second = CustomerFactory(staff=[analyst])
    AlertFactory.create_batch(2, tenant=TenantFactory(customer=first), severity="high")
    AlertFactory(
        tenant=TenantFactory(customer=second),
        severity="high",
        status="resolved",
        source="graph",
        category="Ransomware",
        assigned_to=analyst.email,
        title="needle in the haystack",
        updated_at_source=timezone.now() - timedelta(hours=1),
    )
    AlertFactory.create_batch(
        2,
        tenant=TenantFactory(customer=first),
        severity="high",
        assigned_to="someone@mssp.example",
        updated_at_source=timezone.now() - timedelta(days=3),
    )
    if narrowing.get("customer"):
        narrowing = {"customer": str(second.code)}
    client.force_login(analyst)

    def high() -> int:
        page = client.get(reverse("alerts:queue"), narrowing).context["page"]
        return {c.severity: c.count for c in page.counts}["high"]

    wide = client.get(reverse("alerts:queue")).context["page"]
    assert {c.severity: c.count for c in wide.counts}["high"] == 5
    expected = {"unassigned": 2, "24h": 3}.get(
        narrowing.get("assigned") or narrowing.get("range"), 1
    )
    assert high() == expected


@pytest.mark.parametrize("sort", ["-updated", "updated", "severity"])
def test_keyset_pages_cover_every_alert_exactly_once(client, analyst, sort):
    tenant = TenantFactory(customer=CustomerFactory(staff=[analyst]))
    now = timezone.now()
    severities = ["high", "medium", "low", "informational"]
    for i in range(120):
        # Every third alert shares a timestamp with another: ties need the id.
        AlertFactory(
            tenant=tenant,
            severity=severities[i % 4],
            updated_at_source=now - timedelta(minutes=i // 3),
        )
    client.force_login(analyst)
    seen, params, pages = [], {"sort": sort}, 0
    while True:
        response = client.get(reverse("alerts:queue"), params)
        assert response.status_code == 200
        page = response.context["page"]
        seen += [a.pk for a in page.alerts]
        pages += 1
        if not page.next_cursor:
            break
        assert f"after={page.next_cursor}" in response.content.decode()
        params = {"sort": sort, "after": page.next_cursor}
    assert pages == 3
    assert sorted(seen) == sorted(Alert.objects.values_list("pk", flat=True))
    assert len(seen) == len(set(seen))


def test_a_submitted_blank_filter_form_means_any(client, world, analyst):
    client.force_login(analyst)
    blank = {k: "" for k in ("q", "customer", "source", "category", "assigned")}
    response = client.get(reverse("alerts:queue"), {**blank, "range": ""})
    assert response.status_code == 200
    assert len(response.context["page"].alerts) == 2


def test_queue_state_lives_in_the_url(client, world, analyst):
    client.force_login(analyst)
    response = client.get(
        reverse("alerts:queue"), {"q": "alert", "status": "new", "sort": "severity"}
    )
    body = response.content.decode()
    assert 'value="alert"' in body
    assert 'name="status" value="new" checked' in body
    assert '<option value="severity" selected>' in body


@pytest.mark.parametrize(
    "params",
    [
        {"severity": "catastrophic"},
        {"status": "'; DROP TABLE tenants_alert; --"},
        {"customer": "not-a-uuid"},
        {"after": "garbage!!"},
        {
            "sort": "severity",
            "after": keyset.encode("-updated", Alert(pk=1, updated_at_source=NOW)),
        },
        {"q": "x" * 201},
        {"q": "ab"},
        {"q": "nul\x00byte"},
        {"range": "forever"},
        {"sort": "title; drop"},
        {"category": "c" * 500},
    ],
)
def test_bad_queue_parameters_are_a_clear_400(client, world, analyst, params):
    client.force_login(analyst)
    response = client.get(reverse("alerts:queue"), params)
    assert response.status_code == 400
    # A NUL never reaches the queue: QueryGuardMiddleware refuses it for every view.
    expected = (
        "A parameter holds a NUL character"
        if any("\x00" in value for value in params.values())
        else "This filter cannot be used"
    )
    assert expected in response.content.decode()
    partial = client.get(reverse("alerts:queue"), params, HTTP_HX_REQUEST="true")
    assert partial.status_code == 400
    export = client.get(reverse("alerts:queue_export"), params)
    assert export.status_code == 400


def test_queue_partial_for_htmx_polling(client, world, analyst):
    client.force_login(analyst)
    response = client.get(reverse("alerts:queue"), HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="queue-results"')
    assert 'hx-trigger="every 15s"' in body
    assert "<html" not in body
    AlertFactory(tenant=world["mine"], title="Arrived since")
    body = client.get(reverse("alerts:queue"), HTTP_HX_REQUEST="true").content
    assert b"Arrived since" in body


def test_queue_names_tenants_that_are_stale_or_skipped(client, analyst):
    customer = CustomerFactory(name="Acme", staff=[analyst])
    fresh = TenantFactory(customer=customer, display_name="fresh")
    SyncStateFactory(tenant=fresh)
    stale = TenantFactory(customer=customer, display_name="stale-one")
    SyncStateFactory(tenant=stale, last_success_at=timezone.now() - timedelta(hours=3))
    TenantFactory(
        customer=customer,
        display_name="revoked-one",
        state="revoked",
        last_error="Consent was revoked.",
    )
    TenantFactory(customer=customer, display_name="never-synced")
    client.force_login(analyst)
    # The sync app's banner on the queue (sync_health's stale_tenants_banner).
    context = client.get(reverse("alerts:queue")).context
    names = {str(row.tenant) for row in context["stale"]}
    assert names == {"stale-one", "revoked-one", "never-synced"}
    assert context["stale_total"] == 3


def test_stale_tenants_shared_between_requests_never_outlive_an_assignment(
    client, analyst
):
    customer = CustomerFactory(name="Acme", staff=[analyst])
    tenant = TenantFactory(customer=customer, display_name="stale-one")
    SyncStateFactory(tenant=tenant, last_success_at=timezone.now() - timedelta(hours=3))
    client.force_login(analyst)

    def stale() -> set[str]:
        context = client.get(reverse("alerts:queue")).context
        return {str(row.tenant) for row in context["stale"]}

    assert stale() == {"stale-one"}
    tenant.syncs.update(last_success_at=timezone.now())
    assert stale() == {"stale-one"}  # the list is shared for a few seconds
    customer.staff.remove(analyst)
    assert stale() == set()  # but never outside the scope


def test_customer_menu_is_shared_but_never_outside_the_scope(client, analyst):
    kept = CustomerFactory(name="Kept Ltd", staff=[analyst])
    dropped = CustomerFactory(name="Dropped Ltd", staff=[analyst])
    client.force_login(analyst)

    def menu() -> set[str]:
        return {name for _code, name in client.get("/queue").context["customers"]}

    assert menu() == {"Kept Ltd", "Dropped Ltd"}
    kept.name = "Kept Renamed"
    kept.save()
    assert menu() == {"Kept Ltd", "Dropped Ltd"}  # shared for a few seconds
    dropped.staff.remove(analyst)
    assert menu() == {"Kept Renamed"}  # a new scope is a new menu


def test_queue_and_detail_query_counts_are_bounded(
    client, analyst, django_assert_max_num_queries
):
    customers = [CustomerFactory(staff=[analyst]) for _ in range(4)]
    for i in range(80):
        tenant_customer = customers[i % 4]
        AlertFactory(tenant__customer=tenant_customer)
    alert = Alert.objects.first()
    for _ in range(5):
        AlertFactory(tenant=alert.tenant, incident=IncidentFactory(tenant=alert.tenant))
    AlertChange.objects.create(alert=alert, changes={"status": ["new", "resolved"]})
    client.force_login(analyst)
    # A staff member's queue names their customers once more on a cache miss (the
    # key of the shared stale-tenant list), and lists no stale tenants on a hit.
    with django_assert_max_num_queries(11):
        assert client.get(reverse("alerts:queue")).status_code == 200
    with django_assert_max_num_queries(10):
        response = client.get(
            reverse("alerts:queue"),
            {"q": "powershell", "severity": "medium", "status": "new"},
        )
        assert response.status_code == 200
    with django_assert_max_num_queries(10):
        url = reverse("alerts:alert_detail", kwargs={"code": alert.code})
        assert client.get(url).status_code == 200
    with django_assert_max_num_queries(6):
        assert client.get(url, HTTP_HX_REQUEST="true").status_code == 200


def test_detail_shows_fields_evidence_changes_related_and_raw(client, world, analyst):
    alert = world["alert"]
    alert.evidence = [
        {"type": "file", "name": "evil.exe", "detail": "C:\\temp", "sha256": "abc123"}
    ]
    alert.save()
    AlertChange.objects.create(alert=alert, changes={"status": ["new", "in_progress"]})
    client.force_login(analyst)
    response = client.get(reverse("alerts:alert_detail", kwargs={"code": alert.code}))
    body = response.content.decode()
    assert "evil.exe" in body and "abc123" in body
    assert "in_progress" in body
    assert "Sibling alert" in body
    assert 'id="raw-payload"' in body
    assert f'href="{alert.portal_url}"' in body


def test_hostile_text_is_escaped_and_only_microsoft_portals_become_links(
    client, world, analyst
):
    payload = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    alert = AlertFactory(
        tenant=world["mine"],
        title=payload,
        description=payload,
        evidence=[{"type": "url", "name": payload, "detail": payload}],
        portal_url="javascript:alert(1)",
        raw={"title": payload},
    )
    client.force_login(analyst)
    url = reverse("alerts:alert_detail", kwargs={"code": alert.code})
    body = client.get(url).content.decode()
    assert "<script>alert" not in body
    assert "<img src=x" not in body
    assert "&lt;script&gt;" in body
    assert 'href="javascript:' not in body
    queue = client.get(reverse("alerts:queue")).content.decode()
    assert "<script>alert" not in queue
    for bad in (
        "https://evil.example/alerts/1",
        "http://security.microsoft.com/alerts/1",
        "https://security.microsoft.com.evil.example/x",
        "https://security.microsoft.com:8443/x",
    ):
        Alert.objects.filter(pk=alert.pk).update(portal_url=bad)
        body = client.get(url).content.decode()
        assert f'href="{bad}"' not in body, bad
    good = "https://contoso.eu2.portal.cloudappsecurity.com/#/alerts/1"
    Alert.objects.filter(pk=alert.pk).update(portal_url=good)
    assert f'href="{good}"' in client.get(url).content.decode()


def test_csv_export_defuses_formulas(client, world, analyst):
    AlertFactory(tenant=world["mine"], title='=HYPERLINK("http://evil")')
    client.force_login(analyst)
    response = client.get(reverse("alerts:queue_export"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "'=HYPERLINK" in body
    assert "Their alert" not in body


def test_every_response_carries_the_content_security_policy(client, world, analyst):
    urls = ["/accounts/login/", "/admin/login/", "/healthz"]
    for url in urls:
        policy = client.get(url)["Content-Security-Policy"]
        assert "default-src 'self'" in policy
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
    client.force_login(UserFactory(username="boss", is_staff=True, is_superuser=True))
    for url in [*page_urls(world), "/admin/", "/admin/alerts/alert/"]:
        assert "default-src 'self'" in client.get(url)["Content-Security-Policy"]
    partial = client.get(reverse("alerts:queue"), HTTP_HX_REQUEST="true")
    assert "frame-ancestors 'none'" in partial["Content-Security-Policy"]
    assert client.get("/no/such/page")["Content-Security-Policy"]


def test_pages_carry_no_inline_script(client, world, analyst):
    client.force_login(analyst)
    for url in page_urls(world):
        body = client.get(url).content.decode()
        for chunk in body.split("<script")[1:]:
            assert chunk.lstrip().startswith("src="), url
        assert " onclick=" not in body and " onload=" not in body


def test_health_puts_problems_first_in_plain_words(client, analyst):
    customer = CustomerFactory(name="Zeta", staff=[analyst])
    good = TenantFactory(customer=customer, display_name="aaa-good")
    CapabilityFactory(tenant=good)
    SyncStateFactory(tenant=good)
    bad = TenantFactory(customer=customer, display_name="zzz-bad")
    CapabilityFactory(tenant=bad)
    SyncStateFactory(
        tenant=bad,
        throttled_until=timezone.now() + timedelta(minutes=5),
        last_success_at=timezone.now() - timedelta(minutes=2),
    )
    # Revoked after its sources were last checked: they read fine, it syncs nothing.
    revoked = TenantFactory(
        customer=customer, display_name="mmm-revoked", state=Tenant.State.REVOKED
    )
    CapabilityFactory(tenant=revoked)
    SyncStateFactory(tenant=revoked)
    client.force_login(analyst)
    response = client.get(reverse("sync:tenant_health"))
    rows = response.context["rows"]
    assert [str(r.tenant) for r in rows] == ["mmm-revoked", "zzz-bad", "aaa-good"]
    page = response.content.decode()
    assert "Throttled by Microsoft until" in page
    assert rows[0].sources and all(
        s.problem == "Not syncing: consent revoked" for s in rows[0].sources
    )
    assert "(last check)" in page


def test_overview_draws_the_chart_as_inline_svg(client, world, analyst):
    client.force_login(analyst)
    response = client.get(reverse("alerts:overview"))
    body = response.content.decode()
    assert response.status_code == 200
    assert '<svg class="chart"' in body
    assert body.count('class="bar"') == 14
    assert "Mine Ltd" in body and "Theirs Inc" not in body
    assert response.context["open_total"] == 2


def test_triage_records_an_action_and_enqueues_the_write_back(
    client, world, analyst, django_capture_on_commit_callbacks
):
    alert = world["alert"]
    client.force_login(analyst)
    url = reverse("alerts:alert_triage", kwargs={"code": alert.code})
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            url,
            {
                "based_on": alert.updated_at_source.isoformat(),
                "status": "resolved",
                "assign": "me",
                "classification": "true_positive",
                "determination": "malware",
                "comment": "Contained.",
            },
        )
    assert response.status_code == 302
    action = TriageAction.objects.get()
    assert action.changes == {
        "status": "resolved",
        "assigned_to": analyst.email,
        "classification": "true_positive",
        "determination": "malware",
    }
    assert action.based_on_updated_at == alert.updated_at_source
    assert len(callbacks) == 1
    # Nothing chosen: a form error, no action.
    response = client.post(url, {"based_on": alert.updated_at_source.isoformat()})
    assert response.status_code == 400
    assert TriageAction.objects.count() == 1
    # Someone who cannot see the customer cannot be assigned.
    response = client.post(
        url, {"based_on": alert.updated_at_source.isoformat(), "assign": "outsider"}
    )
    assert response.status_code == 400


def test_source_changes_speak_each_apis_spelling():
    changes = {
        "status": "in_progress",
        "classification": "true_positive",
        "determination": "compromised_account",
        "assigned_to": "",
    }
    assert triage.source_changes("mde", changes, "note") == {
        "status": "InProgress",
        "classification": "TruePositive",
        "determination": "CompromisedUser",
        "assignedTo": None,
        "comment": "note",
    }
    assert triage.source_changes("graph", changes, "note") == {
        "status": "inProgress",
        "classification": "truePositive",
        "determination": "compromisedAccount",
        "assignedTo": None,
    }


# --- against the emulator (real HTTPS, real MSAL) -------------------------------------


@pytest.fixture
def emulator_alert(portal_on_emulator, emulator, analyst):
    """The Alert row the sync would make for an MDE alert of the emulator's world."""
    from alerts import normalize
    from tenants import microsoft

    info = emulator.description["tenants"][0]
    emulator.control("POST", f"tenants/{info['id']}/consent", {})
    created = emulator.control(
        "POST",
        "alerts",
        {"tenant": info["id"], "source": "mde", "fields": {"title": "Triage me"}},
    )["result"]
    tenant = TenantFactory(
        customer=CustomerFactory(staff=[analyst]),
        tenant_id=info["id"],
        region=info["region"],
    )
    raw = microsoft.get_client().get_mde_alert(
        info["id"], created["id"], region=info["region"]
    )
    fields = normalize.mde_alert(raw, tenant_id=info["id"])
    return Alert.objects.create(tenant=tenant, source=Alert.Source.MDE, **fields)


def emulated_alert(emulator, alert):
    stream = emulator.world.stream(str(alert.tenant.tenant_id))
    return stream.by_id[alert.provider_id]


@pytest.mark.integration
def test_write_back_patches_defender_and_updates_the_row(emulator, emulator_alert):
    from alerts import tasks as alert_tasks

    action = triage.request_triage(
        actor=None,
        alert=emulator_alert,
        based_on_updated_at=emulator_alert.updated_at_source,
        changes={"status": "resolved", "classification": "true_positive"},
        comment="Done by the portal",
    )
    alert_tasks.write_back_triage(action.pk)
    alert_tasks.write_back_triage(action.pk)  # twice: same result
    action.refresh_from_db()
    assert action.status == TriageAction.Status.APPLIED, action.result_detail
    there = emulated_alert(emulator, emulator_alert)
    assert there.status == "Resolved"
    assert there.classification == "TruePositive"
    assert [c["comment"] for c in there.comments] == ["Done by the portal"]
    emulator_alert.refresh_from_db()
    assert emulator_alert.status == "resolved"
    assert emulator_alert.changes.get().changes["status"] == ["new", "resolved"]


@pytest.mark.integration
def test_a_change_made_in_defender_meanwhile_is_not_overwritten(
    emulator, emulator_alert
):
    from alerts import tasks as alert_tasks
    from tenants import microsoft

    microsoft.get_client().update_mde_alert(
        str(emulator_alert.tenant.tenant_id),
        emulator_alert.provider_id,
        changes={"status": "InProgress", "assignedTo": "someone@contoso.example"},
        region=emulator_alert.tenant.region,
    )
    action = triage.request_triage(
        actor=None,
        alert=emulator_alert,
        based_on_updated_at=emulator_alert.updated_at_source,
        changes={"status": "resolved"},
    )
    alert_tasks.write_back_triage(action.pk)
    action.refresh_from_db()
    assert action.status == TriageAction.Status.CONFLICT
    assert "someone@contoso.example" in action.result_detail
    assert "Nothing was overwritten" in action.result_detail
    assert emulated_alert(emulator, emulator_alert).status == "InProgress"


# --- Sign in with Microsoft -----------------------------------------------------------


def walk_microsoft_sign_in(client, emulator, staff: dict, next_url: str = "/queue"):
    """The browser's part, with requests for the emulator's sign-in page."""
    response = client.get(reverse("microsoft_login"), {"next": next_url})
    assert response.status_code == 302
    authorize = response["Location"]
    assert authorize.startswith(emulator.base_url)
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"]
    with emulator.session() as session:
        page = session.get(authorize, timeout=10)
        flow = page.text.split('name="flow" value="')[1].split('"')[0]
        tenant_segment = urlsplit(authorize).path.split("/")[1]
        answer = session.post(
            f"{emulator.base_url}/{tenant_segment}/login",
            data={"flow": flow, "login": staff["upn"], "passwd": staff["password"]},
            allow_redirects=False,
            timeout=10,
        )
    assert answer.status_code in (302, 303), answer.text[:300]
    back = urlsplit(answer.headers["Location"])
    return client.get(back.path, parse_qs(back.query))


@pytest.fixture
def microsoft_sign_in(settings, portal_on_emulator, emulator):
    settings.PORTAL_BASE_URL = "http://testserver"
    emulator.control(
        "POST",
        "app/redirect-uris",
        {"uri": "http://testserver/accounts/microsoft/callback"},
    )
    return emulator.description["staff"][0]


@pytest.mark.integration
def test_microsoft_sign_in_creates_an_account_with_no_access(
    client, emulator, world, microsoft_sign_in
):
    response = walk_microsoft_sign_in(client, emulator, microsoft_sign_in)
    assert response.status_code == 302
    assert response["Location"] == "/queue"
    identity = StaffIdentity.objects.select_related("user").get()
    assert str(identity.tenant_id) == emulator.description["home_tenant"]["id"]
    assert identity.user.email == microsoft_sign_in["upn"]
    assert not identity.user.has_usable_password()
    assert not identity.user.is_staff and not identity.user.is_superuser
    assert not Customer.objects.visible_to(identity.user).exists()
    body = client.get("/queue").content.decode()
    assert "Mine alert" not in body and "Their alert" not in body
    url = reverse("alerts:alert_detail", kwargs={"code": world["alert"].code})
    assert client.get(url).status_code == 404
    # A second sign-in finds the same account.
    client.logout()
    walk_microsoft_sign_in(client, emulator, microsoft_sign_in)
    assert StaffIdentity.objects.count() == 1


@pytest.mark.integration
def test_microsoft_sign_in_refuses_a_token_of_another_tenant(
    client, settings, emulator, microsoft_sign_in
):
    response = client.get(reverse("microsoft_login"))
    # The flow started, then the configured tenant is not the one that answers.
    settings.MS_STAFF_TENANT_ID = "00000000-0000-0000-0000-00000000beef"
    authorize = response["Location"]
    with emulator.session() as session:
        page = session.get(authorize, timeout=10)
        flow = page.text.split('name="flow" value="')[1].split('"')[0]
        segment = urlsplit(authorize).path.split("/")[1]
        answer = session.post(
            f"{emulator.base_url}/{segment}/login",
            data={
                "flow": flow,
                "login": microsoft_sign_in["upn"],
                "passwd": microsoft_sign_in["password"],
            },
            allow_redirects=False,
            timeout=10,
        )
    back = urlsplit(answer.headers["Location"])
    response = client.get(back.path, parse_qs(back.query))
    assert response.status_code == 400
    assert StaffIdentity.objects.count() == 0
    assert "_auth_user_id" not in client.session


@pytest.mark.integration
def test_a_forged_or_replayed_callback_signs_nobody_in(client, microsoft_sign_in):
    response = client.get(
        reverse("microsoft_callback"), {"code": "forged", "state": "nope"}
    )
    assert response.status_code == 400
    client.get(reverse("microsoft_login"))
    response = client.get(
        reverse("microsoft_callback"), {"code": "forged", "state": "nope"}
    )
    assert response.status_code == 400
    assert "_auth_user_id" not in client.session

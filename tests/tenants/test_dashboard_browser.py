"""The dashboard in real Chromium: both sign-ins, the queue, a detail, triage written
back through a real worker to the emulator, a conflict, scope, hostile content, CSP."""

import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import expect

from alerts import triage
from alerts.models import Alert, TriageAction
from tenants import microsoft
from tenants.models import Tenant
from tests.browser import chromium, requires_chromium, screenshot
from tests.conftest import WorkerProcess
from tests.factories import (
    AlertFactory,
    CapabilityFactory,
    CustomerFactory,
    IncidentFactory,
    SyncStateFactory,
    TenantFactory,
)

pytestmark = [pytest.mark.browser, pytest.mark.integration, requires_chromium]
PASSWORD = "pw-dash-analyst-1"
HOSTILE = '<script>alert("t")</script><img src=x onerror="alert(1)">'


@pytest.fixture
def portal(live_server, settings, portal_on_emulator, emulator):
    settings.PORTAL_BASE_URL = live_server.url
    emulator.control(
        "POST",
        "app/redirect-uris",
        {"uri": f"{live_server.url}/accounts/microsoft/callback"},
    )
    worker = WorkerProcess(
        env=dict(portal_on_emulator, PORTAL_BASE_URL=live_server.url)
    )
    try:
        worker.wait_ready()
        with chromium(emulator.description["server_cert_path"]) as browser:
            yield live_server.url, browser
    finally:
        worker.stop()


@pytest.fixture
def soc(emulator):
    """An analyst, two customers (one theirs), emulator-backed and hostile alerts."""
    analyst = get_user_model().objects.create_user(
        "night.analyst", email="night.analyst@mssp.example", password=PASSWORD
    )
    info = emulator.description["tenants"][0]
    emulator.control("POST", f"tenants/{info['id']}/consent", {})
    customer = CustomerFactory(name="Contoso Pharma", staff=[analyst])
    tenant = TenantFactory(
        customer=customer,
        tenant_id=info["id"],
        region=info["region"],
        display_name=info["domain"],
    )
    for source in ("mde_alerts", "graph_alerts"):
        CapabilityFactory(tenant=tenant, source=source)
        SyncStateFactory(tenant=tenant, source=source)
    stale = TenantFactory(customer=customer, display_name="contoso-labs.example")
    CapabilityFactory(tenant=stale)
    SyncStateFactory(
        tenant=stale,
        last_success_at=timezone.now() - timedelta(hours=5),
        last_error="Microsoft did not answer properly (server error).",
        last_error_at=timezone.now() - timedelta(minutes=3),
    )
    other = TenantFactory(customer=CustomerFactory(name="Fabrikam Bank"))
    AlertFactory(tenant=other, title="Fabrikam secret alert")

    incident = IncidentFactory(tenant=tenant, title="Ransomware precursor on FIN-WS")
    made = []
    now = timezone.now()
    for i, (sev, title) in enumerate(
        [
            ("high", "Ransomware behavior detected in the file system"),
            ("high", "Suspicious LSASS memory access by an unknown process"),
            ("medium", "Suspicious PowerShell download cradle"),
            ("low", "Unsanctioned cloud app used from a managed device"),
            ("informational", "Anomalous sign-in from a new country"),
        ]
    ):
        created = emulator.control(
            "POST",
            "alerts",
            {"tenant": info["id"], "source": "mde", "fields": {"title": title}},
        )["result"]
        made.append(
            AlertFactory(
                tenant=tenant,
                provider_id=created["providerAlertId"],
                title=title,
                severity=sev,
                incident=incident,
                category=["Ransomware", "CredentialAccess", "Execution"][i % 3],
                created_at_source=now - timedelta(hours=i * 3 + 1),
                updated_at_source=triage.parse_source_time(created["lastUpdateTime"]),
                entities_text=f"fin-ws-0{i}.contoso.example c.jones 10.20.0.{i}",
                evidence=[
                    {"type": "device", "name": f"fin-ws-0{i}.contoso.example"},
                    {"type": "file", "name": "payload.exe", "detail": "C:\\Temp"},
                    {"type": "ip", "name": f"10.20.0.{i}"},
                ],
                portal_url=f"{emulator.base_url}/portal/alerts/{created['id']}",
                raw={"id": created["id"], "title": title},
            )
        )
    hostile = AlertFactory(
        tenant=tenant,
        title=f"Phish {HOSTILE}",
        description=HOSTILE,
        evidence=[{"type": "url", "name": HOSTILE, "detail": "javascript:alert(2)"}],
        portal_url="javascript:alert(3)",
        raw={"title": HOSTILE},
    )
    return {
        "analyst": analyst,
        "alerts": made,
        "hostile": hostile,
        "info": info,
        "customer": customer,
    }


def watch(page) -> list[str]:
    """Dialogs and CSP violations seen on the page (hostile content must cause none)."""
    seen: list[str] = []
    page.on("dialog", lambda d: (seen.append(f"dialog: {d.message}"), d.dismiss()))
    page.on(
        "console",
        lambda m: seen.append(f"console: {m.text}") if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: seen.append(f"pageerror: {e}"))
    return seen


def sign_in(browser, base: str, username: str = "night.analyst"):
    context = browser.new_context(viewport={"width": 1500, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{base}/accounts/login/?next=/queue")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(f"{base}/queue")
    return page


def ground_truth_status(emulator, alert: Alert) -> str:
    stream = emulator.world.stream(str(alert.tenant.tenant_id))
    return stream.by_id[alert.provider_id].status


def test_queue_filter_search_detail_and_triage_written_back(portal, emulator, soc):
    base, browser = portal
    page = sign_in(browser, base)
    problems = watch(page)
    rows = page.locator("#queue-table tbody tr")
    expect(rows).to_have_count(6)
    assert "Fabrikam" not in page.content()
    stale = page.locator("#stale-tenants").inner_text()
    assert "contoso-labs.example" in stale
    high = page.locator('#severity-counts [data-severity="high"]')
    assert high.get_attribute("data-count") == "2"
    screenshot(page, "dashboard-queue")

    # Filter by severity (a facet), then search an entity.
    high.click()
    page.wait_for_url("**severity=high**")
    expect(rows).to_have_count(2)
    page.get_by_label("Search").fill("fin-ws-01.contoso")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**q=fin-ws-01.contoso**")
    expect(rows).to_have_count(1)
    assert "LSASS" in rows.first.inner_text()
    # The view is in the URL: a colleague opening it sees the same.
    shared = browser.new_context().new_page()
    shared.goto(page.url)
    assert "Sign in" in shared.content()

    rows.first.get_by_role("link").click()
    page.wait_for_url(f"{base}/alerts/*")
    assert page.locator("#evidence").inner_text().count("fin-ws-01") == 1
    assert (
        page.locator("#portal-link").get_attribute("href").startswith(emulator.base_url)
    )
    screenshot(page, "dashboard-alert-detail")

    alert = soc["alerts"][1]
    page.get_by_label("Status").select_option("resolved")
    page.get_by_label("Assign to").select_option("me")
    page.get_by_label("Classification").select_option("true_positive")
    page.get_by_label("Determination").select_option("malware")
    page.get_by_label("Comment").fill("Isolated FIN-WS-01, credentials reset.")
    page.get_by_role("button", name="Apply in Defender").click()
    applied = page.locator('#triage-actions [data-status="applied"]')
    applied.wait_for(timeout=30_000)
    assert ground_truth_status(emulator, alert) == "Resolved"
    there = emulator.world.stream(alert.tenant.tenant_id.__str__()).by_id[
        alert.provider_id
    ]
    assert there.assigned_to == "night.analyst@mssp.example"
    assert there.classification == "TruePositive"
    page.reload()
    assert page.locator("#alert-status").get_attribute("data-status") == "resolved"
    screenshot(page, "dashboard-alert-triaged")
    assert problems == []


def test_a_change_made_in_defender_meanwhile_is_shown_not_overwritten(
    portal, emulator, soc
):
    base, browser = portal
    page = sign_in(browser, base)
    alert = soc["alerts"][0]
    page.goto(f"{base}/alerts/{alert.code}")
    # Someone changes the alert in Defender while the page is open.
    microsoft.get_client().update_mde_alert(
        soc["info"]["id"],
        alert.provider_id,
        changes={"status": "InProgress", "assignedTo": "tier2@contoso.example"},
        region=soc["info"]["region"],
    )
    page.get_by_label("Status").select_option("resolved")
    page.get_by_role("button", name="Apply in Defender").click()
    conflict = page.locator('#triage-actions [data-status="conflict"]')
    conflict.wait_for(timeout=30_000)
    text = conflict.inner_text()
    assert "tier2@contoso.example" in text
    assert "Nothing was overwritten" in text
    assert ground_truth_status(emulator, alert) == "InProgress"
    assert TriageAction.objects.get().status == TriageAction.Status.CONFLICT
    screenshot(page, "dashboard-triage-conflict")


def test_hostile_alert_runs_no_script_and_the_admin_works_under_the_csp(portal, soc):
    base, browser = portal
    page = sign_in(browser, base)
    problems = watch(page)
    page.goto(f"{base}/queue?q=Phish")
    assert "<script>" in page.locator("#queue-table").inner_text()
    page.goto(f"{base}/alerts/{soc['hostile'].code}")
    assert HOSTILE in page.locator("#alert-title").inner_text()
    assert page.locator("#portal-link").count() == 0
    assert page.locator("#evidence a").count() == 0
    page.locator("#raw-payload summary").click()
    time.sleep(0.5)
    assert problems == [], problems

    # The admin's own pages keep working under the same policy.
    get_user_model().objects.filter(pk=soc["analyst"].pk).update(
        is_staff=True, is_superuser=True
    )
    page.goto(f"{base}/admin/alerts/alert/")
    page.locator("#changelist").wait_for()
    page.goto(f"{base}/admin/auth/user/{soc['analyst'].pk}/change/")
    page.locator("#id_username").wait_for()
    csp = [p for p in problems if "Content Security Policy" in p]
    assert csp == [], csp


def test_health_and_overview(portal, soc):
    base, browser = portal
    revoked = TenantFactory(
        customer=soc["customer"],
        display_name="contoso-old.example",
        state=Tenant.State.REVOKED,
    )
    CapabilityFactory(tenant=revoked)
    SyncStateFactory(tenant=revoked)
    page = sign_in(browser, base)
    page.goto(f"{base}/health")
    blocks = page.locator("#health-table tbody")
    assert "contoso-old.example" in blocks.nth(0).inner_text()
    assert "Not syncing: consent revoked" in blocks.nth(0).inner_text()
    assert "contoso-labs.example" in blocks.nth(1).inner_text()
    assert "server error" in blocks.nth(1).inner_text()
    screenshot(page, "dashboard-tenant-health")
    page.goto(f"{base}/overview")
    assert page.locator("#new-alerts-chart rect").count() == 14
    assert "Contoso Pharma" in page.locator("#by-customer").inner_text()
    screenshot(page, "dashboard-overview")
    page.goto(f"{base}/incidents")
    assert "Ransomware precursor" in page.content()


def test_sign_in_with_microsoft_grants_no_access_until_assigned(portal, emulator, soc):
    base, browser = portal
    staff = emulator.description["staff"][1]
    page = browser.new_context().new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{base}/accounts/login/?next=/queue")
    page.get_by_role("link", name="Sign in with Microsoft").click()
    page.get_by_label("Email, phone, or Skype").fill(staff["upn"])
    page.get_by_label("Password").fill(staff["password"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/queue")
    assert staff["upn"] in page.locator(".who").inner_text()
    assert page.locator("#queue-table tbody tr").inner_text().startswith("No alerts")
    response = page.goto(f"{base}/alerts/{soc['alerts'][0].code}")
    assert response.status == 404
    # Assigned by ops: now the customer's alerts show.
    user = get_user_model().objects.get(email=staff["upn"])
    soc["alerts"][0].tenant.customer.staff.add(user)
    response = page.goto(f"{base}/alerts/{soc['alerts'][0].code}")
    assert response.status == 200

"""The incidents page and the overview in real Chromium, after a tenant's incidents
were synced through both Defender XDR and Graph: each real incident shows once, with
its alerts, and the overview counts each once."""

import pytest
from django.contrib.auth import get_user_model

from alerts.models import Incident
from sync import runner
from sync.models import SyncState
from tests.browser import chromium, requires_chromium, screenshot
from tests.tenants.sync_helpers import (
    consented_emulator,
    ground_truth,
    verified_tenants,
)

pytestmark = [pytest.mark.browser, requires_chromium]
PASSWORD = "pw-incidents-1"


@pytest.fixture
def synced(transactional_db, tmp_path_factory, settings):
    """One tenant whose XDR and Graph incidents (and alerts) were synced."""
    from demo.emulation import emulator_environment
    from tenants import microsoft

    with consented_emulator(tmp_path_factory, tenants=1, backlog_per_tenant=60) as emu:
        for name, value in emulator_environment(emu.description).items():
            setattr(settings, name, True if name == "MS_EMULATOR" else value)
        microsoft.reset_client()
        try:
            tenant = verified_tenants(
                emu,
                sources=("mde_alerts", "xdr_incidents", "graph_incidents"),
                count=1,
            )[0]
            for state in SyncState.objects.filter(tenant=tenant):
                runner.sync_source(sync_state_id=state.pk)
            truth = set(ground_truth(emu, str(tenant.tenant_id), "xdr"))
            yield tenant, truth
        finally:
            microsoft.reset_client()


def sign_in(browser, base: str):
    get_user_model().objects.create_superuser("lead", password=PASSWORD)
    page = browser.new_context(viewport={"width": 1500, "height": 900}).new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{base}/accounts/login/?next=/incidents")
    page.get_by_label("User name").fill("lead")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(f"{base}/incidents")
    return page


def test_each_incident_shows_once_on_the_incidents_page_and_overview(
    live_server, synced
):
    tenant, truth = synced
    incidents = Incident.objects.filter(tenant=tenant)
    assert truth and set(incidents.values_list("provider_id", flat=True)) == truth
    assert all(set(i.seen_in) == {"xdr", "graph"} for i in incidents)
    open_count = incidents.exclude(status__iregex=r"^(resolved|redirected)$").count()
    with chromium() as browser:
        page = sign_in(browser, live_server.url)
        page.goto(f"{live_server.url}/incidents?all=1")
        rows = page.locator("#incident-table tbody tr")
        links = rows.locator("td.c-title a")
        hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
        assert len(hrefs) == len(set(hrefs)) == min(len(truth), 100)
        alert_counts = [
            int(rows.nth(i).locator("td.num").first.inner_text())
            for i in range(rows.count())
        ]
        assert 0 not in alert_counts  # no empty copy beside the real incident
        screenshot(page, "incidents-each-once")

        page.goto(f"{live_server.url}/overview")
        shown = int(page.locator("#open-incident-count").inner_text())
        assert shown == open_count
        links = page.locator("#open-incidents tbody td.c-title a")
        hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
        assert len(hrefs) == len(set(hrefs)) == min(open_count, 10)
        screenshot(page, "overview-incidents-each-once")

        page.goto(f"{live_server.url}{hrefs[0]}")
        head = page.locator(".alert-head .src").inner_text()
        assert set(head.split(" · ")) == {"Defender XDR", "Graph security"}

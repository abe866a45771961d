"""Onboarding in real Chromium: staff make a link, the customer's admin consents on the
emulator's page in another browser context, and the tenant becomes verified."""

import pytest
from django.contrib.auth import get_user_model

from tenants.models import Tenant
from tests.browser import chromium, requires_chromium, screenshot
from tests.conftest import WorkerProcess

pytestmark = [pytest.mark.browser, pytest.mark.integration, requires_chromium]


@pytest.fixture
def portal(live_server, settings, portal_on_emulator, emulator):
    settings.PORTAL_BASE_URL = live_server.url
    emulator.control(
        "POST", "app/redirect-uris", {"uri": f"{live_server.url}/consent/callback"}
    )
    get_user_model().objects.create_user("staff1", password="pw-staff1-12345")
    worker = WorkerProcess(
        env=dict(portal_on_emulator, PORTAL_BASE_URL=live_server.url)
    )
    try:
        worker.wait_ready()
        with chromium(emulator.description["server_cert_path"]) as browser:
            yield live_server.url, browser
    finally:
        worker.stop()


def staff_creates_link(browser, base: str, customer: str) -> tuple:
    staff = browser.new_context()
    page = staff.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("User name").fill("staff1")
    page.get_by_label("Password").fill("pw-staff1-12345")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/queue")  # where analysts land
    page.get_by_role("link", name="Customers", exact=True).click()
    page.get_by_role("link", name="Add a customer").click()
    page.get_by_label("Name").fill(customer)
    page.get_by_role("button", name="Add customer").click()
    page.get_by_role("button", name="Create consent link").click()
    url = page.locator("#consent-link-url").input_value()
    assert "/v2.0/adminconsent?" in url
    assert page.locator("#consent-link-text").input_value().count(url) == 1
    return page, url


def admin_signs_in(browser, url: str, admin: dict):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(url)
    page.get_by_label("Email, phone, or Skype").fill(admin["upn"])
    page.get_by_label("Password").fill(admin["password"])
    page.get_by_role("button", name="Sign in").click()
    return page


def test_staff_onboard_a_customer_whose_admin_accepts(portal, emulator):
    base, browser = portal
    staff_page, url = staff_creates_link(browser, base, "Contoso Browser")
    screenshot(staff_page, "customer-consent-link")
    tenant = emulator.description["tenants"][0]

    admin_page = admin_signs_in(browser, url, tenant["admins"][0])
    assert "SecurityAlert.Read.All" in admin_page.locator("#permissions").inner_text()
    screenshot(admin_page, "emulator-consent-page")
    admin_page.get_by_role("button", name="Accept").click()
    admin_page.wait_for_url(f"{base}/consent/*")
    admin_page.get_by_text("Access confirmed").wait_for(timeout=60_000)
    assert "Defender for Endpoint alerts: Connected" in admin_page.content()
    screenshot(admin_page, "consent-confirmed")

    staff_page.reload()
    badge = staff_page.locator(f"#tenant-{Tenant.objects.get().code} [data-state]")
    assert badge.get_attribute("data-state") == "verified"
    caps = staff_page.locator("table.capabilities").inner_text()
    assert "Connected" in caps
    assert "Alert.Read.All" in caps
    screenshot(staff_page, "customer-verified")


def test_the_customer_admin_cancels(portal, emulator):
    base, browser = portal
    _, url = staff_creates_link(browser, base, "Cancelling Customer")
    tenant = emulator.description["tenants"][1]
    admin_page = admin_signs_in(browser, url, tenant["admins"][0])
    admin_page.get_by_role("button", name="Cancel").click()
    admin_page.wait_for_url(f"{base}/consent/callback*")
    assert admin_page.locator("#outcome").get_attribute("data-outcome") == "refused"
    assert "open the same link again" in admin_page.content()
    assert Tenant.objects.count() == 0

"""Admin consent in real Chromium (Playwright) against the emulator over real TLS.

Chromium is told to trust exactly the emulator's server key
(`--ignore-certificate-errors-spki-list`, Chromium's mechanism for pinning a private
key) instead of ignoring HTTPS errors; the redirect target is a tiny local HTTP server
that records the query string it receives.
"""

from __future__ import annotations

import http.server
import threading
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import msal
import pytest

from emulator.testing import run_emulator
from tests.browser import chromium, requires_chromium

GRAPH_DEFAULT = "https://graph.microsoft.com/.default"

pytestmark = [
    pytest.mark.browser,
    requires_chromium,
]


class CallbackRecorder(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_GET(self):  # noqa: N802 - http.server naming
        parts = urlsplit(self.path)
        if parts.path == "/consent/callback":  # not /favicon.ico
            self.received.append({k: v[0] for k, v in parse_qs(parts.query).items()})
        body = b"<html><body><h1 id='callback'>Callback received</h1></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def callback_server():
    CallbackRecorder.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CallbackRecorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, CallbackRecorder.received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def browser_emulator(tmp_path_factory, callback_server):
    server, received = callback_server
    redirect_uri = f"http://127.0.0.1:{server.server_address[1]}/consent/callback"
    state_dir = tmp_path_factory.mktemp("emulator-browser")
    with run_emulator(
        state_dir, seed=21, tenants=2, redirect_uris=(redirect_uri,)
    ) as emulator:
        yield emulator, redirect_uri, received


@pytest.fixture
def chromium_page(browser_emulator):
    emulator, _, _ = browser_emulator
    with chromium(emulator.description["server_cert_path"]) as browser:
        context = browser.new_context(ignore_https_errors=False)
        page = context.new_page()
        page.set_default_timeout(15_000)
        try:
            yield page
        finally:
            context.close()


def consent_url(emulator, redirect_uri: str, state: str) -> str:
    query = urlencode(
        {
            "client_id": emulator.client_id,
            "scope": GRAPH_DEFAULT,
            "redirect_uri": redirect_uri,
            "state": state,
        }
    )
    return f"{emulator.base_url}/organizations/v2.0/adminconsent?{query}"


def sign_in_as_admin(page, tenant: dict) -> None:
    admin = tenant["admins"][0]
    page.get_by_label("Email, phone, or Skype").fill(admin["upn"])
    page.get_by_label("Password").fill(admin["password"])
    page.get_by_role("button", name="Sign in").click()


def test_admin_accepts_consent_in_chromium(browser_emulator, chromium_page):
    emulator, redirect_uri, received = browser_emulator
    tenant = emulator.description["tenants"][0]
    page = chromium_page
    page.goto(consent_url(emulator, redirect_uri, "browser-state"))
    sign_in_as_admin(page, tenant)

    assert page.locator("#app-name").inner_text() == emulator.world.app.display_name
    permissions = page.locator("#permissions").inner_text()
    assert "SecurityAlert.Read.All" in permissions
    assert "Alert.ReadWrite.All" in permissions
    page.get_by_role("button", name="Accept").click()
    page.locator("#callback").wait_for()

    assert received == [
        {
            "admin_consent": "True",
            "tenant": tenant["id"],
            "scope": GRAPH_DEFAULT,
            "state": "browser-state",
        }
    ]
    # The portal must verify the grant with a token: do it with real MSAL.
    app = msal.ConfidentialClientApplication(
        emulator.client_id,
        client_credential=emulator.client_secret,
        authority=f"{emulator.base_url}/{tenant['id']}",
        instance_discovery=False,
        azure_region=False,
        http_client=emulator.session(),
    )
    result = app.acquire_token_for_client([GRAPH_DEFAULT])
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["tid"] == tenant["id"]
    assert "SecurityAlert.Read.All" in claims["roles"]


def test_admin_cancels_consent_in_chromium(browser_emulator, chromium_page):
    emulator, redirect_uri, received = browser_emulator
    tenant = emulator.description["tenants"][1]
    page = chromium_page
    page.goto(consent_url(emulator, redirect_uri, "cancel-state"))
    sign_in_as_admin(page, tenant)
    page.get_by_role("button", name="Cancel").click()
    page.locator("#callback").wait_for()

    assert len(received) == 1
    query = received[0]
    assert query["admin_consent"] == "True"
    assert query["error"] == "access_denied"
    assert query["error_subcode"] == "cancel"
    assert query["error_description"].startswith("AADSTS65004")
    assert query["state"] == "cancel-state"
    assert not emulator.world.tenant_by_name_or_id(tenant["id"]).consented


def test_wrong_password_is_shown_on_the_page(browser_emulator, chromium_page):
    emulator, redirect_uri, received = browser_emulator
    page = chromium_page
    page.goto(consent_url(emulator, redirect_uri, "s"))
    page.get_by_label("Email, phone, or Skype").fill("admin@nowhere.example")
    page.get_by_label("Password").fill("nope")
    page.get_by_role("button", name="Sign in").click()
    assert "incorrect" in page.locator("#signin-error").inner_text()
    assert received == []

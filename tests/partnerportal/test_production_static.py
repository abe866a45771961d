"""Production serves its own static files: collectstatic with the production storage
(the collected_static fixture), then real gunicorn with DEBUG=false, and real Chromium
signing in and using the queue.

The production settings insist on HTTPS (redirect to https, Secure cookies, CSRF's
origin check), so gunicorn speaks TLS itself here, with a loopback certificate that
Chromium pins. Behind a TLS-terminating proxy (X-Forwarded-Proto) Django sees the
same thing; nothing in the settings is loosened for the test.
"""

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from gunicorn.config import KNOWN_SETTINGS
from playwright.sync_api import expect

from demo.embedded import free_port
from emulator.tls import TlsFiles, ensure_server_tls
from tests.browser import chromium, requires_chromium, screenshot
from tests.conftest import ARTIFACTS_DIR, PROJECT_DIR
from tests.factories import AlertFactory, CustomerFactory, TenantFactory

pytestmark = [pytest.mark.browser, pytest.mark.integration, requires_chromium]
PASSWORD = "pw-static-analyst-1"
# Hashed names never change content, so WhiteNoise lets browsers keep them for good.
ONE_YEAR = 365 * 24 * 3600
# What base.html loads on every page.
ASSETS = ("css/portal.css", "vendor/htmx.min.js", "js/portal.js")
# gunicorn 25.1+ opens a control socket at one fixed path per user; gunicorns of other
# checkouts on this machine must not take it from each other.
NO_CONTROL_SOCKET = (
    ["--no-control-socket"]
    if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS)
    else []
)
# Variables of this test run that a production process must not inherit.
NOT_INHERITED = {
    "DJANGO_ALLOW_ASYNC_UNSAFE",
    "DATABASE_TEST_NAME",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "CSRF_TRUSTED_ORIGINS",
}


def production_environment(static_root: Path, base_url: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in NOT_INHERITED and not name.startswith("MS_")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="partnerportal.settings",
        DEBUG="false",
        SECRET_KEY=uuid.uuid4().hex * 2,
        ALLOWED_HOSTS="127.0.0.1",
        # The run's own DATABASE_URL (a TCP host or the embedded server's socket),
        # pointed at the test database pytest-django created.
        DATABASE_URL=urlunsplit(
            urlsplit(os.environ["DATABASE_URL"])._replace(
                path=f"/{settings.DATABASES['default']['NAME']}"
            )
        ),
        REDIS_URL=settings.REDIS_URL,
        MS_CLIENT_ID="00001111-aaaa-2222-bbbb-3333cccc4444",
        MS_CLIENT_SECRET="not-a-real-secret",
        PORTAL_BASE_URL=base_url,
        STATIC_ROOT=str(static_root),
    )
    return env


class Production(NamedTuple):
    """A running production-configured gunicorn."""

    base: str
    static_root: Path
    tls: TlsFiles


@pytest.fixture
def production(transactional_db, collected_static, tmp_path) -> Iterator[Production]:
    """gunicorn with DEBUG=false serving what collectstatic wrote for production."""
    port = free_port()
    base = f"https://127.0.0.1:{port}"
    env = production_environment(collected_static, base)
    tls = ensure_server_tls(tmp_path / "tls")
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    log_path = ARTIFACTS_DIR / f"gunicorn-{uuid.uuid4().hex[:8]}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "partnerportal.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--certfile",
                str(tls.cert_path),
                "--keyfile",
                str(tls.key_path),
                "--access-logfile",
                "-",
                *NO_CONTROL_SOCKET,
            ],
            cwd=PROJECT_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_answering(
                process, f"{base}/accounts/login/", tls.ca_path, log_path
            )
            yield Production(base, collected_static, tls)
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until_answering(process, url: str, ca_path: Path, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"gunicorn exited with {process.returncode}: "
                f"{log_path.read_text()[-3000:]}"
            )
        try:
            requests.get(url, verify=ca_path, timeout=5)
            return
        except requests.ConnectionError:
            time.sleep(0.3)
    raise RuntimeError(f"gunicorn did not answer in 60 s: {log_path}")


@pytest.fixture
def analyst(transactional_db):
    """A staff member with one customer, whose tenant has one alert."""
    user = get_user_model().objects.create_user("static.analyst", password=PASSWORD)
    tenant = TenantFactory(customer=CustomerFactory(name="Contoso", staff=[user]))
    AlertFactory(tenant=tenant, title="Credential dumping on FIN-WS-01")
    return user, tenant


def max_age(cache_control: str) -> int:
    for part in cache_control.split(","):
        name, _, value = part.strip().partition("=")
        if name == "max-age":
            return int(value)
    return 0


def test_production_serves_hashed_static_files_and_the_queue_uses_them(
    production, analyst
):
    base = production.base
    _, tenant = analyst
    with chromium(str(production.tls.cert_path)) as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.set_default_timeout(20_000)
        static_responses = {}
        page.on(
            "response",
            lambda r: (
                static_responses.__setitem__(r.url, r) if "/static/" in r.url else None
            ),
        )
        page.goto(f"{base}/accounts/login/?next=/queue")
        page.get_by_label("User name").fill("static.analyst")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in", exact=True).click()
        page.wait_for_url(f"{base}/queue")
        rows = page.locator("#queue-table tbody tr")
        expect(rows).to_have_count(1)

        # portal.css is applied: the top bar's colour is the stylesheet's.
        topbar = page.locator(".topbar")
        colour = topbar.evaluate("el => getComputedStyle(el).backgroundColor")
        assert colour == "rgb(20, 33, 47)"
        screenshot(page, "production-queue")

        # The page names the hashed files, and each answered 200 with a long cache.
        manifest = production.static_root / "staticfiles.json"
        hashed = json.loads(manifest.read_text())["paths"]
        for name in ASSETS:
            url = f"{base}/static/{hashed[name]}"
            assert hashed[name] != name
            assert url in static_responses, sorted(static_responses)
            response = static_responses[url]
            assert response.status == 200, url
            cache_control = response.all_headers()["cache-control"]
            assert max_age(cache_control) >= ONE_YEAR, (url, cache_control)

        # htmx runs: the results poll fetches the partial and swaps in a new alert
        # without reloading the page.
        assert page.evaluate("typeof window.htmx") == "object"
        page.evaluate("window.stillTheSamePage = true")
        AlertFactory(tenant=tenant, title="Ransomware note dropped on FIN-WS-02")
        # Inside Playwright's block the ORM runs in another context, so with another
        # connection; closed now, or it would keep the test database from being
        # dropped at the end of the run.
        connection.close()
        with page.expect_response(
            lambda r: (
                r.url.startswith(f"{base}/queue")
                and r.request.headers.get("hx-request") == "true"
            ),
            timeout=30_000,
        ) as poll:
            pass
        assert poll.value.status == 200
        expect(rows).to_have_count(2)
        expect(rows.filter(has_text="Ransomware note dropped")).to_have_count(1)
        assert page.evaluate("window.stillTheSamePage") is True
        context.close()

    # Outside the browser too: gzip for clients that take it, and the plain name
    # (for anything that links it unhashed) is served but not kept for long.
    css = requests.get(
        f"{base}/static/{hashed['css/portal.css']}",
        headers={"Accept-Encoding": "gzip"},
        verify=production.tls.ca_path,
        timeout=10,
    )
    assert css.status_code == 200
    assert css.headers["Content-Encoding"] == "gzip"
    assert "immutable" in css.headers["Cache-Control"]
    plain = requests.get(
        f"{base}/static/css/portal.css", verify=production.tls.ca_path, timeout=10
    )
    assert plain.status_code == 200
    assert max_age(plain.headers["Cache-Control"]) < ONE_YEAR

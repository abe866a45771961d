"""`manage.py demo` end to end in real Chromium, as a newcomer meets it.

The demo runs as it does for `make demo` (emulator, web, worker, beat, demo customers
made through the consent flow), on the test database, free ports and this run's own
queue. A staff member signs in and sees alerts from the three onboarded customers; the
newcomer then plays the waiting customer's admin, accepts on the emulator's consent
page, and watches that tenant become verified and its alerts arrive.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alerts.models import Alert
from demo.embedded import free_port
from emulator.testing import load_description
from tenants.models import Customer, Tenant
from tests.browser import chromium, requires_chromium, screenshot
from tests.conftest import PROJECT_DIR, TEST_QUEUE

pytestmark = [pytest.mark.browser, pytest.mark.integration, requires_chromium]


class Demo:
    """`manage.py demo` in a subprocess, with its output kept for reading."""

    def __init__(self, run_dir: Path) -> None:
        self.port, self.emulator_port = free_port(), free_port()
        self.log_path = run_dir / "demo.log"
        self._log = self.log_path.open("w")
        env = dict(
            os.environ,
            DJANGO_SETTINGS_MODULE="tests.settings_worker",
            CELERY_QUEUE=TEST_QUEUE,
        )
        self.process = subprocess.Popen(
            [
                sys.executable, "manage.py", "demo",
                "--port", str(self.port), "--emulator-port", str(self.emulator_port),
                "--run-dir", str(run_dir),
            ],
            cwd=PROJECT_DIR, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"
        self.run_dir = run_dir

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            output = self.output()
            if text in output:
                return output
            if self.process.poll() is not None:
                raise AssertionError(f"the demo exited early:\n{output[-3000:]}")
            time.sleep(0.5)
        raise AssertionError(f"no {text!r} from the demo in {timeout} s")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # what Ctrl-C does, in order
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


@pytest.fixture
def demo(transactional_db, tmp_path):
    running = Demo(tmp_path)
    try:
        yield running
    finally:
        code = running.stop()
        assert code == 0, running.output()[-3000:]


def wait_until(predicate, timeout: float, what: str, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} within {timeout} s")


def test_the_demo_from_sign_in_to_a_newly_onboarded_customer(demo):
    output = demo.wait_for_output("Press Ctrl-C to stop everything.")
    link = re.search(r"open\n\s+(https://\S+)", output)[1]
    admin_upn, admin_password = re.search(
        r"sign in as (\S+@\S+) / (\S+) \(your browser", output
    ).groups()
    server_cert = load_description(demo.run_dir / ".emulator")["server_cert_path"]
    onboarded = [c.name for c in Customer.objects.filter(tenants__state="verified")]
    assert len(onboarded) == 4  # three syncing and the throttled one

    with chromium(server_cert) as browser:
        staff = browser.new_context(viewport={"width": 1500, "height": 950})
        page = staff.new_page()
        page.set_default_timeout(30_000)
        page.goto(f"{demo.url}/accounts/login/")
        page.get_by_label("User name").fill("demo")
        page.get_by_label("Password").fill("demo-portal-2026")
        page.get_by_role("button", name="Sign in", exact=True).click()
        page.wait_for_url(f"{demo.url}/queue")

        syncing = ["Contoso 1", "Contoso 2", "Contoso 3"]

        def queue_shows_all_three() -> bool:
            page.goto(f"{demo.url}/queue")
            rows = page.locator("main tr[data-alert]").all_inner_texts()
            return all(any(name in row for row in rows) for name in syncing)

        wait_until(queue_shows_all_three, 120, "alerts of the three customers")
        screenshot(page, "demo-queue")
        page.goto(f"{demo.url}/health")
        screenshot(page, "demo-tenant-health")
        health = page.locator("main").inner_text()
        assert "revoked" in health.lower()
        assert "throttl" in health.lower()

        admin = browser.new_context(viewport={"width": 1200, "height": 900})
        admin_page = admin.new_page()
        admin_page.set_default_timeout(30_000)
        admin_page.goto(link)
        admin_page.get_by_label("Email, phone, or Skype").fill(admin_upn)
        admin_page.get_by_label("Password").fill(admin_password)
        admin_page.get_by_role("button", name="Sign in").click()
        screenshot(admin_page, "demo-consent-page")
        admin_page.get_by_role("button", name="Accept").click()
        admin_page.wait_for_url(f"{demo.url}/consent/*")
        admin_page.get_by_text("Access confirmed").wait_for(timeout=90_000)
        screenshot(admin_page, "demo-consent-confirmed")

        newcomer = Customer.objects.get(name="Contoso 4")
        assert newcomer.tenants.get().state == Tenant.State.VERIFIED

        def newcomer_alerts_listed() -> bool:
            page.goto(f"{demo.url}/queue?customer={newcomer.code}")
            return page.locator("main tr[data-alert]").count() > 0

        wait_until(newcomer_alerts_listed, 120, "the new customer's alerts")
        assert Alert.objects.filter(tenant__customer=newcomer).exists()
        screenshot(page, "demo-queue-new-customer")
        page.locator("main a[href^='/alerts/']").first.click()
        page.wait_for_url(f"{demo.url}/alerts/*")
        screenshot(page, "demo-alert-detail")

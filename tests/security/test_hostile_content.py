"""Hostile tenant content, end to end: script, HTML and javascript: URL payloads in
every text field of alerts and their evidence, put into the emulator, synced by a real
worker through the real normaliser, then opened in real Chromium on every page that
shows them. Nothing may run, no javascript: link may exist, links lead only to
Microsoft's portals, and every page carries the Content-Security-Policy.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model

from alerts.models import Alert, Incident
from tests.browser import chromium, requires_chromium
from tests.conftest import WorkerProcess
from tests.tenants.sync_helpers import consented_emulator, verified_tenants

pytestmark = [pytest.mark.browser, pytest.mark.integration, requires_chromium]

PASSWORD = "pw-hostile-admin-1"
MARK = "xss7e1"
# Each payload would set window.pwned or open a dialog if it ever ran.
SCRIPT = f'<script>window.pwned="{MARK}";alert(1)</script>'
IMG = f'<img src=x onerror="window.pwned=1;alert(2)">{MARK}'
SVG = '"><svg/onload=alert(3)>'
ATTR = "' onmouseover='alert(4)' x='"
JS_URL = "javascript:alert(document.cookie)"
HOSTILE = f"{SCRIPT}{IMG}{SVG}{ATTR}"
FOREIGN_URL = "https://evil.example/phish?x=<b>"
ENTITIES = {
    "user": f"{MARK}{SVG}",
    "display": f"Eve {SCRIPT}",
    "upn": f"eve{IMG}@contoso.example",
    "netbios": f"<b>{MARK}</b>",
    "host": f"{MARK}-{IMG}.contoso.local",
    "file": f"{SCRIPT}.exe",
    "file_path": f"C:\\{IMG}\\",
    "url": JS_URL,
    "cmd": f'powershell -c "{SCRIPT}" {JS_URL}',
    "ip": f"10.0.0.1{SVG}",
    "app": f"App {IMG}",
    "country": HOSTILE,
    "sha1": f"{SVG}",
}
FIELDS = {
    "title": f"Hostile {HOSTILE}",
    "description": f"{HOSTILE} {JS_URL} {FOREIGN_URL}",
    "category": f"Cat{IMG}",
    "assignedTo": f"{SCRIPT}@contoso.example",
    "determination": f"Mal{SVG}",
    "detectionSource": HOSTILE,
    "threatFamilyName": HOSTILE,
    "mitreTechniques": [HOSTILE],
    "comments": [
        {
            "comment": HOSTILE,
            "createdBy": f"{IMG}@contoso.example",
            "createdTime": "2024-05-01T10:00:00Z",
        }
    ],
    "entities": ENTITIES,
    "evidenceKinds": ["Process", "User", "File", "Ip", "Url", "Registry", "MailBox"],
}
FAST = {
    "SYNC_INTERVAL_SECONDS": "2",
    "SYNC_OVERLAP_SECONDS": "60",
    "SYNC_LEASE_SECONDS": "10",
    "SYNC_DISPATCH_SECONDS": "1",
}
# What the page tells about itself: anything that ran, any on* attribute that made it
# into the DOM, any javascript: URL, and every absolute link.
PROBE = """() => {
  const attrs = [];
  for (const el of document.querySelectorAll('*')) {
    for (const a of el.attributes) {
      const v = (a.value || '').replace(/[\\s\\u0000-\\u001f]/g, '').toLowerCase();
      if (a.name.startsWith('on')) attrs.push(el.tagName + ' ' + a.name);
      if (v.startsWith('javascript:') || v.startsWith('data:text/html'))
        attrs.push(el.tagName + ' ' + a.name + '=' + a.value);
    }
  }
  const inline = [...document.scripts].filter(s => !s.src).map(s => s.text);
  const links = [...document.querySelectorAll('a[href], area[href], form[action]')]
    .map(el => el.href || el.action);
  return {pwned: window.pwned === undefined ? null : String(window.pwned),
          attrs, inline, links, text: document.body.innerText};
}"""


@pytest.fixture
def emulator(tmp_path_factory):
    with consented_emulator(
        tmp_path_factory, tenants=1, backlog_per_tenant=10, alerts_per_minute=0
    ) as emu:
        yield emu


@pytest.fixture
def synced(transactional_db, portal_on_emulator, emulator, tmp_path):
    """Hostile alerts of three kinds (endpoint, Cloud Apps, Office) in the emulator,
    synced from all five sources by a real worker and beat."""
    tenant = verified_tenants(emulator, count=1)[0]
    tid = str(tenant.tenant_id)
    made = {
        source: emulator.control(
            "POST", "alerts", {"tenant": tid, "source": source, "fields": FIELDS}
        )["result"]
        for source in ("mde", "mcas", "mdo")
    }
    worker = WorkerProcess(
        extra_args=["-B", "-s", str(tmp_path / "beat")],
        env={**portal_on_emulator, **FAST},
    )
    try:
        worker.wait_ready()
        wanted = {
            ("mde", made["mde"]["id"]),
            ("graph", made["mde"]["id"]),
            ("graph", made["mcas"]["id"]),
            ("graph", made["mdo"]["id"]),
            ("xdr", made["mdo"]["id"]),
            ("mcas", made["mcas"]["providerAlertId"]),
        }
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            have = set(
                Alert.objects.filter(title__contains=MARK).values_list(
                    "source", "provider_id"
                )
            )
            incidents = Incident.objects.filter(title__contains=MARK).count()
            if wanted <= have and incidents >= 2:
                break
            time.sleep(1)
        else:
            pytest.fail(f"hostile alerts not synced: have {have}, want {wanted}")
    finally:
        worker.stop()
    return tenant


def test_synced_hostile_text_reaches_the_rows_verbatim(synced):
    """The normaliser keeps the text as it came (escaping is the template's job), so
    the browser test below really renders the payloads."""
    alert = Alert.objects.get(tenant=synced, source="mde", title__contains=MARK)
    assert alert.title == FIELDS["title"]
    assert alert.description == FIELDS["description"]
    assert alert.category == FIELDS["category"]
    assert alert.assigned_to == FIELDS["assignedTo"]
    names = {row["name"] for row in alert.evidence}
    assert ENTITIES["cmd"] in names and ENTITIES["url"] in names
    assert ENTITIES["file"] in names
    assert any(ENTITIES["host"] == d["name"] for d in alert.devices)
    assert alert.portal_url.startswith("https://security.microsoft.com/")
    mcas = Alert.objects.get(tenant=synced, source="mcas", title__contains=MARK)
    assert any(ENTITIES["upn"] in str(row) for row in mcas.evidence)


def note_console(problems: list[str], message) -> None:
    # A failed load is reported below with its URL (the browser's favicon probe
    # is the one expected 404).
    if message.type == "error" and not message.text.startswith("Failed to load"):
        problems.append(f"console {message.text}")


def note_response(problems: list[str], response) -> None:
    if response.status >= 400 and not response.url.endswith("/favicon.ico"):
        problems.append(f"{response.status} {response.url}")


def pages_to_open(tenant) -> list[str]:
    alerts = Alert.objects.filter(tenant=tenant, title__contains=MARK)
    incidents = Incident.objects.filter(tenant=tenant, title__contains=MARK)
    urls = [
        "/queue",
        f"/queue?q={MARK}",
        f"/queue?category={FIELDS['category']}",
        "/incidents",
        "/incidents?all=1",
        "/overview",
        "/health",
        f"/customers/{tenant.customer.code}/",
        "/admin/alerts/alert/",
        f"/admin/alerts/alert/?q={MARK}",
        "/admin/alerts/incident/",
        "/admin/sync/syncstate/",
    ]
    urls += [f"/alerts/{a.code}" for a in alerts]
    urls += [f"/incidents/{i.code}" for i in incidents]
    urls += [f"/admin/alerts/alert/{a.pk}/change/" for a in alerts]
    urls += [f"/admin/alerts/incident/{i.pk}/change/" for i in incidents]
    return urls


def test_hostile_content_runs_nothing_on_any_page(synced, live_server, emulator):
    get_user_model().objects.create_superuser(
        "soc.lead", "soc.lead@mssp.example", PASSWORD
    )
    base = live_server.url
    allowed_hosts = {
        urlsplit(base).netloc,
        "security.microsoft.com",
        urlsplit(emulator.base_url).netloc,  # the demo's Defender portal
    }
    urls = pages_to_open(synced)
    assert len(urls) > 20
    with chromium() as browser:
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(20_000)
        problems: list[str] = []
        page.on(
            "dialog", lambda d: (problems.append(f"dialog {d.message}"), d.dismiss())
        )
        page.on("pageerror", lambda e: problems.append(f"pageerror {e}"))
        page.on("console", lambda m: note_console(problems, m))
        page.on("response", lambda r: note_response(problems, r))
        page.goto(f"{base}/accounts/login/?next=/queue")
        page.get_by_label("User name").fill("soc.lead")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in", exact=True).click()
        page.wait_for_url(f"{base}/queue")
        shown = 0
        for url in urls:
            response = page.goto(base + url)
            assert response.status == 200, url
            assert "Content-Security-Policy" in response.headers or (
                "content-security-policy" in response.headers
            ), url
            csp = response.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "object-src 'none'" in csp, url
            # Open every <details> (raw payload, evidence); move the mouse over all.
            page.evaluate(
                """() => {
                  document.querySelectorAll('details').forEach(d => d.open = true);
                  document.querySelectorAll('body *').forEach(el => el.dispatchEvent(
                    new MouseEvent('mouseover', {bubbles: true})));
                }"""
            )
            time.sleep(0.3)
            seen = page.evaluate(PROBE)
            assert seen["pwned"] is None, url
            assert seen["attrs"] == [], (url, seen["attrs"])
            assert not any(MARK in s or "alert(" in s for s in seen["inline"]), url
            for link in seen["links"]:
                parts = urlsplit(link)
                assert parts.scheme in ("http", "https"), (url, link)
                assert parts.netloc in allowed_hosts, (url, link)
            if MARK in seen["text"]:
                shown += 1
        assert problems == [], problems
        # The payloads were on the pages, as text.
        assert shown >= len(urls) - 6, shown

"""A canary client secret, the canary tokens the emulator issues for it and a consent
link's state never appear in worker or web logs, task messages, what staff see when
tokens fail, any page, or any text or JSON column of any table (sessions decoded).

The emulator's app secret is rotated to a fresh random value and the portal and a
real worker (logging at DEBUG, the most talkative it gets) use it; the tokens are
read back from the shared token cache in Redis, which is where they belong.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time

import pytest
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client

from alerts.models import Alert
from core.models import Alarm
from tenants import microsoft, services
from tenants.models import Capability, Tenant
from tests.conftest import TEST_QUEUE, WorkerProcess
from tests.tenants.sync_helpers import consented_emulator, verified_tenants

pytestmark = pytest.mark.integration

FAST = {
    "SYNC_INTERVAL_SECONDS": "2",
    "SYNC_LEASE_SECONDS": "10",
    "SYNC_DISPATCH_SECONDS": "1",
    "LOG_LEVEL": "DEBUG",
}


@pytest.fixture
def emulator(tmp_path_factory):
    with consented_emulator(tmp_path_factory, tenants=1, backlog_per_tenant=15) as emu:
        yield emu


@pytest.fixture
def canary(settings, portal_on_emulator, emulator) -> dict:
    """The portal (this process and its workers) on a freshly rotated secret."""
    secret = emulator.control("POST", "app/secret/rotate")["client_secret"]
    settings.MS_CLIENT_SECRET = secret
    microsoft.reset_client()
    return {**portal_on_emulator, "MS_CLIENT_SECRET": secret}


def cached_tokens() -> list[str]:
    """Access tokens in the portal's shared token cache (Redis)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    found = []
    for key in client.scan_iter("*:token:*", count=1000):
        raw = client.get(key)
        if raw and b"access_token" in raw:
            found.append(json.loads(raw)["access_token"])
    return found


def queued_messages() -> list[str]:
    """Every task message waiting or unacknowledged in this run's queue, decoded."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    texts = []
    raw = [*client.lrange(TEST_QUEUE, 0, -1), *client.hvals("unacked")]
    for item in raw:
        text = item.decode(errors="replace")
        texts.append(text)
        for body in re.findall(r'"body": "([A-Za-z0-9+/=]+)"', text):
            texts.append(base64.b64decode(body).decode(errors="replace"))
    return texts


def database_text() -> str:
    """Every text, varchar and JSON value of every table, and every session decoded."""
    parts = []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type IN "
            "('text', 'character varying', 'json', 'jsonb', 'ARRAY')"
        )
        columns = cursor.fetchall()
        for table, column in columns:
            cursor.execute(
                f'SELECT "{column}"::text FROM "{table}" '  # noqa: S608 (catalogue names)
                f'WHERE "{column}" IS NOT NULL'
            )
            parts.extend(row[0] for row in cursor.fetchall())
    for session in Session.objects.all():
        parts.append(json.dumps(session.get_decoded(), default=str))
    assert len(columns) > 50
    return "\n".join(parts)


def jwt_parts(tokens: list[str]) -> list[str]:
    """A token, and its signature alone (enough to recognise a leaked token)."""
    return [p for t in tokens for p in (t, t.rsplit(".", 1)[-1])]


def staff_pages(client: Client, tenant: Tenant) -> dict[str, str]:
    urls = [
        "/",
        "/queue",
        "/queue/export.csv",
        "/overview",
        "/health",
        "/incidents",
        f"/customers/{tenant.customer.code}/",
        "/admin/",
        "/admin/tenants/tenant/",
        f"/admin/tenants/tenant/{tenant.pk}/change/",
        "/admin/sync/syncstate/",
        "/admin/sync/syncrun/",
        "/admin/core/alarm/",
        "/admin/core/auditevent/",
        "/admin/tenants/capability/",
        "/admin/tenants/consentlink/",
    ]
    alert = Alert.objects.filter(tenant=tenant).first()
    if alert:
        urls += [f"/alerts/{alert.code}", f"/admin/alerts/alert/{alert.pk}/change/"]
    pages = {}
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        pages[url] = response.content.decode(errors="replace")
    return pages


def assert_absent(canaries: list[str], where: str, text: str) -> None:
    for value in canaries:
        assert value not in text, f"a canary ({value[:6]}...) is in {where}"


def test_canary_secret_tokens_and_state_never_leave_their_place(
    transactional_db, canary, emulator, tmp_path, caplog
):
    caplog.set_level(logging.DEBUG)
    secret = canary["MS_CLIENT_SECRET"]
    tenant = verified_tenants(emulator, count=1)[0]
    staff = get_user_model().objects.create_superuser("sec.lead", password="pw-s3c!")
    web = Client(raise_request_exception=False)
    web.force_login(staff)
    # A consent link made and shown through the web, as staff do.
    response = web.post(f"/customers/{tenant.customer.code}/consent-links")
    assert response.status_code == 302
    detail = web.get(f"/customers/{tenant.customer.code}/").content.decode()
    state = re.search(r"state=([A-Za-z0-9_\-]{40,})", detail).group(1)

    worker = WorkerProcess(
        extra_args=["-B", "-s", str(tmp_path / "beat"), "--loglevel", "DEBUG"],
        env={**canary, **FAST},
    )
    try:
        worker.wait_ready()
        services.request_reverification(actor=staff, tenant=tenant)
        deadline = time.monotonic() + 90
        while not Alert.objects.filter(tenant=tenant, source="graph").exists():
            assert time.monotonic() < deadline, "nothing synced with the canary"
            time.sleep(0.5)
        messages = queued_messages()
        tokens = cached_tokens()
        assert tokens, "no token was cached: the canary tokens are unknown"
        # Then token requests fail: the secret expires, Microsoft says so.
        emulator.control("POST", "app/secret/expire")
        microsoft.get_client().forget_tenant(str(tenant.tenant_id))
        services.request_reverification(actor=staff, tenant=tenant)
        deadline = time.monotonic() + 60
        while not Alarm.objects.exists():
            assert time.monotonic() < deadline, "the failing token was never shown"
            time.sleep(0.5)
        time.sleep(3)  # a few sync runs meet the broken credential too
        messages += queued_messages()
    finally:
        worker.stop()

    canaries = [secret, state, *jwt_parts(tokens)]
    worker_log = worker.log_path.read_text()
    assert "Task tenants.tasks.sync_source" in worker_log  # the log is the real one
    assert_absent(canaries, "the worker's log", worker_log)
    assert_absent(canaries, "a task message", "\n".join(messages))
    assert any("sync_source" in m for m in messages) or "received" in worker_log
    pages = staff_pages(web, tenant)
    for url, html in pages.items():
        assert_absent(canaries, url, html)
    shown = "\n".join(pages.values())
    assert "secret" in shown.lower() or "credential" in shown.lower()  # it is shown
    assert_absent(canaries, "the web log", caplog.text)
    assert_absent(canaries, "the database", database_text())
    assert Capability.objects.filter(tenant=tenant).exists()

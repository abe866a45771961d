"""Web baseline beyond tests/security/test_web_baseline.py: the session cookie a real
password sign-in sets in production, and CSRF on htmx requests."""

import json
import os
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from tests.conftest import PROJECT_DIR
from tests.factories import AlertFactory, CustomerFactory, TenantFactory
from tests.partnerportal.test_settings import PRODUCTION

SIGN_IN = """
import json, django
django.setup()
from django.test import Client
client = Client()
host = {"secure": True, "HTTP_HOST": "portal.example.com", "REMOTE_ADDR": "192.0.2.81"}
client.get("/accounts/login/", **host)
token = client.cookies["csrftoken"].value
response = client.post(
    "/accounts/login/",
    {"username": "prod.lead", "password": "pw-pr0d-lead!",
     "csrfmiddlewaretoken": token},
    HTTP_REFERER="https://portal.example.com/accounts/login/",
    **host,
)
if "sessionid" not in response.cookies:
    raise SystemExit(f"no session: {response.status_code} {response.content[-1500:]}")
cookie = response.cookies["sessionid"]
print(json.dumps({
    "status": response.status_code,
    "location": response.get("Location", ""),
    "secure": bool(cookie["secure"]),
    "httponly": bool(cookie["httponly"]),
    "samesite": cookie["samesite"],
    "rotated": client.cookies["csrftoken"].value != token,
}))
"""


def test_a_real_sign_in_in_production_sets_a_secure_httponly_samesite_session(
    transactional_db, collected_static
):
    get_user_model().objects.create_user("prod.lead", password="pw-pr0d-lead!")
    database = settings.DATABASES["default"]
    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    env.pop("MS_EMULATOR", None)
    env.update(
        PRODUCTION,
        DJANGO_SETTINGS_MODULE="partnerportal.settings",
        # The production settings, on this test's own database and Redis.
        # The run's own DATABASE_URL (a TCP host or the embedded server's socket),
        # pointed at the test database.
        DATABASE_URL=urlunsplit(
            urlsplit(os.environ["DATABASE_URL"])._replace(path=f"/{database['NAME']}")
        ),
        REDIS_URL=settings.REDIS_URL,
        STATIC_ROOT=str(collected_static),
    )
    result = subprocess.run(
        [sys.executable, "-c", SIGN_IN],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["status"] == 302, probe
    assert not probe["location"].startswith("/accounts/login"), probe
    assert (probe["secure"], probe["httponly"], probe["samesite"]) == (
        True,
        True,
        "Lax",
    )
    assert probe["rotated"]  # a new CSRF secret after signing in


@pytest.fixture
def analyst_client(db):
    analyst = get_user_model().objects.create_user("htmx.lead", password="pw-hx-1!")
    tenant = TenantFactory(customer=CustomerFactory(staff=[analyst]))
    alert = AlertFactory(tenant=tenant)
    client = Client(enforce_csrf_checks=True)
    client.force_login(analyst)
    return client, alert


def test_htmx_posts_need_the_csrf_header_the_page_sets(analyst_client):
    client, alert = analyst_client
    page = client.get(f"/alerts/{alert.code}").content.decode()
    htmx = {"HX-Request": "true", "HX-Target": "triage-actions"}
    triage = f"/alerts/{alert.code}/triage"
    data = {"based_on": alert.updated_at_source.isoformat(), "comment": "x"}
    # Without the header (or with a wrong one) htmx gets nowhere.
    assert client.post(triage, data, headers=htmx).status_code == 403
    wrong = {**htmx, "X-CSRFToken": "A" * 64}
    assert client.post(triage, data, headers=wrong).status_code == 403
    # The token <body hx-headers> carries is the one that works.
    marker = 'hx-headers=\'{"X-CSRFToken": "'
    assert marker in page
    token = page.split(marker, 1)[1].split('"', 1)[0]
    response = client.post(triage, data, headers={**htmx, "X-CSRFToken": token})
    assert response.status_code != 403

"""The web baseline in production mode: cookies, headers, deploy checks."""

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import PROJECT_DIR

# check --deploy itself is tested in tests/partnerportal/test_settings.py.
from tests.partnerportal.test_settings import PRODUCTION

PROBE = """
import json, django
django.setup()
from django.conf import settings
from django.test import Client
response = Client().get("/accounts/login/", secure=True, HTTP_HOST="portal.example.com")
cookie = response.cookies["csrftoken"]
print(json.dumps({
    "status": response.status_code,
    "csrf_cookie": {
        "secure": bool(cookie["secure"]),
        "httponly": bool(cookie["httponly"]),
        "samesite": cookie["samesite"],
    },
    "session_secure": settings.SESSION_COOKIE_SECURE,
    "session_httponly": settings.SESSION_COOKIE_HTTPONLY,
    "session_samesite": settings.SESSION_COOKIE_SAMESITE,
    "hsts": response.headers.get("Strict-Transport-Security", ""),
    "frame": response.headers.get("X-Frame-Options", ""),
    "nosniff": response.headers.get("X-Content-Type-Options", ""),
    "plain_http": Client()
    .get("/accounts/login/", HTTP_HOST="portal.example.com")
    .status_code,
}))
"""


def production_probe(static_root: Path) -> dict:
    import os

    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    env.update(
        PRODUCTION,
        DJANGO_SETTINGS_MODULE="partnerportal.settings",
        STATIC_ROOT=str(static_root),
    )
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_cookies_are_secure_httponly_and_samesite_in_production(collected_static):
    probe = production_probe(collected_static)
    assert probe["status"] == 200
    assert probe["csrf_cookie"] == {"secure": True, "httponly": True, "samesite": "Lax"}
    assert probe["session_secure"] is True
    assert probe["session_httponly"] is True
    assert probe["session_samesite"] == "Lax"


def test_production_sends_hsts_and_refuses_framing_and_plain_http(collected_static):
    probe = production_probe(collected_static)
    assert "max-age=31536000" in probe["hsts"]
    assert probe["frame"] == "DENY"
    assert probe["nosniff"] == "nosniff"
    assert probe["plain_http"] == 301  # redirected to https

"""Settings fail loudly in production and `check --deploy` is clean."""

import os
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_DIR

PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "k3V9!x" * 10,
    "ALLOWED_HOSTS": "portal.example.com",
    "DATABASE_URL": "postgres://portal:pw@db.example.com:5432/portal",
    "REDIS_URL": "redis://cache.example.com:6379/0",
    "MS_CLIENT_ID": "00001111-aaaa-2222-bbbb-3333cccc4444",
    "MS_CLIENT_SECRET": "not-a-real-secret",
    "PORTAL_BASE_URL": "https://portal.example.com",
}


def run_django(env_overrides: dict[str, str | None], *args: str):
    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION}
    for name in ("MS_EMULATOR", "DJANGO_ALLOW_ASYNC_UNSAFE"):
        env.pop(name, None)
    env.pop("MS_CLIENT_CERT_PATH", None)
    for key, value in env_overrides.items():
        if value is not None:
            env[key] = value
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "missing",
    [
        "SECRET_KEY",
        "ALLOWED_HOSTS",
        "DATABASE_URL",
        "REDIS_URL",
        "MS_CLIENT_ID",
        "PORTAL_BASE_URL",
    ],
)
def test_production_refuses_to_start_without_a_required_value(missing):
    result = run_django({**PRODUCTION, missing: None}, "check")
    assert result.returncode != 0
    assert f"{missing} is not set" in result.stderr


def test_production_refuses_to_start_without_a_partner_credential():
    result = run_django({**PRODUCTION, "MS_CLIENT_SECRET": None}, "check")
    assert result.returncode != 0
    assert "MS_CLIENT_SECRET or MS_CLIENT_CERT_PATH is not set" in result.stderr


def test_a_certificate_alone_is_an_acceptable_partner_credential():
    env = {**PRODUCTION, "MS_CLIENT_SECRET": None, "MS_CLIENT_CERT_PATH": "/etc/c.pem"}
    result = run_django(env, "check")
    assert result.returncode == 0, result.stderr


def test_a_bad_boolean_is_an_error_naming_the_variable():
    result = run_django({**PRODUCTION, "DEBUG": "maybe"}, "check")
    assert result.returncode != 0
    assert "DEBUG='maybe' is not a boolean" in result.stderr


def test_check_deploy_is_clean_in_production():
    result = run_django(PRODUCTION, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_refuses_the_emulator_in_production():
    result = run_django({**PRODUCTION, "MS_EMULATOR": "true"}, "check", "--deploy")
    assert result.returncode != 0
    assert "partnerportal.E001" in result.stderr


def test_check_deploy_refuses_plain_http_microsoft_urls():
    env = {**PRODUCTION, "MS_GRAPH_URL": "http://graph.example.com"}
    result = run_django(env, "check", "--deploy")
    assert result.returncode != 0
    assert "MS_GRAPH_URL is not an https:// URL" in result.stderr

"""/healthz reports Postgres, Redis and the workers; 503 when one is down."""

import os
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_DIR


def test_healthz_is_ok_with_a_running_worker(client, celery_worker_process):
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert body["parts"]["postgres"]["status"] == "ok"
    assert body["parts"]["redis"]["status"] == "ok"
    assert body["parts"]["workers"]["status"] == "ok"
    assert body["parts"]["workers"]["latency_ms"] > 0


def test_healthz_names_the_workers_when_the_worker_is_stopped(
    client, celery_worker_process
):
    assert client.get("/healthz").status_code == 200
    celery_worker_process.stop()
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 503
    assert body["down"] == ["workers"] or "workers" in body["down"]
    assert "No Celery worker answered" in body["parts"]["workers"]["error"]


@pytest.mark.django_db
def test_healthz_names_redis_when_the_broker_is_unreachable(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 503
    assert "redis" in body["down"]
    assert "Redis is unreachable" in body["parts"]["redis"]["error"]
    assert body["parts"]["postgres"]["status"] == "ok"


def test_healthz_names_postgres_when_the_database_is_unreachable():
    script = (
        "import django, json; django.setup();"
        "from django.test import Client;"
        "r = Client().get('/healthz');"
        "print(r.status_code, json.dumps(r.json()['down']))"
    )
    env = dict(
        os.environ,
        DEBUG="true",
        DATABASE_URL="postgres://nobody@127.0.0.1:1/none",
        ALLOWED_HOSTS="testserver",
        DJANGO_SETTINGS_MODULE="partnerportal.settings",
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    status, down = result.stdout.strip().splitlines()[-1].split(" ", 1)
    assert status == "503"
    assert "postgres" in down

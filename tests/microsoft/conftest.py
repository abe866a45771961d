"""Fixtures: a real emulator over HTTPS, real MSAL, real Redis, fresh cache keys."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings

from emulator.testing import RunningEmulator, run_emulator
from tenants.microsoft.client import MicrosoftClient


@pytest.fixture(scope="session")
def emulator_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One state folder for the session: keys and certificates are made once."""
    return tmp_path_factory.mktemp("emulator-state")


@pytest.fixture
def emu(emulator_state_dir: Path) -> Iterator[RunningEmulator]:
    """A fresh emulator world (three consented tenants) on a free HTTPS port."""
    with run_emulator(emulator_state_dir, tenants=3, consented=True) as running:
        yield running


@pytest.fixture
def tenant(emu: RunningEmulator) -> dict:
    """The first customer tenant, with its Cloud Apps URL."""
    first = dict(emu.description["tenants"][0])
    first["mcas_url"] = emu.world.tenants[first["id"]].mcas_url
    return first


@pytest.fixture
def cache_prefix() -> Iterator[str]:
    """A Redis key prefix of our own; its keys are deleted afterwards."""
    prefix = f"test-msft-{uuid.uuid4().hex[:12]}"
    yield prefix
    connection = redis.Redis.from_url(settings.REDIS_URL)
    for key in connection.scan_iter(f"{prefix}:*"):
        connection.delete(key)
    connection.close()


@pytest.fixture
def client_options(emu: RunningEmulator, cache_prefix: str) -> dict:
    """Keyword arguments for a ``MicrosoftClient`` pointed at the emulator."""
    return {
        "client_id": emu.client_id,
        "client_secret": emu.client_secret,
        "login_url": emu.base_url,
        "defender_url": f"{emu.base_url}/defender",
        "graph_url": f"{emu.base_url}/graph",
        "ca_bundle": emu.ca_path,
        "redis_url": settings.REDIS_URL,
        "emulator": True,
        "backoff": 0.01,
        "cache_prefix": cache_prefix,
    }


@pytest.fixture
def make_client(client_options: dict) -> Iterator[Callable[..., MicrosoftClient]]:
    """Build clients (closed at the end); keyword arguments override the defaults."""
    made: list[MicrosoftClient] = []

    def build(**overrides) -> MicrosoftClient:
        client = MicrosoftClient(**{**client_options, **overrides})
        made.append(client)
        return client

    yield build
    for client in made:
        client.close()


@pytest.fixture
def cert_pem(emu: RunningEmulator, tmp_path: Path) -> str:
    """The app certificate and its key in one PEM (the MS_CLIENT_CERT_PATH form)."""
    path = tmp_path / "partner-app.pem"
    path.write_text(
        Path(emu.key_path).read_text() + "\n" + Path(emu.cert_path).read_text()
    )
    path.chmod(0o600)
    return str(path)


def requests_to(emu: RunningEmulator, suffix: str, method: str = "") -> list[dict]:
    """The emulator's logged requests whose path ends with ``suffix``."""
    log = emu.control("GET", "requests")["requests"]
    return [
        entry
        for entry in log
        if entry["path"].endswith(suffix) and (not method or entry["method"] == method)
    ]


def token_requests(emu: RunningEmulator, tenant_id: str | None = None) -> list[dict]:
    """Logged token requests (optionally for one tenant)."""
    return [
        entry
        for entry in requests_to(emu, "/oauth2/v2.0/token", "POST")
        if tenant_id is None or entry["path"].strip("/").split("/")[0] == tenant_id
    ]

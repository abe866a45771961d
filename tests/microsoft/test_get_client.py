"""get_client(): one client per process, built from Django settings."""

from __future__ import annotations

import pytest

from tenants import microsoft
from tests.microsoft.conftest import token_requests


@pytest.fixture
def emulator_settings(settings, emu, cert_pem):
    settings.MS_CLIENT_ID = emu.client_id
    settings.MS_CLIENT_SECRET = ""
    settings.MS_CLIENT_CERT_PATH = cert_pem
    settings.MS_LOGIN_URL = emu.base_url
    settings.MS_DEFENDER_URL = f"{emu.base_url}/defender"
    settings.MS_GRAPH_URL = f"{emu.base_url}/graph"
    settings.MS_CA_BUNDLE = emu.ca_path
    settings.MS_EMULATOR = True
    microsoft.reset_client()
    yield settings
    client = microsoft.get_client()
    for tenant in emu.description["tenants"]:
        client.forget_tenant(tenant["id"])
    microsoft.reset_client()


def test_get_client_is_built_from_settings_and_cached(emulator_settings, emu, tenant):
    client = microsoft.get_client()

    assert microsoft.get_client() is client
    assert client.credential_kind == "certificate"
    client.probe(tenant["id"], "mde_alerts", region=tenant["region"])
    assert len(token_requests(emu, tenant["id"])) == 1


def test_reset_client_builds_a_new_one(emulator_settings):
    first = microsoft.get_client()

    microsoft.reset_client()

    assert microsoft.get_client() is not first

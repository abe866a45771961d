"""Emulator fixtures: a real HTTPS emulator per test, keys made once per session."""

from __future__ import annotations

import msal
import pytest

from emulator.testing import run_emulator


@pytest.fixture(scope="session")
def emulator_state_dir(tmp_path_factory):
    """One state folder per test session, so the CA and keys are made only once."""
    return tmp_path_factory.mktemp("emulator-state")


@pytest.fixture
def emulator(emulator_state_dir):
    """A fresh default world (3 customer tenants, none consented) served over HTTPS."""
    with run_emulator(emulator_state_dir, seed=7, tenants=3) as running:
        yield running


@pytest.fixture
def make_msal_app(emulator):
    """Build a real MSAL confidential client for a tenant of the running emulator."""

    def build(tenant_id: str, credential=None, session=None):
        return msal.ConfidentialClientApplication(
            emulator.client_id,
            client_credential=credential or emulator.client_secret,
            authority=f"{emulator.base_url}/{tenant_id}",
            instance_discovery=False,
            azure_region=False,
            http_client=session or emulator.session(),
        )

    return build

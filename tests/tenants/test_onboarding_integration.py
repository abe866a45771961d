"""Onboarding end to end: the emulator over HTTPS, a real Celery worker, real Redis.

The customer's admin goes through the emulator's consent pages (plain HTTPS requests
here; test_onboarding_browser.py does it in Chromium), Microsoft's redirect
reaches our callback, and a real worker proves access with real MSAL tokens.
"""

import re
import time
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.utils.html import escape

from core.models import Alarm, AuditEvent
from emulator.scripted import follow_consent_link
from tenants import services
from tenants.models import Capability, ConsentLink, Tenant
from tests.conftest import WorkerProcess

pytestmark = pytest.mark.integration


def admin_follows_link(emulator, url: str, tenant_index: int, action: str = "accept"):
    """The customer's admin opens the link, signs in and presses a button.

    Returns where Microsoft (the emulator) sends the browser back: our callback URL.
    """
    tenant = emulator.description["tenants"][tenant_index]
    admin = tenant["admins"][0]
    location = follow_consent_link(
        emulator.session(),
        url,
        upn=admin["upn"],
        password=admin["password"],
        action=action,
    )
    return tenant, location


def wait_for(predicate, timeout: float = 60, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def tenant_state(tenant_id: str) -> str | None:
    tenant = Tenant.objects.filter(tenant_id=tenant_id).first()
    return tenant.state if tenant else None


@pytest.fixture
def onboarding(transactional_db, portal_on_emulator, emulator):
    staff = get_user_model().objects.create_user("olga", password="pw-olga-12345")
    emulator.control(
        "POST",
        "app/redirect-uris",
        {"uri": services.consent_redirect_uri()},
    )
    worker = WorkerProcess(env=portal_on_emulator)
    try:
        worker.wait_ready()
        yield staff, worker
    finally:
        worker.stop()


def callback_path(location: str) -> str:
    parts = urlsplit(location)
    return f"{parts.path}?{parts.query}"


def test_consent_then_verification_marks_the_tenant_verified(
    onboarding, emulator, client
):
    staff, _ = onboarding
    customer = services.add_customer(actor=staff, name="Contoso 0")
    link, url = services.create_consent_link(actor=staff, customer=customer)
    tenant, location = admin_follows_link(emulator, url, 0)

    response = client.get(callback_path(location))
    assert response.status_code == 302
    status_url = response["Location"]
    assert client.get(status_url).content.count(b"Checking access") == 1

    wait_for(lambda: tenant_state(tenant["id"]) == Tenant.State.VERIFIED)
    record = Tenant.objects.get(tenant_id=tenant["id"])
    capabilities = {c.source: c for c in record.capabilities.all()}
    assert capabilities["mde_alerts"].status == Capability.Status.OK
    assert capabilities["graph_alerts"].status == Capability.Status.OK
    assert "Alert.Read.All" in capabilities["mde_alerts"].granted_roles
    page = client.get(status_url).content.decode()
    assert "Access confirmed" in page
    assert "Defender for Endpoint alerts: Connected" in page
    # The page shows this tenant only: no other customer's name or tenant.
    for other in emulator.description["tenants"][1:]:
        assert other["id"] not in page
        assert other["name"] not in page


def test_a_forged_tenant_is_recorded_but_never_verified(onboarding, emulator, client):
    staff, _ = onboarding
    customer = services.add_customer(actor=staff, name="Forgery target")
    _, url = services.create_consent_link(actor=staff, customer=customer)
    # The admin cancels at Microsoft; an attacker then sends a success for a tenant
    # that never consented, with the state they saw.
    state = re.search(r"state=([^&]+)", url)[1]
    never_consented = emulator.description["tenants"][2]["id"]
    response = client.get(
        "/consent/callback",
        {"admin_consent": "True", "tenant": never_consented, "state": state},
    )
    assert response.status_code == 302
    tenant = Tenant.objects.get(tenant_id=never_consented)
    # Past the replication window the verification calls the consent missing.
    Tenant.objects.filter(pk=tenant.pk).update(
        consented_at=tenant.consented_at - services.CONSENT_REPLICATION_WINDOW * 2
    )
    services.request_reverification(actor=staff, tenant=tenant)
    wait_for(lambda: tenant_state(never_consented) == Tenant.State.REVOKED)
    tenant.refresh_from_db()
    assert tenant.verified_at is None
    assert "AADSTS700016" in tenant.last_error or "consent" in tenant.last_error


def test_verification_waits_while_consent_replicates(onboarding, emulator, client):
    staff, _ = onboarding
    customer = services.add_customer(actor=staff, name="Slow replication")
    link, url = services.create_consent_link(actor=staff, customer=customer)
    tenant, location = admin_follows_link(emulator, url, 1)
    # Microsoft has not replicated the grant yet when our callback runs.
    emulator.control("POST", f"tenants/{tenant['id']}/revoke")
    assert client.get(callback_path(location)).status_code == 302
    time.sleep(3)  # a few verification attempts fail with AADSTS700016
    assert tenant_state(tenant["id"]) == Tenant.State.CONSENTED
    emulator.control("POST", f"tenants/{tenant['id']}/consent")
    wait_for(lambda: tenant_state(tenant["id"]) == Tenant.State.VERIFIED)


def test_revocation_is_detected_on_the_next_verification(onboarding, emulator, client):
    staff, _ = onboarding
    customer = services.add_customer(actor=staff, name="Revoker")
    _, url = services.create_consent_link(actor=staff, customer=customer)
    tenant, location = admin_follows_link(emulator, url, 0)
    client.get(callback_path(location))
    wait_for(lambda: tenant_state(tenant["id"]) == Tenant.State.VERIFIED)

    emulator.control("POST", f"tenants/{tenant['id']}/revoke")
    record = Tenant.objects.get(tenant_id=tenant["id"])
    services.request_reverification(actor=staff, tenant=record)
    wait_for(lambda: tenant_state(tenant["id"]) == Tenant.State.REVOKED)
    record.refresh_from_db()
    assert record.last_error
    assert AuditEvent.objects.filter(action="tenant.revoked", tenant=record).exists()
    # Staff get a one-click new consent link on the customer page.
    client.force_login(staff)
    page = client.get(f"/customers/{customer.code}/").content.decode()
    assert "Consent revoked" in page
    assert "New consent link" in page


def test_a_broken_partner_credential_raises_one_alarm_not_one_per_tenant(
    onboarding, emulator, client
):
    staff, _ = onboarding
    tenants = []
    for index in (0, 1):
        customer = services.add_customer(actor=staff, name=f"Customer {index}")
        _, url = services.create_consent_link(actor=staff, customer=customer)
        tenant, location = admin_follows_link(emulator, url, index)
        client.get(callback_path(location))
        tenants.append(tenant["id"])
    for tenant_id in tenants:
        wait_for(lambda tid=tenant_id: tenant_state(tid) == Tenant.State.VERIFIED)

    emulator.control("POST", "app/secret/expire")
    for record in Tenant.objects.all():
        services.request_reverification(actor=staff, tenant=record)
    alarm = wait_for(lambda: Alarm.objects.filter(cleared_at__isnull=True).first())
    assert "7000222" in alarm.message or "expired" in alarm.message.lower()
    time.sleep(2)
    assert Alarm.objects.count() == 1
    # Tenants are not blamed for our credential.
    assert set(Tenant.objects.values_list("state", flat=True)) == {"verified"}
    client.force_login(staff)
    assert escape(alarm.message) in client.get("/").content.decode()


def test_the_consent_state_never_reaches_a_log(onboarding, emulator, client, caplog):
    staff, worker = onboarding
    customer = services.add_customer(actor=staff, name="Quiet")
    link, url = services.create_consent_link(actor=staff, customer=customer)
    state = re.search(r"state=([^&]+)", url)[1]
    tenant, location = admin_follows_link(emulator, url, 2)
    client.get(callback_path(location))
    wait_for(lambda: tenant_state(tenant["id"]) == Tenant.State.VERIFIED)
    assert ConsentLink.objects.get(pk=link.pk).outcome == "consented"
    worker.stop()
    logs = worker.log_path.read_text() + caplog.text
    assert state not in logs
    assert emulator.client_secret not in logs
    assert "eyJ" not in logs  # no JWT

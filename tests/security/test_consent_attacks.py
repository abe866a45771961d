"""Consent attacks not covered in tests/tenants/test_consent_callback.py: another
customer's valid state with a forged tenant, a 10 kB state, and the consenting
admin's progress page, which shows their own tenant and no one else's."""

import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tenants import services
from tenants.models import ConsentLink, Tenant

ALPHA_TENANT = "a1a1a1a1-0000-4000-8000-00000000a1a1"
BRAVO_TENANT = "b2b2b2b2-0000-4000-8000-00000000b2b2"


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_user("consent.lead", password="pw-c0n!")


def link_state(staff, customer) -> tuple[ConsentLink, str]:
    link, url = services.create_consent_link(actor=staff, customer=customer)
    return link, parse_qs(urlsplit(url).query)["state"][0]


def consent(client: Client, state: str, tenant: str):
    return client.get(
        "/consent/callback",
        {"admin_consent": "True", "tenant": tenant, "state": state},
    )


def test_another_customers_valid_state_with_a_forged_tenant_links_nothing(staff):
    alpha = services.add_customer(
        actor=staff, name="Alpha Pharma", expected_tenant=ALPHA_TENANT
    )
    bravo = services.add_customer(actor=staff, name="Bravo Bank")
    client = Client(raise_request_exception=False)
    # Alpha consents through its own link: Alpha's tenant is Alpha's.
    _, alpha_state = link_state(staff, alpha)
    assert consent(client, alpha_state, ALPHA_TENANT).status_code == 302
    # Bravo's link, a valid state, names Alpha's tenant.
    bravo_link, bravo_state = link_state(staff, bravo)
    response = consent(client, bravo_state, ALPHA_TENANT)
    # Refused in words (the link is closed, the attempt audited), never linked.
    assert response.status_code in (200, 400)
    assert "already connected" in response.content.decode()
    assert "Alpha" not in response.content.decode()
    owner = Tenant.objects.get(tenant_id=ALPHA_TENANT)
    assert owner.customer == alpha
    assert not Tenant.objects.filter(customer=bravo).exists()
    bravo_link.refresh_from_db()
    assert bravo_link.tenant is None
    assert bravo_link.outcome == ConsentLink.Outcome.REJECTED


def test_a_10_kb_state_or_tenant_is_a_400_and_links_nothing(staff):
    customer = services.add_customer(actor=staff, name="Charlie Co")
    _, state = link_state(staff, customer)
    client = Client(raise_request_exception=False)
    for params in (
        {"state": state + "A" * 10_240, "tenant": BRAVO_TENANT},
        {"state": "A" * 10_240, "tenant": BRAVO_TENANT},
        {"state": state, "tenant": BRAVO_TENANT + "0" * 10_240},
        {"state": state, "tenant": f"{BRAVO_TENANT}' OR 1=1 --"},
    ):
        response = client.get("/consent/callback", {"admin_consent": "True", **params})
        assert response.status_code == 400, str(params)[:80]
    assert not Tenant.objects.exists()
    # The genuine state still works afterwards: the attacks consumed nothing.
    assert consent(client, state, BRAVO_TENANT).status_code == 302


def test_the_progress_page_shows_one_consent_and_nothing_of_anyone_else(staff):
    alpha = services.add_customer(actor=staff, name="Alpha Pharma")
    bravo = services.add_customer(actor=staff, name="Bravo Bank")
    client = Client(raise_request_exception=False)
    alpha_link, alpha_state = link_state(staff, alpha)
    bravo_link, bravo_state = link_state(staff, bravo)
    consent(client, alpha_state, ALPHA_TENANT)
    consent(client, bravo_state, BRAVO_TENANT)
    Tenant.objects.filter(tenant_id=BRAVO_TENANT).update(
        display_name="Bravo Secret Ltd", last_error="Bravo's private reason"
    )
    page = client.get(f"/consent/{alpha_link.code}").content.decode()
    assert ALPHA_TENANT in page
    for other in (BRAVO_TENANT, "Bravo", "Secret", str(bravo_link.code)):
        assert other not in page, other
    # Unknown, unconsented and garbage link codes tell nothing.
    pending, _ = link_state(staff, bravo)
    for code in (uuid.uuid4(), pending.code):
        response = client.get(f"/consent/{code}")
        assert response.status_code == 404
        assert "Bravo" not in response.content.decode()
    assert client.get("/consent/' OR 1=1 --").status_code == 404

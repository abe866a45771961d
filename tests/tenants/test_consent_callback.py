"""Consent links and the callback: only what matches a live link is recorded."""

import threading
import uuid
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.utils import timezone

from core.models import AuditEvent
from tenants import services
from tenants.models import ConsentLink, Customer, Tenant

TENANT = "aaaabbbb-0000-cccc-1111-dddd2222eeee"


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_user("sam", password="pw-sam-12345")


@pytest.fixture
def customer(staff):
    return services.add_customer(actor=staff, name="Contoso")


def new_link(staff, customer, **kwargs):
    link, url = services.create_consent_link(actor=staff, customer=customer, **kwargs)
    state = parse_qs(urlsplit(url).query)["state"][0]
    return link, url, state


def callback(client, **params):
    return client.get("/consent/callback", params)


def success_params(state, tenant=TENANT):
    return {
        "admin_consent": "True",
        "tenant": tenant,
        "state": state,
        "scope": "https://graph.microsoft.com/.default",
    }


def test_a_consent_link_is_microsofts_v2_admin_consent_url(staff, customer, settings):
    settings.MS_CLIENT_ID = "11112222-3333-4444-5555-666677778888"
    settings.PORTAL_BASE_URL = "https://portal.example.com"
    link, url, state = new_link(staff, customer)
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert parts.path == "/organizations/v2.0/adminconsent"
    assert query["client_id"] == ["11112222-3333-4444-5555-666677778888"]
    assert query["redirect_uri"] == ["https://portal.example.com/consent/callback"]
    assert query["scope"] == ["https://graph.microsoft.com/.default"]
    assert len(state) == 43  # 256 random bits
    assert link.expires_at - timezone.now() > timedelta(days=6, hours=23)


def test_the_state_is_stored_only_hashed(staff, customer):
    link, _, state = new_link(staff, customer)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM tenants_consentlink")
        stored = repr(cursor.fetchall())
        cursor.execute("SELECT detail FROM tenants_auditevent")
        audited = repr(cursor.fetchall())
    assert state not in stored
    assert state not in audited
    assert link.state_hash == services.hash_state(state)


def test_a_known_tenant_is_pinned_in_the_link(staff):
    customer = services.add_customer(
        actor=staff, name="Fabrikam", expected_tenant=TENANT
    )
    link, url, _ = new_link(staff, customer)
    assert urlsplit(url).path == f"/{TENANT}/v2.0/adminconsent"
    assert str(link.pinned_tenant) == TENANT


def test_a_good_callback_records_the_tenant_and_queues_verification(
    staff, customer, client, django_capture_on_commit_callbacks
):
    link, _, state = new_link(staff, customer)
    with django_capture_on_commit_callbacks() as callbacks:
        response = callback(client, **success_params(state))
    assert response.status_code == 302
    assert response["Location"] == f"/consent/{link.code}"
    tenant = Tenant.objects.get(tenant_id=TENANT)
    assert tenant.customer == customer
    assert tenant.state == Tenant.State.CONSENTED  # not verified: nothing proven yet
    assert len(callbacks) == 1
    link.refresh_from_db()
    assert link.used_at is not None
    assert link.outcome == ConsentLink.Outcome.CONSENTED


def test_a_replayed_callback_is_refused_and_changes_nothing(staff, customer, client):
    _, _, state = new_link(staff, customer)
    assert callback(client, **success_params(state)).status_code == 302
    Tenant.objects.update(state=Tenant.State.VERIFIED)
    response = callback(client, **success_params(state))
    assert response.status_code == 400
    assert b"could not be accepted" in response.content
    assert Tenant.objects.get().state == Tenant.State.VERIFIED
    assert AuditEvent.objects.filter(
        action="consent.callback_rejected", detail="link already used"
    ).exists()


@pytest.mark.parametrize(
    "case",
    [
        "unknown",
        "expired",
        "withdrawn",
        "missing",
        "malformed_state",
        "not_guid",
        "no_admin_consent",
        "no_tenant",
    ],
)
def test_forged_or_broken_callbacks_get_400_and_record_no_tenant(
    staff, customer, client, case
):
    link, _, state = new_link(staff, customer)
    params = success_params(state)
    if case == "unknown":
        params["state"] = "A" * 43
    elif case == "expired":
        ConsentLink.objects.filter(pk=link.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
    elif case == "withdrawn":
        services.withdraw_consent_link(actor=staff, link=link)
    elif case == "missing":
        del params["state"]
    elif case == "malformed_state":
        params["state"] = "<script>alert(1)</script>"
    elif case == "not_guid":
        params["tenant"] = "contoso.onmicrosoft.com' OR 1=1 --"
    elif case == "no_admin_consent":
        del params["admin_consent"]
    elif case == "no_tenant":
        del params["tenant"]
    response = callback(client, **params)
    assert response.status_code == 400
    assert Tenant.objects.count() == 0
    assert AuditEvent.objects.filter(action="consent.callback_rejected").count() == 1
    assert b"<script>" not in response.content


def test_a_tenant_other_than_the_pinned_one_is_refused(staff, client):
    customer = services.add_customer(actor=staff, name="Pinned", expected_tenant=TENANT)
    link, _, state = new_link(staff, customer)
    forged = str(uuid.uuid4())
    response = callback(client, **success_params(state, tenant=forged))
    assert response.status_code == 400
    assert Tenant.objects.count() == 0
    link.refresh_from_db()
    assert link.used_at is not None  # a stolen state is burnt, not reusable
    assert link.outcome == ConsentLink.Outcome.REJECTED
    assert callback(client, **success_params(state)).status_code == 400


def test_a_tenant_of_another_customer_is_not_linked_again(staff, customer, client):
    other = Customer.objects.create(name="Other")
    Tenant.objects.create(customer=other, tenant_id=TENANT, state="verified")
    _, _, state = new_link(staff, customer)
    response = callback(client, **success_params(state))
    assert response.status_code == 200
    assert b"already connected under a different customer" in response.content
    assert b"Other" not in response.content
    assert Tenant.objects.get().customer == other


def test_cancel_is_recorded_and_the_link_stays_usable(staff, customer, client):
    link, _, state = new_link(staff, customer)
    response = callback(
        client,
        admin_consent="True",
        error="access_denied",
        error_subcode="cancel",
        error_description="AADSTS65004: User declined to consent.",
        state=state,
    )
    assert response.status_code == 200
    assert b"Consent was not given" in response.content
    assert b"open the same link again" in response.content
    link.refresh_from_db()
    assert link.outcome == ConsentLink.Outcome.REFUSED
    assert link.is_open
    assert Tenant.objects.count() == 0
    # The admin changes their mind and the same link still works.
    assert callback(client, **success_params(state)).status_code == 302


def test_a_microsoft_error_is_explained_with_its_code(staff, customer, client):
    _, _, state = new_link(staff, customer)
    response = callback(
        client,
        error="access_denied",
        error_description="AADSTS1003031: Misconfigured required resource access.",
        state=state,
    )
    assert response.status_code == 200
    assert b"AADSTS1003031" in response.content
    assert ConsentLink.objects.get().outcome == ConsentLink.Outcome.FAILED


@pytest.mark.django_db(transaction=True)
def test_a_parallel_double_callback_links_the_tenant_once():
    staff = get_user_model().objects.create_user("par", password="pw-par-12345")
    customer = services.add_customer(actor=staff, name="Parallel")
    _, _, state = new_link(staff, customer)
    statuses: list[int] = []
    barrier = threading.Barrier(4)

    def hit() -> None:
        barrier.wait()
        statuses.append(callback(Client(), **success_params(state)).status_code)
        connection.close()

    threads = [threading.Thread(target=hit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [302, 400, 400, 400]
    assert Tenant.objects.count() == 1
    assert AuditEvent.objects.filter(action="consent.granted").count() == 1

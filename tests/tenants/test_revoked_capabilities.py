"""A tenant whose consent is revoked no longer reads as connected anywhere."""

import re

import pytest
from django.urls import reverse

from tenants import services
from tenants.models import Capability, Tenant
from tests.factories import (
    CapabilityFactory,
    CustomerFactory,
    SyncStateFactory,
    TenantFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def revoked():
    analyst = UserFactory(username="ana-revoked")
    tenant = TenantFactory(
        customer=CustomerFactory(name="Revoked Ltd", staff=[analyst]),
        display_name="revoked.example",
    )
    for source in ("mde_alerts", "graph_alerts"):
        CapabilityFactory(tenant=tenant, source=source)
        SyncStateFactory(tenant=tenant, source=source)
    services.mark_tenant_revoked(tenant=tenant, reason="Consent was revoked.")
    return analyst, tenant


def _cells(page: str, css_class: str) -> list[str]:
    return re.findall(rf'class="{css_class}[^"]*">([^<]*)<', page)


def test_revoking_consent_marks_every_capability_revoked(revoked):
    _, tenant = revoked

    tenant.refresh_from_db()
    assert tenant.state == Tenant.State.REVOKED
    assert set(tenant.capabilities.values_list("status", flat=True)) == {
        Capability.Status.CONSENT_REVOKED
    }


def test_revoking_twice_leaves_the_same_capabilities(revoked):
    _, tenant = revoked
    before = list(tenant.capabilities.values("source", "status", "detail"))

    services.mark_tenant_revoked(tenant=tenant, reason="Consent was revoked.")

    assert list(tenant.capabilities.values("source", "status", "detail")) == before


def test_health_page_says_consent_revoked_not_connected(client, revoked):
    analyst, _ = revoked
    client.force_login(analyst)

    page = client.get(reverse("sync:tenant_health")).content.decode()

    assert "Connected" not in page
    assert _cells(page, "cap-consent_revoked") == ["Consent revoked"] * 2


def test_customer_page_says_consent_revoked_not_connected(client, revoked):
    analyst, tenant = revoked
    client.force_login(analyst)

    url = reverse("tenants:customer_detail", kwargs={"code": tenant.customer.code})
    page = client.get(url).content.decode()

    assert "Connected" not in page
    assert _cells(page, "cap-consent_revoked") == ["Consent revoked"] * 2


def test_admin_says_consent_revoked_not_connected(client, revoked):
    _, tenant = revoked
    client.force_login(
        UserFactory(username="root-revoked", is_staff=True, is_superuser=True)
    )

    change = client.get(reverse("admin:tenants_tenant_change", args=[tenant.pk]))
    listing = client.get(reverse("admin:tenants_capability_changelist"))

    for page in (change.content.decode(), listing.content.decode()):
        shown = re.findall(r'class="field-status">\s*(?:<p>)?([^<]*)<', page)
        # (the inline's hidden empty row reads "-")
        shown = [text.strip() for text in shown if text.strip() != "-"]
        assert shown == ["Consent revoked"] * 2


def test_verifying_again_records_capabilities_afresh(revoked, monkeypatch):
    _, tenant = revoked
    monkeypatch.setattr(
        services,
        "_check_source",
        lambda client, tenant, source: (Capability.Status.OK, "", [], []),
    )
    monkeypatch.setattr(services.microsoft, "get_client", lambda: _Forgetful())

    services.verify_tenant_access(tenant=tenant)

    assert set(tenant.capabilities.values_list("status", flat=True)) == {
        Capability.Status.OK
    }


class _Forgetful:
    def forget_tenant(self, tenant_id: str) -> None:
        pass

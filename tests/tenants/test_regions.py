"""A tenant's region is one of the Defender geos Microsoft documents."""

import pytest
from django.contrib import admin

from tenants import services
from tenants.models import Tenant
from tests.factories import TenantFactory, UserFactory

pytestmark = pytest.mark.django_db

# Reference §6.1: us, eu, uk, au, swa (stored include), ina and aea (newer pages).
DOCUMENTED_GEOS = {"us", "eu", "uk", "au", "swa", "ina", "aea"}


def test_region_choices_are_every_documented_geo():
    choices = {value for value, _ in Tenant._meta.get_field("region").choices}

    assert choices == DOCUMENTED_GEOS


def test_the_admin_offers_every_documented_geo(rf):
    tenant = TenantFactory()
    request = rf.get("/")
    request.user = UserFactory(username="root-geo", is_staff=True, is_superuser=True)
    form = admin.site._registry[Tenant].get_form(request, tenant)()

    offered = {value for value, _ in form.fields["region"].choices if value}

    assert offered == DOCUMENTED_GEOS


def test_a_tenant_can_be_set_to_the_aea_geo():
    tenant = TenantFactory()

    services.set_tenant_details(actor=None, tenant=tenant, region="aea")

    tenant.refresh_from_db()
    assert tenant.region == "aea"
    assert tenant.facts.region == "aea"
    with pytest.raises(ValueError, match="region"):
        services.set_tenant_details(actor=None, tenant=tenant, region="mars")

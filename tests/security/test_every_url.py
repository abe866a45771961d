"""Every URL of the portal, asked by the wrong people, gives nothing away.

The URL list is read from the URL configuration itself, so a new page, partial or
export is covered the day it is added.
"""

import re
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from alerts.models import Alert, Incident
from tenants.models import ConsentLink, Customer, Tenant

SECRET_NAME = "Hidden Customer 7f3a"
SECRET_TENANT = "7f3a0000-1111-4222-8333-944445555666"
# Parts of the site that are public by design: health, sign-in, the consent callback
# and the consenting admin's progress page.
PUBLIC_PREFIXES = ("healthz", "accounts/", "consent/", "static")


def is_public(route: str) -> bool:
    return route.startswith(PUBLIC_PREFIXES)


def all_routes() -> list[str]:
    """Every route in the URL configuration, as a pattern string."""
    routes: list[str] = []

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                routes.append(prefix + str(pattern.pattern))

    walk(get_resolver().url_patterns, "")
    return routes


def fill(route: str, codes: list[str]) -> list[str]:
    """Concrete URLs for a route: each converter gets each candidate value."""
    if route.startswith("^") or "(?P" in route:  # the admin's regex routes
        route = re.sub(r"\(\?P<\w+>[^)]*\)", "1", route).strip("^$").replace("\\", "")
    params = re.findall(r"<(?:(\w+):)?(\w+)>", route)
    if not params:
        return ["/" + route]
    urls = []
    for code in codes:
        url = route
        for converter, _ in params:
            value = code if converter in ("uuid", "str", "slug", "") else "1"
            url = re.sub(r"<[^>]+>", value, url, count=1)
        urls.append("/" + url)
    return urls


@pytest.fixture
def hidden_world(db):
    """A customer with a tenant that only a superuser may see."""
    customer = Customer.objects.create(name=SECRET_NAME, expected_tenant=SECRET_TENANT)
    tenant = Tenant.objects.create(
        customer=customer,
        tenant_id=SECRET_TENANT,
        display_name=SECRET_NAME,
        state=Tenant.State.VERIFIED,
    )
    codes = [str(customer.code), str(tenant.code)]
    for model in (Alert, Incident, ConsentLink):
        codes += [str(code) for code in model.objects.values_list("code", flat=True)]
    codes.append(str(uuid.uuid4()))
    return customer, codes


def assert_reveals_nothing(response, url: str) -> None:
    body = response.content.decode(errors="replace")
    assert SECRET_NAME not in body, url
    assert SECRET_TENANT not in body, url


def test_a_staff_member_without_access_gets_404_or_nothing(client, hidden_world):
    _, codes = hidden_world
    outsider = get_user_model().objects.create_user("outsider", password="pw-out-1234")
    client.force_login(outsider)
    checked = 0
    for route in all_routes():
        for url in fill(route, codes):
            response = client.get(url)
            assert response.status_code in (200, 302, 400, 404, 405, 503), url
            if not is_public(route) and "<" in route and not route.startswith("admin"):
                assert response.status_code in (302, 404, 405), url
            assert_reveals_nothing(response, url)
            checked += 1
    assert checked > 10


def test_an_anonymous_visitor_is_sent_to_sign_in(hidden_world):
    _, codes = hidden_world
    client = Client()
    for route in all_routes():
        for url in fill(route, codes):
            response = client.get(url)
            assert_reveals_nothing(response, url)
            if is_public(route):
                continue
            assert response.status_code in (302, 404, 405), url
            if response.status_code == 302:
                # The admin's own pages forward to the portal's sign-in.
                location = response["Location"]
                assert location.startswith(("/accounts/login/", "/admin/")), url


def test_every_state_change_needs_a_csrf_token(hidden_world):
    _, codes = hidden_world
    admin = get_user_model().objects.create_superuser("root2", password="pw-root-12345")
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    for route in all_routes():
        if route.startswith("static"):
            continue
        for url in fill(route, codes[:1]):
            response = client.post(url, {"anything": "1"})
            assert response.status_code == 403, f"{url} accepted a POST without CSRF"

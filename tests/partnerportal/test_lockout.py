"""Password sign-in locks out after repeated failures; the admin signs in likewise."""

import uuid

import pytest
from django.contrib.auth import get_user_model

from accounts import lockout


@pytest.fixture
def user(db):
    name = f"lock-{uuid.uuid4().hex[:8]}"
    user = get_user_model().objects.create_user(name, password="right-password-123")
    yield user
    lockout.clear(name)


def fresh_address() -> str:
    raw = uuid.uuid4().int
    return f"10.{raw % 250}.{(raw >> 8) % 250}.{(raw >> 16) % 250 + 1}"


def sign_in(client, username, password, address=None):
    # Each call comes from a fresh address unless told, so address locks (which
    # outlive a test in Redis) never leak into another test or run.
    address = address or fresh_address()
    return client.post(
        "/accounts/login/",
        {"username": username, "password": password},
        REMOTE_ADDR=address,
    )


def test_five_failures_lock_the_account_even_for_the_right_password(client, user):
    for _ in range(lockout.MAX_FAILURES):
        response = sign_in(client, user.username, "wrong")
        assert response.status_code == 200
        assert b"Please enter a correct username and password" in response.content
    response = sign_in(client, user.username, "right-password-123")
    assert response.status_code == 200
    assert b"Too many failed sign-ins" in response.content
    assert "_auth_user_id" not in client.session


def test_the_lock_follows_the_name_across_addresses(client, user):
    for _ in range(lockout.MAX_FAILURES):
        sign_in(client, user.username, "wrong")
    response = sign_in(client, user.username, "right-password-123")
    assert b"Too many failed sign-ins" in response.content


def test_a_success_before_the_limit_resets_the_count(client, user):
    address = fresh_address()
    for _ in range(lockout.MAX_FAILURES - 1):
        sign_in(client, user.username, "wrong", address)
    response = sign_in(client, user.username, "right-password-123", address)
    assert response.status_code == 302
    client.logout()
    for _ in range(lockout.MAX_FAILURES - 1):
        sign_in(client, user.username, "wrong")
    response = sign_in(client, user.username, "right-password-123")
    assert response.status_code == 302


def test_the_admin_signs_in_through_the_portal_sign_in(client, db):
    response = client.get("/admin/login/?next=/admin/tenants/tenant/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/admin/tenants/tenant/"

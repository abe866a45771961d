import pytest
from django.contrib.auth import get_user_model

from tenants.models import Customer


@pytest.mark.django_db
def test_customer_list_sends_anonymous_visitors_to_sign_in(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.django_db
def test_customer_list_shows_only_assigned_customers(client):
    user = get_user_model().objects.create_user("ana", password="pw-ana-12345")
    mine = Customer.objects.create(name="Mine Ltd")
    Customer.objects.create(name="Someone Elses Inc")
    mine.staff.add(user)
    client.force_login(user)
    response = client.get("/")
    assert response.status_code == 200
    assert b"Mine Ltd" in response.content
    assert b"Someone Elses Inc" not in response.content


@pytest.mark.django_db
def test_the_admin_asks_for_staff_sign_in(client):
    response = client.get("/admin/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]

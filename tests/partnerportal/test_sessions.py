"""Sessions: kept in PostgreSQL, read through Redis (accounts.sessions)."""

import pytest
import redis
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts import sessions
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

UNREACHABLE = {
    "default": {
        "BACKEND": "partnerportal.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",
    }
}


def session_queries(client) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse("alerts:queue")).status_code == 200
    return [q["sql"] for q in queries.captured_queries if "django_session" in q["sql"]]


def test_a_signed_in_request_reads_its_session_from_redis(client):
    client.force_login(UserFactory(is_staff=True))
    session_queries(client)  # the first read may fill the cache
    assert session_queries(client) == []


def test_without_redis_sessions_still_work_from_the_database(client, settings):
    settings.CACHES = UNREACHABLE
    client.force_login(UserFactory(is_staff=True))
    assert session_queries(client), "read from PostgreSQL"
    client.post(reverse("logout"))
    response = client.get(reverse("alerts:queue"))
    assert response.status_code == 302 and "login" in response["Location"]


def test_a_logout_ends_the_cached_copy_too(client):
    client.force_login(UserFactory(is_staff=True))
    assert client.get(reverse("alerts:queue")).status_code == 200  # now cached
    old = client.cookies["sessionid"].value
    client.post(reverse("logout"))
    client.cookies["sessionid"] = old  # someone kept the old cookie
    response = client.get(reverse("alerts:queue"))
    assert response.status_code == 302 and "login" in response["Location"]


def test_a_cached_copy_lives_at_most_a_few_minutes(client, settings):
    client.force_login(UserFactory(is_staff=True))
    store = sessions.SessionStore(client.cookies["sessionid"].value)
    store.load()
    key = cache.make_key(store.cache_key)
    ttl = redis.Redis.from_url(settings.REDIS_URL).ttl(key)
    assert 0 < ttl <= sessions.CACHED_FOR


def test_the_cache_reuses_one_redis_client(settings):
    """Django builds a redis client per cache call; ours keeps one per pool."""
    client = cache._cache.get_client()
    assert cache._cache.get_client() is client
    cache.set("one-client", 1, 5)
    assert cache.get("one-client") == 1
    assert cache._cache.get_client(write=True) is client  # one server: one pool

"""Django's Redis cache, with one redis client per connection pool.

Django makes a new ``redis.Redis`` for every cache call, and its constructor builds
a table of some 200 reply handlers: on a queue page, with its four cache reads,
about as much CPU as the round trips themselves. A client is safe to share between
threads (each command takes a connection from the pool), so one per pool serves.
"""

from django.core.cache.backends import redis as django_redis


class RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, object] = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class RedisCache(django_redis.RedisCache):
    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient

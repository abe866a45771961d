"""Sessions kept in PostgreSQL and read through Redis.

Django's ``cached_db`` backend, except that Redis being away costs speed only: every
read and write falls back to the database, where each session is kept in full. A
cached copy lives at most CACHED_FOR seconds, so a session ended while Redis could not
be told (a logout during an outage) cannot outlive the outage by more than that.
"""

import contextlib
import logging

from django.contrib.sessions.backends import cached_db
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

CACHED_FOR = 300


class SessionStore(cached_db.SessionStore):
    def _cache_for(self, data, expiry_age: int) -> None:
        with contextlib.suppress(RedisError):
            self._cache.set(self.cache_key, data, min(expiry_age, CACHED_FOR))

    def load(self):
        try:
            data = self._cache.get(self.cache_key)
        except RedisError:
            data = None
        if data is not None:
            return data
        stored = self._get_session_from_db()
        if not stored:
            return {}
        data = self.decode(stored.session_data)
        self._cache_for(data, self.get_expiry_age(expiry=stored.expire_date))
        return data

    def exists(self, session_key):
        # Asked when a new session picks its key: the database has every session.
        return cached_db.DBStore.exists(self, session_key)

    def save(self, must_create=False):
        cached_db.DBStore.save(self, must_create)
        self._cache_for(self._session, self.get_expiry_age())

    def delete(self, session_key=None):
        cached_db.DBStore.delete(self, session_key)
        session_key = session_key or self.session_key
        if session_key is None:
            return
        try:
            self._cache.delete(self.cache_key_prefix + session_key)
        except RedisError:
            logger.warning(
                "A session was ended in the database but Redis could not be reached "
                "to drop its cached copy; that copy expires within %s seconds.",
                CACHED_FOR,
            )

"""Password sign-in lockout: repeated failures lock the account name and the address.

Counters live in Redis (shared by every web process) and expire by themselves.
"""

import hashlib
import math

from django import forms
from django.contrib.auth.forms import AuthenticationForm

from core.redis import get_redis

MAX_FAILURES = 5
WINDOW_SECONDS = 15 * 60


def _keys(username: str, address: str | None) -> list[str]:
    # Hashed, so Redis holds no user names.
    name = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    keys = [f"partnerportal:login-failures:user:{name}"]
    if address:
        keys.append(f"partnerportal:login-failures:addr:{address}")
    return keys


def seconds_locked(username: str, address: str | None) -> int:
    """How long sign-in stays refused for this name or address; 0 when it is not."""
    client = get_redis(timeout=2)
    longest = 0
    for key in _keys(username, address):
        failures = int(client.get(key) or 0)
        if failures >= MAX_FAILURES:
            longest = max(longest, client.ttl(key))
    return max(longest, 0)


def record_failure(username: str, address: str | None) -> None:
    client = get_redis(timeout=2)
    for key in _keys(username, address):
        with client.pipeline() as pipe:
            pipe.incr(key)
            pipe.expire(key, WINDOW_SECONDS)
            pipe.execute()


def clear(username: str) -> None:
    get_redis(timeout=2).delete(_keys(username, None)[0])


class LockoutAuthenticationForm(AuthenticationForm):
    """Django's sign-in form, refusing every attempt while a lock is on."""

    def clean(self):
        username = self.data.get("username", "")
        address = self.request.META.get("REMOTE_ADDR") if self.request else None
        locked = seconds_locked(username, address)
        if locked:
            minutes = math.ceil(locked / 60)
            raise forms.ValidationError(
                f"Too many failed sign-ins. Sign-in is paused for {minutes} "
                f"minute{'s' if minutes != 1 else ''}; try again later or ask an "
                "administrator.",
                code="locked",
            )
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            record_failure(username, address)
            raise
        clear(username)
        return cleaned

"""Tokens for many customer tenants: MSAL confidential clients and a Redis token cache.

``TokensMixin`` (one part of ``MicrosoftClient``) acquires app-only tokens with MSAL
(one confidential client per tenant, certificate preferred over secret) and shares them
between every worker process through Redis (single-flight: N workers asking for one
tenant's token cause one token request). Tokens and secrets never reach a log line or
an exception. It relies on the client's ``client_id``, ``login``, ``_credential``,
``_token_http``, ``_redis``, ``_release`` and ``_prefix``, set by
``MicrosoftClient.__init__``.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path
from typing import Any

import msal
import redis
import requests
from msal.exceptions import MsalServiceError

from core import validators
from tenants.microsoft import sources
from tenants.microsoft.http import retry_after_seconds
from tenants.microsoft.schemas import (
    AccessToken,
    MicrosoftError,
    TenantNotFound,
    Unavailable,
    error_for_token_response,
    error_from_dict,
)

log = logging.getLogger(__name__)

#: A cached token is handed out only while it has more than this many seconds left
#: (MSAL's own rule: under 5 minutes left counts as expired).
TOKEN_MIN_SECONDS_LEFT = 300

_PEM_KEY = re.compile(
    r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----.+?-----END (?:[A-Z]+ )?PRIVATE KEY-----",
    re.S,
)
_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
_AADSTS = re.compile(r"AADSTS(\d{5,8})")
_ERROR_CODES = re.compile(r'"error_codes"\s*:\s*\[([\d,\s]*)\]')
_HTTP_STATUS = re.compile(r"HTTP status:\s*(\d{3})")

# Single-flight across processes: release the lock only if we still own it.
RELEASE_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class _NoStoreTokenCache(msal.TokenCache):
    """MSAL keeps nothing in memory: the shared Redis cache is the only token cache,
    so a token dropped there (``drop_token``) is gone for every process."""

    def add(self, event: dict, now: Any = None) -> None:  # noqa: ARG002
        return None


class TokenHttp:
    """The ``http_client`` MSAL uses: our session with timeouts, no redirects, and a
    note of the last response's status and ``Retry-After`` (MSAL hides both)."""

    def __init__(self, session: requests.Session, timeout: tuple[float, float]):
        self.session = session
        self.timeout = timeout
        self.local = threading.local()

    def reset(self) -> None:
        self.local.status = None
        self.local.retry_after = None

    @property
    def last_status(self) -> int | None:
        return getattr(self.local, "status", None)

    @property
    def last_retry_after(self) -> float | None:
        return getattr(self.local, "retry_after", None)

    def _note(self, response: requests.Response) -> requests.Response:
        self.local.status = response.status_code
        self.local.retry_after = retry_after_seconds(
            response.headers.get("Retry-After")
        )
        return response

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        kwargs["allow_redirects"] = False
        return self._note(self.session.get(url, **kwargs))

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        kwargs["allow_redirects"] = False
        return self._note(self.session.post(url, **kwargs))

    def close(self) -> None:
        # The session is shared by every tenant's MSAL app; the client closes it.
        return None


def _check_tenant_id(tenant_id: str) -> str:
    """A tenant GUID or verified domain, lower-cased; anything else never reaches a
    URL (it would change the authority's path)."""
    value = (tenant_id or "").strip()
    if validators.is_guid(value) or validators.is_domain(value):
        return value.lower()
    raise TenantNotFound(
        "This is not a valid tenant ID or domain. Check the tenant ID with the "
        "customer.",
        codes=[900023],
    )


def load_certificate(path: str) -> dict[str, str]:
    """MSAL's certificate credential from one PEM holding the key and certificate.

    ``public_certificate`` without ``thumbprint`` makes MSAL sign with PS256 and send
    ``x5t#S256`` (and ``x5c``), Entra ID's current form.
    """
    text = Path(path).read_text()
    key = _PEM_KEY.search(text)
    certificates = _PEM_CERT.findall(text)
    if key is None or not certificates:
        raise ValueError(
            f"{path} must hold the partner app's private key and its certificate "
            "(PEM, both in one file)."
        )
    return {"private_key": key.group(0), "public_certificate": "\n".join(certificates)}


def _error_from_discovery(exc: Exception) -> MicrosoftError | None:
    """The typed error behind MSAL's ``ValueError`` for a failed OIDC discovery (an
    unknown tenant gets a 400 with AADSTS90002 there), else None."""
    cause: BaseException | None = exc
    while cause is not None and "OIDC Discovery failed" not in str(cause):
        # MSAL re-raises the discovery error as a generic ValueError.
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return None
    text = str(cause)
    status_match = _HTTP_STATUS.search(text)
    status = int(status_match.group(1)) if status_match else None
    codes: list[int] = []
    found = _ERROR_CODES.search(text)
    if found:
        codes = [int(c) for c in found.group(1).replace(" ", "").split(",") if c]
    if not codes:
        codes = [int(c) for c in _AADSTS.findall(text)[:1]]
    error = error_for_token_response({"error_codes": codes}, status=status)
    if type(error) is MicrosoftError:
        return TenantNotFound(codes=codes, status=status)
    return error


class TokensMixin:
    """App-only tokens per (tenant, resource), shared by every process."""

    def _cache_key(self, kind: str, tenant_id: str, resource: str) -> str:
        digest = sha256(f"{tenant_id}|{resource}".encode()).hexdigest()[:32]
        return f"{self._prefix}:{kind}:{digest}"

    @staticmethod
    def _resource(resource: str | sources.Source) -> str:
        if isinstance(resource, sources.Source):
            return resource.resource
        row = sources.SOURCES.get(resource)
        return row.resource if row else resource.rstrip("/")

    def get_token(self, tenant_id: str, resource: str | sources.Source) -> AccessToken:
        """An app-only token for ``resource`` in ``tenant_id`` (a resource URI / app id
        or a ``sources.SOURCES`` key), from the shared Redis cache or, on a miss, from
        Entra ID with one request for all processes. Raises the typed errors of
        ``schemas``."""
        tenant_id = _check_tenant_id(tenant_id)
        resource = self._resource(resource)
        token_key = self._cache_key("token", tenant_id, resource)
        lock_key = self._cache_key("lock", tenant_id, resource)
        error_key = self._cache_key("error", tenant_id, resource)
        try:
            token = self._cached_token(token_key)
            if token is not None:
                return token
            owner = uuid.uuid4().hex
            deadline = time.monotonic() + self.lock_ttl + 5
            waiting_since: float | None = None
            while True:
                if self._redis.set(
                    lock_key, owner, nx=True, px=int(self.lock_ttl * 1000)
                ):
                    try:
                        return self._fetch_token(
                            tenant_id, resource, token_key, error_key
                        )
                    finally:
                        self._release(keys=[lock_key], args=[owner])
                if waiting_since is None:
                    waiting_since = time.time()
                time.sleep(self.lock_poll * (0.5 + random.random()))  # noqa: S311
                token = self._cached_token(token_key)
                if token is not None:
                    return token
                error = self._recent_error(error_key, waiting_since)
                if error is not None:
                    raise error
                if time.monotonic() > deadline:
                    raise Unavailable(
                        "Timed out waiting for another worker's token request to "
                        "Microsoft. The portal will try again."
                    )
        except redis.RedisError as exc:
            raise Unavailable(
                "The portal's token cache (Redis) is unreachable; tokens cannot be "
                "shared between workers. Check the Redis service."
            ) from exc

    def _fetch_token(
        self, tenant_id: str, resource: str, token_key: str, error_key: str
    ) -> AccessToken:
        """Holding the lock: re-check the cache, else ask Entra ID and share."""
        token = self._cached_token(token_key)
        if token is not None:
            return token
        try:
            token = self._acquire(tenant_id, resource)
        except MicrosoftError as error:
            record = dict(error.to_dict(), at=time.time())
            self._redis.set(error_key, json.dumps(record), ex=10)
            raise
        seconds = token.seconds_left()
        ttl = (
            seconds - TOKEN_MIN_SECONDS_LEFT
            if seconds > 2 * TOKEN_MIN_SECONDS_LEFT
            else seconds / 2
        )
        if ttl >= 1:
            record = {
                "access_token": token.value,
                "expires_at": token.expires_at.timestamp(),
            }
            self._redis.set(token_key, json.dumps(record), ex=int(ttl))
        return token

    def _cached_token(self, token_key: str) -> AccessToken | None:
        raw = self._redis.get(token_key)
        if raw is None:
            return None
        try:
            record = json.loads(raw)
            expires_at = datetime.fromtimestamp(float(record["expires_at"]), UTC)
            token = AccessToken.from_value(
                record["access_token"], expires_at=expires_at
            )
        except (ValueError, KeyError, TypeError):
            return None
        return token if token.seconds_left() > 60 else None

    def _recent_error(self, error_key: str, since: float) -> MicrosoftError | None:
        raw = self._redis.get(error_key)
        if raw is None:
            return None
        try:
            record = json.loads(raw)
        except ValueError:
            return None
        if float(record.get("at", 0)) < since - 1:
            return None
        return error_from_dict(record)

    def _app(self, tenant_id: str) -> msal.ConfidentialClientApplication:
        """This process's MSAL app for the tenant (built once; discovery on build)."""
        with self._apps_lock:
            app = self._apps.get(tenant_id)
            if app is not None:
                self._apps.move_to_end(tenant_id)
                return app
            lock = self._app_locks.setdefault(tenant_id, threading.Lock())
        with lock:
            with self._apps_lock:
                app = self._apps.get(tenant_id)
            if app is not None:
                return app
            self._token_http.reset()
            try:
                app = msal.ConfidentialClientApplication(
                    self.client_id,
                    client_credential=self._credential,
                    authority=f"{self.login.url}/{tenant_id}",
                    instance_discovery=self._instance_discovery,
                    azure_region=False,
                    http_client=self._token_http,
                    token_cache=_NoStoreTokenCache(),
                )
            except ValueError as exc:
                error = _error_from_discovery(exc)
                if error is None:
                    raise
                raise error from None
            except (requests.RequestException, RuntimeError) as exc:
                raise Unavailable(
                    "Microsoft sign-in could not be reached (tenant discovery failed)."
                    " The portal will try again.",
                    retry_after=self._token_http.last_retry_after,
                ) from exc
            with self._apps_lock:
                self._apps[tenant_id] = app
                while len(self._apps) > 2048:
                    self._apps.popitem(last=False)
            return app

    def sign_in_app(self, tenant_id: str) -> msal.ConfidentialClientApplication:
        """A fresh MSAL app for staff sign-in (authorization code + PKCE) in one
        tenant: same credential, CA bundle and ``trust_env=False`` session as the
        app-only calls, and no token cache (the portal keeps no user tokens).

        Implements "Microsoft identity platform and OAuth 2.0 authorization code flow":
        https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow
        """
        return msal.ConfidentialClientApplication(
            self.client_id,
            client_credential=self._credential,
            authority=f"{self.login.url}/{_check_tenant_id(tenant_id)}",
            instance_discovery=self._instance_discovery,
            azure_region=False,
            http_client=self._new_session(),
            token_cache=_NoStoreTokenCache(),
        )

    def _acquire(self, tenant_id: str, resource: str) -> AccessToken:
        app = self._app(tenant_id)
        self._token_http.reset()
        requested_at = datetime.now(UTC)
        try:
            result = app.acquire_token_for_client(scopes=[f"{resource}/.default"])
        except MsalServiceError as exc:
            raise Unavailable(
                "Microsoft sign-in had a server error. The portal will try again.",
                status=self._token_http.last_status,
                retry_after=self._token_http.last_retry_after,
            ) from exc
        except requests.RequestException as exc:
            raise Unavailable(
                "Microsoft sign-in could not be reached. The portal will try again."
            ) from exc
        if "access_token" not in result:
            error = error_for_token_response(
                result,
                status=self._token_http.last_status,
                retry_after=self._token_http.last_retry_after,
            )
            log.warning(
                "Token request for tenant %s (%s) failed: %s %s",
                tenant_id,
                resource,
                type(error).__name__,
                error.codes,
            )
            raise error
        expires_in = int(result.get("expires_in") or 0) or 600
        token = AccessToken.from_value(
            result["access_token"],
            expires_at=requested_at + timedelta(seconds=expires_in),
        )
        log.info(
            "Token acquired for tenant %s (%s), roles: %s",
            tenant_id,
            resource,
            ", ".join(sorted(token.roles)) or "none",
        )
        return token

    def drop_token(self, tenant_id: str, resource: str | sources.Source) -> None:
        """Forget the shared cached token so the next ``get_token`` asks Entra ID."""
        tenant_id = _check_tenant_id(tenant_id)
        resource = self._resource(resource)
        try:
            self._redis.delete(self._cache_key("token", tenant_id, resource))
        except redis.RedisError as exc:
            raise Unavailable(
                "The portal's token cache (Redis) is unreachable."
            ) from exc

    def forget_tenant(self, tenant_id: str) -> None:
        """Drop this process's MSAL app for the tenant (MSAL remembers a 400 answer
        for 60 s per app) and the tenant's shared tokens: use before re-verifying a
        tenant after the customer fixed consent, licences or policies."""
        tenant_id = _check_tenant_id(tenant_id)
        with self._apps_lock:
            self._apps.pop(tenant_id, None)
        for resource in {row.resource for row in sources.SOURCES.values()}:
            self.drop_token(tenant_id, resource)

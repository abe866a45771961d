"""``MicrosoftClient``: the one public class of the client package.

It is composed of one part per concern, each in its own module: ``tokens`` (MSAL, the
shared Redis token cache, the partner credential), ``http`` (session, retries, URL
trust, size caps, JSON) and one module per API (``mde``, ``xdr``, ``graph``,
``mcas``). Every method returns plain dicts and ``Page`` objects or raises the typed
errors of ``schemas``. No Django models; base URLs come from the caller (settings).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from hashlib import sha256
from urllib.parse import urlsplit

import msal
import redis
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS

from core import validators
from tenants.microsoft import sources
from tenants.microsoft.graph import GraphApi
from tenants.microsoft.http import MAX_RESPONSE_BYTES, HttpMixin, Origin
from tenants.microsoft.mcas import McasApi
from tenants.microsoft.mde import MdeApi
from tenants.microsoft.schemas import AccessDenied
from tenants.microsoft.tokens import (
    RELEASE_LOCK,
    TokenHttp,
    TokensMixin,
    load_certificate,
)
from tenants.microsoft.xdr import XdrApi


class MicrosoftClient(TokensMixin, HttpMixin, MdeApi, XdrApi, GraphApi, McasApi):
    """Tokens and API calls for every customer tenant of one partner app."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str | None = None,
        client_cert_path: str | None = None,
        login_url: str,
        defender_url: str,
        graph_url: str,
        ca_bundle: str | None,
        redis_url: str,
        emulator: bool = False,
        timeout: tuple[float, float] = (5, 30),
        retries: int = 2,
        backoff: float = 0.5,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        cache_prefix: str = "msft",
    ) -> None:
        if not client_id:
            raise ValueError("client_id (MS_CLIENT_ID) is required")
        if client_cert_path:
            self._credential: str | dict[str, str] = load_certificate(client_cert_path)
            self.credential_kind = "certificate"
        elif client_secret:
            self._credential = client_secret
            self.credential_kind = "secret"
        else:
            raise ValueError(
                "a partner app credential is required: MS_CLIENT_CERT_PATH or "
                "MS_CLIENT_SECRET"
            )
        self.client_id = client_id
        self.login = Origin(login_url)
        self.defender = Origin(defender_url)
        self.graph = Origin(graph_url)
        self.emulator = emulator
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_response_bytes = max_response_bytes
        self._verify: str | bool = ca_bundle or True
        # Microsoft hosts need no instance discovery; the emulator's host must skip it
        # (MSAL would otherwise ask login.microsoftonline.com about it).
        login_host = urlsplit(self.login.url).hostname or ""
        self._instance_discovery = (
            None if login_host.lower() in WELL_KNOWN_AUTHORITY_HOSTS else False
        )

        self._session = self._new_session()
        self._token_http = TokenHttp(self._new_session(), timeout)
        self._redis = redis.Redis.from_url(redis_url)
        self._release = self._redis.register_script(RELEASE_LOCK)
        self._prefix = (
            cache_prefix
            + ":"
            + sha256(f"{self.login.url}|{client_id}".encode()).hexdigest()[:16]
        )
        self._apps: OrderedDict[str, msal.ConfidentialClientApplication] = OrderedDict()
        self._apps_lock = threading.Lock()
        self._app_locks: dict[str, threading.Lock] = {}
        self.lock_ttl = timeout[0] + timeout[1] + 15
        self.lock_poll = 0.05

    def __repr__(self) -> str:
        return (
            f"MicrosoftClient(client_id={self.client_id!r}, login_url="
            f"{self.login.url!r}, credential={self.credential_kind})"
        )

    def close(self) -> None:
        """Close pooled connections (HTTP and Redis)."""
        self._session.close()
        self._token_http.session.close()
        self._redis.close()

    def probe(
        self,
        tenant_id: str,
        source: str,
        *,
        mcas_url: str | None = None,
        region: str | None = None,
    ) -> None:
        """Prove access to one source: a token whose ``tid`` and ``roles`` fit, then the
        smallest list call (``$top=1``). Returns None or raises the typed error.

        After the customer fixed something, call ``forget_tenant`` first so neither
        MSAL's memory of a failure nor an old token hides the fix.
        """
        row = sources.get(source)
        token = self.get_token(tenant_id, row.resource)
        if (
            validators.is_guid(tenant_id)
            and token.tenant_id
            and token.tenant_id.lower() != tenant_id.lower()
        ):
            raise AccessDenied(
                message="Microsoft issued a token for a different tenant than asked "
                "for. Check the tenant ID with the customer."
            )
        missing = row.missing_roles(token.roles)
        if missing:
            raise AccessDenied(missing)
        row.probe(
            self,
            sources.TenantFacts(tenant_id=tenant_id, region=region, mcas_url=mcas_url),
        )

"""HTTP for the Microsoft APIs: one session, retries, Retry-After, size caps, JSON.

``HttpMixin`` (one part of ``MicrosoftClient``) makes one API call with a tenant's
token and turns every answer into parsed JSON or a typed error of ``schemas``. Rules
kept here: a bearer token goes only to the configured Microsoft hosts (every URL,
``@odata.nextLink`` included, is checked), redirects are never followed, responses are
size-capped, transient failures are retried a bounded number of times (backoff with
jitter from ``core.backoff``). It relies on the client's ``defender``, ``graph``,
``login``, ``emulator``, ``timeout``, ``retries``, ``backoff``,
``max_response_bytes``, ``_verify`` and ``_session`` and on ``TokensMixin``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter

from core import backoff as waits
from tenants.microsoft.schemas import (
    AccessDenied,
    AccessToken,
    ConsentRevoked,
    MicrosoftError,
    NotFound,
    NotLicensed,
    Page,
    Throttled,
    Unavailable,
    UntrustedUrl,
)
from tenants.microsoft.sources import DEFENDER_GEOS

if TYPE_CHECKING:
    from tenants.microsoft.sources import Api, Source

log = logging.getLogger(__name__)

#: Defender's geo hosts (``https://{region}.api.security.microsoft.com``).
REGIONS = DEFENDER_GEOS
#: Public-cloud Defender hosts that have regional siblings.
_DEFENDER_GLOBAL_HOSTS = {
    "api.security.microsoft.com",
    "api.securitycenter.microsoft.com",
    "api.securitycenter.windows.com",
}
#: Where Defender for Cloud Apps tenant portals live (commercial and US Gov).
MCAS_HOST_SUFFIXES = (".portal.cloudappsecurity.com", ".portal.cloudappsecurity.us")

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
DEFAULT_RETRY_AFTER = 30.0

_NOT_LICENSED = re.compile(
    r"not\s+licen[sc]ed|licen[sc]e|not\s+provisioned|provisioning|disabledfeature|"
    r"notlicensed|not\s+onboarded",
    re.I,
)
_CONSENT = re.compile(r"consent|AADSTS(?:700016|7000229|65001)", re.I)


class Origin:
    """scheme + host + port + path prefix of a configured base URL."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url.rstrip("/"))
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"Microsoft base URLs must be https URLs, not {url!r}")
        self.url = url.rstrip("/")
        self.key = _origin_key(self.url)
        self.path = parts.path.rstrip("/")

    def contains(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.username is not None or parts.password is not None:
            return False
        if _origin_key(url) != self.key:
            return False
        path = parts.path
        return path == self.path or path.startswith(self.path + "/")


def _origin_key(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return ("", "", -1)
    scheme = parts.scheme.lower()
    default = 443 if scheme == "https" else 80
    return (scheme, (parts.hostname or "").lower(), port or default)


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: a (possibly fractional) number or an
    HTTP date. None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, min(seconds, 86400.0))


def odata_datetime(value: datetime) -> str:
    """``2026-01-10T08:01:05.370000Z``: UTC, unquoted, as OData ``$filter`` wants."""
    if value.tzinfo is None:
        raise ValueError("since must be a timezone-aware datetime")
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}"
    return text + "Z"


def _query(params: Mapping[str, Any]) -> str:
    """An OData query string that keeps ``$`` and the filter's quotes readable."""
    return "&".join(
        f"{quote(key, safe='$')}={quote(str(value), safe=':$,()')}"
        for key, value in params.items()
        if value is not None
    )


def _api_error_fields(body: Any) -> tuple[str, str]:
    """(code, message) of a Defender / Graph / Cloud Apps error body."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("code") or ""), str(error.get("message") or "")
        if isinstance(error, str):
            return error, str(body.get("error_description") or body.get("detail") or "")
        return str(body.get("code") or ""), str(body.get("detail") or "")
    return "", ""


class HttpMixin:
    """One API call at a time, with retries, for the API mixins."""

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        # This machine exports REQUESTS_CA_BUNDLE, which would override `verify`.
        session.trust_env = False
        session.verify = self._verify
        adapter = HTTPAdapter(pool_connections=16, pool_maxsize=32, max_retries=0)
        session.mount("https://", adapter)
        return session

    def defender_base(self, region: str | None = None, *, api: Api) -> str:
        """Defender's base URL of ``api`` for a tenant's region: the geo host
        ``https://{region}.api.security.microsoft.com`` (``{defender_url}/{region}``
        on the emulator) when the API documents geo hosts, else the global host."""
        if not region:
            return self.defender.url
        region = region.lower()
        if region not in REGIONS:
            raise ValueError(f"unknown Defender region {region!r}; one of {REGIONS}")
        if not api.geo_hosts:
            return self.defender.url
        if self.emulator:
            return f"{self.defender.url}/{region}"
        host = urlsplit(self.defender.url).hostname or ""
        if host.lower() in _DEFENDER_GLOBAL_HOSTS:
            return f"https://{region}.api.security.microsoft.com"
        # Sovereign clouds (US Gov) have no geo hosts: the configured host serves all.
        return self.defender.url

    def mcas_base(self, mcas_url: str) -> str:
        """The tenant's Cloud Apps portal URL, if it is one we may send a token to."""
        url = (mcas_url or "").strip().rstrip("/")
        parts = urlsplit(url)
        if parts.username is not None or parts.password is not None:
            raise UntrustedUrl()
        if self.emulator:
            configured = {self.defender.key, self.graph.key, self.login.key}
            if parts.scheme == "https" and _origin_key(url) in configured:
                return url
            raise UntrustedUrl(
                "The tenant's Cloud Apps URL is not on the configured emulator host."
            )
        host = (parts.hostname or "").lower()
        if (
            parts.scheme == "https"
            and _origin_key(url)[2] == 443
            and host.endswith(MCAS_HOST_SUFFIXES)
        ):
            return url
        raise UntrustedUrl(
            "The tenant's Cloud Apps URL is not a Defender for Cloud Apps portal "
            "address (https://<tenant>.<region>.portal.cloudappsecurity.com)."
        )

    def _sleep_before_retry(self, attempt: int, retry_after: float | None) -> None:
        delay = waits.backoff_seconds(attempt, base=self.backoff, cap=8.0, spread=0.5)
        if retry_after is not None:
            delay = max(delay, min(retry_after, 8.0))
        time.sleep(delay)

    def _read(self, response: requests.Response, started: float) -> bytes:
        """The body, streamed, at most ``max_response_bytes``."""
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > self.max_response_bytes:
            raise MicrosoftError(
                "Microsoft's response was larger than the portal accepts."
            )
        chunks: list[bytes] = []
        size = 0
        deadline = started + sum(self.timeout) * 2
        for chunk in response.iter_content(chunk_size=64 * 1024):
            size += len(chunk)
            if size > self.max_response_bytes:
                raise MicrosoftError(
                    "Microsoft's response was larger than the portal accepts."
                )
            if time.monotonic() > deadline:
                raise requests.Timeout("response body too slow")
            chunks.append(chunk)
        return b"".join(chunks)

    def _call(
        self,
        method: str,
        url: str,
        *,
        tenant_id: str,
        source: Source,
        base: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        write: bool = False,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Any:
        """One API call with the tenant's token: the parsed JSON, or a typed error.

        Transient failures (5xx, timeouts, connection errors, broken JSON) are retried
        ``retries`` times with exponential backoff and jitter, then ``Unavailable``.
        """
        if not Origin(base).contains(url):
            raise UntrustedUrl()
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{_query(params)}"
        path = urlsplit(url).path
        refreshed = False
        attempt = 0
        while True:
            token = self.get_token(tenant_id, source.resource)
            headers = {
                "Authorization": f"Bearer {token.value}",
                "Accept": "application/json",
                **(extra_headers or {}),
            }
            started = time.monotonic()
            problem: str
            retry_after: float | None = None
            status: int | None = None
            try:
                response = self._session.request(
                    method,
                    url,
                    headers=headers,
                    json=body,
                    timeout=self.timeout,
                    allow_redirects=False,
                    stream=True,
                )
                try:
                    status = response.status_code
                    retry_after = retry_after_seconds(
                        response.headers.get("Retry-After")
                    )
                    content = self._read(response, started)
                finally:
                    response.close()
            except requests.Timeout:
                problem = "timed out"
            except requests.RequestException as exc:
                problem = f"connection failed ({type(exc).__name__})"
            else:
                elapsed = (time.monotonic() - started) * 1000
                log.debug("%s %s -> %s in %.0f ms", method, path, status, elapsed)
                assert status is not None
                data = _parse_json(content)
                if status == 429:
                    raise Throttled(
                        retry_after if retry_after is not None else DEFAULT_RETRY_AFTER,
                        status=429,
                    )
                if status == 401 and not refreshed:
                    # The token may have been revoked or rotated: try once afresh.
                    refreshed = True
                    self.drop_token(tenant_id, source.resource)
                    continue
                if status in (401, 403):
                    raise self._denied(status, data, token, source, write=write)
                if status == 404:
                    code, _ = _api_error_fields(data)
                    raise NotFound(status=404, error_code=code or None)
                if 300 <= status < 400:
                    raise MicrosoftError(
                        f"Microsoft answered with a redirect (HTTP {status}); the "
                        "portal does not follow redirects from the APIs.",
                        status=status,
                    )
                if status >= 500 or status == 408:
                    problem = f"HTTP {status}"
                elif status >= 400:
                    code, _ = _api_error_fields(data)
                    raise MicrosoftError(
                        f"Microsoft rejected the request (HTTP {status}"
                        f"{', ' + code if code else ''}).",
                        status=status,
                        error_code=code or None,
                    )
                elif data is _INVALID:
                    problem = "invalid JSON"
                else:
                    return data
            attempt += 1
            if attempt > self.retries:
                raise Unavailable(
                    f"Microsoft did not answer properly ({problem}) after "
                    f"{attempt} attempts. This is usually temporary; the portal will "
                    "try again.",
                    status=status,
                    retry_after=retry_after,
                )
            log.warning(
                "%s %s for tenant %s: %s; retry %d of %d",
                method,
                path,
                tenant_id,
                problem,
                attempt,
                self.retries,
            )
            self._sleep_before_retry(attempt, retry_after)

    def _denied(
        self,
        status: int,
        data: Any,
        token: AccessToken,
        source: Source,
        *,
        write: bool,
    ) -> MicrosoftError:
        code, message = _api_error_fields(data)
        text = f"{code} {message}"
        if _NOT_LICENSED.search(text):
            return NotLicensed(
                f"The customer's tenant is not licensed for {source.label}, or the "
                "service has not been set up there yet.",
                status=status,
                error_code=code or None,
            )
        if status == 401 and _CONSENT.search(text):
            return ConsentRevoked(status=status, error_code=code or None)
        missing = source.missing_roles(token.roles, write=write)
        if missing:
            return AccessDenied(missing, status=status, error_code=code or None)
        return AccessDenied(
            message=(
                f"Microsoft refused access to {source.label} (HTTP {status}"
                f"{', ' + code if code else ''}) although the partner app holds "
                "the permission. Ask the customer's admin to check the app's access."
            ),
            status=status,
            error_code=code or None,
        )

    def _odata_page(self, data: Any, *, base: str, full: int | None) -> Page:
        """A ``Page`` from an OData body. ``full`` is the ``$top`` of ``$skip``-paged
        APIs (MDE, XDR): a full page means more may follow, and a next link is only
        a hint there. Graph pages with its next link, so a foreign one is an error."""
        if not isinstance(data, dict) or not isinstance(data.get("value"), list):
            raise Unavailable("Microsoft sent a page without a 'value' list.")
        items = [item for item in data["value"] if isinstance(item, dict)]
        next_link = data.get("@odata.nextLink")
        if not isinstance(next_link, str) or not next_link:
            next_link = None
        elif not Origin(base).contains(next_link):
            if full is None:
                # Checked again when followed; refusing now keeps it out of cursors.
                raise UntrustedUrl(
                    "Microsoft's next-page link points outside the configured "
                    "Microsoft hosts; the portal did not follow it."
                )
            log.warning("Ignoring a next link outside %s", base)
            next_link = None
        has_more = next_link is not None or (full is not None and len(items) >= full)
        return Page(items=items, next_link=next_link, has_more=has_more)


_INVALID = object()


def _parse_json(content: bytes) -> Any:
    """Parsed JSON, None for an empty body, ``_INVALID`` for anything unreadable.
    orjson reads first (the fast path); what it refuses (NaN, integers beyond 64
    bits, lone surrogates) ``json`` reads.
    A NUL character (``\\u0000``) is replaced, see `_without_nul`.
    """
    if not content or content.isspace():  # (strip() would copy a whole page)
        return None
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        try:
            data = json.loads(content)
        except (ValueError, UnicodeDecodeError):
            return _INVALID
    # JSON text holds a NUL only as this escape: the rare page with one is walked.
    return _without_nul(data) if b"\\u0000" in content else data


def _without_nul(value: Any) -> Any:
    """`value` with every NUL character in its strings replaced by U+FFFD, the
    replacement character. PostgreSQL's text and jsonb cannot hold a NUL: one in any
    field of an alert would fail its whole page, on every retry, and stop the tenant's
    sync for good."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    return value

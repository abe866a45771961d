"""What the Microsoft client returns and raises: tokens, pages, typed errors.

No Django, no HTTP. Every error carries a plain-words ``message`` an MSSP analyst can
act on; none of them ever holds a token, a secret or a raw response body.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

# --- errors ---------------------------------------------------------------------------


class MicrosoftError(Exception):
    """A call to Microsoft failed. ``message`` says what happened and what to do."""

    kind: ClassVar[str] = "error"
    #: True when trying again later may succeed without anyone changing anything.
    transient: ClassVar[bool] = False
    default_message: ClassVar[str] = "A call to Microsoft failed."

    def __init__(
        self,
        message: str | None = None,
        *,
        codes: Iterable[int] = (),
        status: int | None = None,
        error_code: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.codes: tuple[int, ...] = tuple(int(c) for c in codes)
        self.status = status
        self.error_code = error_code
        self.correlation_id = correlation_id
        super().__init__(self.message)

    @property
    def code(self) -> int | None:
        """The first AADSTS code, when Entra ID sent one."""
        return self.codes[0] if self.codes else None

    def __str__(self) -> str:
        if self.codes and f"AADSTS{self.codes[0]}" not in self.message:
            return f"{self.message} (AADSTS{self.codes[0]})"
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, codes={self.codes!r}, "
            f"status={self.status!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe record (for a ``last_error`` field or the shared cache);
        ``error_from_dict`` turns it back into the same typed error."""
        record: dict[str, Any] = {
            "kind": self.kind,
            "message": self.message,
            "codes": list(self.codes),
            "status": self.status,
            "error_code": self.error_code,
            "transient": self.transient,
        }
        for name in ("retry_after", "missing_roles"):
            if hasattr(self, name):
                record[name] = getattr(self, name)
        return record


class Throttled(MicrosoftError):
    """Microsoft answered 429: wait ``retry_after`` seconds before the next call."""

    kind = "throttled"
    transient = True
    default_message = "Microsoft is throttling our calls for this tenant."

    def __init__(self, retry_after: float, message: str | None = None, **kw: Any):
        self.retry_after = float(retry_after)
        super().__init__(
            message
            or f"{self.default_message} Retrying after {self.retry_after:g} seconds.",
            **kw,
        )

    def __repr__(self) -> str:
        return f"Throttled(retry_after={self.retry_after!r}, status={self.status!r})"


class Unavailable(MicrosoftError):
    """A transient failure: 5xx, timeout, connection error, truncated or bad JSON."""

    kind = "unavailable"
    transient = True
    default_message = (
        "Microsoft did not answer properly (server error, timeout or a broken "
        "response). This is usually temporary; the portal will try again."
    )

    def __init__(
        self, message: str | None = None, *, retry_after: float | None = None, **kw: Any
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)


class ConsentRevoked(MicrosoftError):
    """The customer's admin consent for our app is gone (or was never given)."""

    kind = "consent_revoked"
    default_message = (
        "The customer's admin consent for the partner app is missing or was revoked. "
        "Send the customer's admin a new consent link."
    )


class TenantNotFound(MicrosoftError):
    """Entra ID does not know this tenant (typo, deleted tenant, wrong cloud)."""

    kind = "tenant_not_found"
    default_message = (
        "Microsoft does not know this tenant ID. Check the tenant ID with the customer "
        "(and that it belongs to this Microsoft cloud)."
    )


class CredentialBroken(MicrosoftError):
    """OUR partner app credential was rejected: one alarm for every tenant."""

    kind = "credential_broken"
    default_message = (
        "Microsoft rejected the partner app's own credential. This affects every "
        "customer: fix the app registration's secret or certificate and the portal's "
        "MS_CLIENT_SECRET / MS_CLIENT_CERT_PATH."
    )


class NotLicensed(MicrosoftError):
    """The customer has no licence for this API, or the service is not provisioned."""

    kind = "not_licensed"
    default_message = (
        "The customer's tenant is not licensed for this Microsoft service, or the "
        "service has not been set up there yet."
    )


class AccessDenied(MicrosoftError):
    """The API refused our token: the app lacks a permission in this tenant."""

    kind = "access_denied"
    default_message = (
        "Microsoft refused access for the partner app in this tenant. Ask the "
        "customer's admin to consent again so the app gets its permissions."
    )

    def __init__(
        self,
        missing_roles: Iterable[str] = (),
        message: str | None = None,
        **kw: Any,
    ) -> None:
        self.missing_roles: list[str] = list(missing_roles)
        if message is None and self.missing_roles:
            message = (
                f"The partner app lacks the permission {', '.join(self.missing_roles)} "
                "in this tenant. Ask the customer's admin to consent again with a new "
                "consent link."
            )
        super().__init__(message, **kw)

    def __repr__(self) -> str:
        return (
            f"AccessDenied(missing_roles={self.missing_roles!r}, "
            f"status={self.status!r}, codes={self.codes!r})"
        )


class BlockedByPolicy(MicrosoftError):
    """A Conditional Access policy in the customer's tenant blocks our app."""

    kind = "blocked_by_policy"
    default_message = (
        "A Conditional Access policy in the customer's tenant blocks the partner app. "
        "Ask the customer to exclude the app (its workload identity) from that policy."
    )


class NotFound(MicrosoftError):
    """The alert or incident does not exist (any more) in this tenant."""

    kind = "not_found"
    default_message = "Microsoft says this item does not exist in the tenant."


class UntrustedUrl(MicrosoftError):
    """A URL outside the configured Microsoft hosts: no bearer token is sent there."""

    kind = "untrusted_url"
    default_message = (
        "Microsoft pointed the portal at an address outside the configured Microsoft "
        "hosts; the portal did not follow it."
    )


def error_from_dict(record: dict[str, Any]) -> MicrosoftError:
    """The typed error a ``MicrosoftError.to_dict()`` record describes."""
    cls = ERROR_KINDS.get(str(record.get("kind")), MicrosoftError)
    common: dict[str, Any] = {
        "codes": record.get("codes") or (),
        "status": record.get("status"),
        "error_code": record.get("error_code"),
    }
    message = record.get("message")
    if cls is Throttled:
        return Throttled(float(record.get("retry_after") or 0), message, **common)
    if cls is Unavailable:
        return Unavailable(message, retry_after=record.get("retry_after"), **common)
    if cls is AccessDenied:
        return AccessDenied(record.get("missing_roles") or (), message, **common)
    return cls(message, **common)


ERROR_KINDS: dict[str, type[MicrosoftError]] = {
    cls.kind: cls
    for cls in (
        MicrosoftError,
        Throttled,
        Unavailable,
        ConsentRevoked,
        TenantNotFound,
        CredentialBroken,
        NotLicensed,
        AccessDenied,
        BlockedByPolicy,
        NotFound,
        UntrustedUrl,
    )
}


# AADSTS code -> (error class, plain-words message). Codes not listed fall back to the
# OAuth ``error`` class (see ``error_for_token_response``).
_CONSENT = (
    "The customer's admin consent for the partner app is missing or was revoked "
    "(the app has no service principal in their tenant). Send the customer's admin "
    "a new consent link."
)
AADSTS_ERRORS: dict[int, tuple[type[MicrosoftError], str]] = {
    700016: (ConsentRevoked, _CONSENT),
    7000229: (ConsentRevoked, _CONSENT),
    65001: (
        ConsentRevoked,
        "The customer's admin has not consented to the partner app. Send the "
        "customer's admin a new consent link.",
    ),
    90002: (
        TenantNotFound,
        "Microsoft does not know this tenant ID (typo, deleted tenant or another "
        "Microsoft cloud). Check the tenant ID with the customer.",
    ),
    900023: (
        TenantNotFound,
        "This is not a valid tenant ID or domain. Check the tenant ID with the "
        "customer.",
    ),
    7000215: (
        CredentialBroken,
        "Microsoft rejected the partner app's client secret (wrong value, or the "
        "secret ID was pasted instead of its value). Every customer is affected: "
        "set MS_CLIENT_SECRET to a valid secret value.",
    ),
    7000222: (
        CredentialBroken,
        "The partner app's client secret has expired. Every customer is affected: "
        "create a new secret in the app registration and update MS_CLIENT_SECRET.",
    ),
    7000218: (
        CredentialBroken,
        "The portal sent no credential for the partner app. Every customer is "
        "affected: set MS_CLIENT_CERT_PATH or MS_CLIENT_SECRET.",
    ),
    700027: (
        CredentialBroken,
        "Microsoft rejected the partner app's certificate (not uploaded to the app "
        "registration, or the wrong one). Every customer is affected: upload the "
        "certificate of MS_CLIENT_CERT_PATH to the app registration.",
    ),
    700024: (
        CredentialBroken,
        "Microsoft rejected the partner app's certificate sign-in as outside its "
        "valid time. Every customer is affected: check this server's clock.",
    ),
    500011: (
        NotLicensed,
        "The customer's tenant has no licence for this Microsoft service, or the "
        "service has not been set up there yet.",
    ),
    650052: (
        NotLicensed,
        "The customer's tenant is not subscribed to this Microsoft service.",
    ),
    53003: (
        BlockedByPolicy,
        "A Conditional Access policy in the customer's tenant blocks the partner app. "
        "Ask the customer to exclude the app from that policy.",
    ),
    90055: (Throttled, "Microsoft sign-in is throttling token requests."),
    50196: (Throttled, "Microsoft sign-in is throttling token requests."),
    90033: (Unavailable, "Microsoft sign-in had a temporary problem."),
}


def error_for_token_response(
    body: dict[str, Any],
    *,
    status: int | None = None,
    retry_after: float | None = None,
) -> MicrosoftError:
    """The typed error for an Entra ID token error body (an MSAL error dict)."""
    codes = [int(c) for c in body.get("error_codes") or [] if str(c).isdigit()]
    error = str(body.get("error") or "")
    correlation_id = body.get("correlation_id")
    common: dict[str, Any] = {
        "codes": codes,
        "status": status,
        "error_code": error or None,
        "correlation_id": correlation_id if isinstance(correlation_id, str) else None,
    }
    for code in codes:
        if code in AADSTS_ERRORS:
            cls, message = AADSTS_ERRORS[code]
            if cls is Throttled:
                return Throttled(retry_after or 5.0, message, **common)
            if cls is Unavailable:
                return Unavailable(message, retry_after=retry_after, **common)
            return cls(message, **common)
    if status == 429:
        return Throttled(retry_after or 5.0, **common)
    if error == "temporarily_unavailable" or (status and status >= 500):
        return Unavailable(
            "Microsoft sign-in had a temporary problem.",
            retry_after=retry_after,
            **common,
        )
    if error == "invalid_client":
        return CredentialBroken(**common)
    if error == "unauthorized_client":
        return ConsentRevoked(**common)
    return MicrosoftError(
        f"Microsoft sign-in refused the token request ({error or 'unknown error'}).",
        **common,
    )


# --- tokens ---------------------------------------------------------------------------


def decode_jwt_claims(value: str) -> dict[str, Any]:
    """The payload of a JWT, NOT verified: only for reading claims of a token we just
    received from Entra ID over verified TLS. Empty for an opaque token."""
    parts = value.split(".")
    if len(parts) != 3:
        return {}
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


@dataclass(frozen=True)
class AccessToken:
    """An app-only access token for one (tenant, resource). ``value`` never shows in
    ``repr``/``str``."""

    value: str = field(repr=False)
    expires_at: datetime
    tenant_id: str
    audience: str
    roles: frozenset[str] = frozenset()

    @classmethod
    def from_value(cls, value: str, *, expires_at: datetime) -> AccessToken:
        """Build from a token string, reading ``tid``, ``aud`` and ``roles``."""
        claims = decode_jwt_claims(value)
        roles = claims.get("roles") or []
        return cls(
            value=value,
            expires_at=expires_at,
            tenant_id=str(claims.get("tid") or ""),
            audience=str(claims.get("aud") or ""),
            roles=frozenset(r for r in roles if isinstance(r, str)),
        )

    def seconds_left(self, *, now: datetime | None = None) -> float:
        return (self.expires_at - (now or datetime.now(UTC))).total_seconds()

    def __str__(self) -> str:
        return repr(self)


# --- pages ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """One page of a list call. ``next_link`` is Microsoft's ``@odata.nextLink`` (Graph,
    sometimes MDE); ``has_more`` says whether another page may follow at all (for
    ``$skip``/``skip`` paging it is true when the page came back full)."""

    items: list[dict[str, Any]]
    next_link: str | None = None
    has_more: bool = False

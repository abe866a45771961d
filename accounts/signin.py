"""Sign in with Microsoft for the MSSP's own staff: authorization code + PKCE (MSAL).

Only accounts of `MS_STAFF_TENANT_ID` get in: the ID token's issuer and `tid` must name
exactly that tenant. A first sign-in creates a portal user with no access at all; ops
assign customers (to the user or one of their groups) before anything shows.
"""

from __future__ import annotations

import logging
import uuid

import msal
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from accounts.models import StaffIdentity
from core import services as core_services
from core import validators
from tenants import microsoft
from tenants.microsoft import schemas

logger = logging.getLogger(__name__)

FLOW_SESSION_KEY = "microsoft_sign_in_flow"


class SignInFailed(Exception):
    """The sign-in proves nothing; `public_message` is safe to show."""

    def __init__(self, reason: str, public_message: str) -> None:
        super().__init__(reason)
        self.public_message = public_message


def is_enabled() -> bool:
    return bool(settings.MS_STAFF_TENANT_ID and settings.MS_CLIENT_ID)


def redirect_uri() -> str:
    return f"{settings.PORTAL_BASE_URL}/accounts/microsoft/callback"


def expected_issuer() -> str:
    return f"{settings.MS_LOGIN_URL.rstrip('/')}/{settings.MS_STAFF_TENANT_ID}/v2.0"


def _app() -> msal.ConfidentialClientApplication:
    try:
        return microsoft.get_client().sign_in_app(settings.MS_STAFF_TENANT_ID)
    except (ValueError, requests.RequestException, schemas.MicrosoftError) as exc:
        logger.warning("Microsoft sign-in unavailable: %s", type(exc).__name__)
        raise SignInFailed(
            "sign-in app unavailable",
            "Microsoft sign-in could not be reached. Try again, or sign in with your "
            "portal password.",
        ) from None


def start_sign_in(*, session, next_url: str) -> str:
    """The Microsoft URL to send the browser to; the flow (state, nonce, PKCE
    verifier) waits in the server-side session for the callback."""
    flow = _app().initiate_auth_code_flow(
        scopes=[],
        redirect_uri=redirect_uri(),
        prompt="select_account",
    )
    session[FLOW_SESSION_KEY] = {"flow": flow, "next": next_url}
    return flow["auth_uri"]


def finish_sign_in(*, session, params: dict[str, str], remote_addr: str | None):
    """(user, next URL) for Microsoft's answer, or SignInFailed.

    The flow is used once: a replayed or forged callback finds no flow.
    """
    pending = session.pop(FLOW_SESSION_KEY, None)
    if not pending:
        raise SignInFailed(
            "no pending flow",
            "This sign-in has expired or was already used. Start again.",
        )
    if params.get("error"):
        raise SignInFailed(
            f"microsoft error {params.get('error')[:64]}",
            "Microsoft did not sign you in. Start again, or ask your administrator.",
        )
    try:
        result = _app().acquire_token_by_auth_code_flow(pending["flow"], params)
    except ValueError:
        # MSAL raises for a state that does not match the flow (forged or stale).
        raise SignInFailed(
            "state mismatch", "This sign-in does not match the one we started."
        ) from None
    except requests.RequestException:
        raise SignInFailed(
            "token endpoint unreachable",
            "Microsoft sign-in could not be reached. Try again.",
        ) from None
    if "error" in result:
        raise SignInFailed(
            f"token error {str(result.get('error'))[:64]}",
            "Microsoft did not confirm the sign-in. Start again.",
        )
    claims = result.get("id_token_claims") or {}
    user = _user_for(claims, remote_addr=remote_addr)
    return user, pending.get("next") or "/"


def _user_for(claims: dict, *, remote_addr: str | None):
    staff_tenant = settings.MS_STAFF_TENANT_ID
    tid = str(claims.get("tid") or "").lower()
    oid = str(claims.get("oid") or "")
    if claims.get("iss") != expected_issuer() or tid != staff_tenant:
        core_services.audit(
            action="staff.sign_in_refused",
            detail=f"account of tenant {tid[:36] or '?'} (not the MSSP's)",
            remote_addr=remote_addr,
        )
        raise SignInFailed(
            "foreign tenant",
            "Only accounts of the MSSP's own Microsoft tenant can sign in here.",
        )
    if not validators.is_guid(oid):
        raise SignInFailed("no oid", "Microsoft sent an incomplete sign-in.")
    name = str(claims.get("preferred_username") or claims.get("upn") or oid)[:150]
    with transaction.atomic():
        key = {"tenant_id": uuid.UUID(tid), "object_id": uuid.UUID(oid)}
        identity = (
            StaffIdentity.objects.select_for_update()
            .select_related("user")
            .filter(**key)
            .first()
        )
        created = identity is None
        if created:
            identity = StaffIdentity.objects.create(
                user=_new_user(name, claims), username=name, **key
            )
        user = identity.user
        if not user.is_active:
            raise SignInFailed(
                "inactive user", "This account is disabled in the portal."
            )
        identity.username = name
        identity.last_sign_in_at = timezone.now()
        identity.save(update_fields=["username", "last_sign_in_at"])
        core_services.audit(
            action="staff.signed_in_microsoft",
            actor=user,
            detail=("first sign-in, no customers yet: " if created else "") + name,
            remote_addr=remote_addr,
        )
    return user


def _new_user(name: str, claims: dict):
    """A portal user with no password and no access; never an existing account
    (a matching user name is not proof that it is the same person)."""
    users = get_user_model().objects
    username = name
    if users.filter(username__iexact=username).exists():
        username = f"{name[:140]}#{str(claims.get('oid'))[:8]}"
    display = str(claims.get("name") or "")
    first, _, last = display.partition(" ")
    user = users.create_user(
        username=username,
        email=name if "@" in name else "",
        first_name=first[:150],
        last_name=last[:150],
    )
    user.set_unusable_password()
    user.save(update_fields=["password"])
    return user

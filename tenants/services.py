"""Writes: every consequential change is one function here that owns its transaction,
writes the audit row and enqueues work on commit."""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core import quotas as core_quotas
from core import services as core_services
from core import validators
from tenants import microsoft, quotas, signals, tasks
from tenants.microsoft import schemas, sources
from tenants.models import Capability, ConsentLink, Customer, Tenant

logger = logging.getLogger(__name__)

CONSENT_LINK_LIFETIME = timedelta(days=7)
# Microsoft does not promise that a grant is usable the moment the admin is redirected;
# verification keeps trying this long before it calls the consent missing.
CONSENT_REPLICATION_WINDOW = timedelta(minutes=5)
CONSENT_SCOPE = "https://graph.microsoft.com/.default"
STATE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{43}$")


# --- Customers ------------------------------------------------------------------------


@transaction.atomic
def add_customer(
    *, actor, name: str, contact_email: str = "", expected_tenant: str = ""
) -> Customer:
    """A new customer, visible to the staff member who added it."""
    customer = Customer.objects.create(
        name=name, contact_email=contact_email, expected_tenant=expected_tenant
    )
    if actor is not None and not actor.is_superuser:
        customer.staff.add(actor)
    core_services.audit(
        action="customer.added", actor=actor, customer=customer, detail=name
    )
    return customer


# --- Consent links --------------------------------------------------------------------


def hash_state(state: str) -> str:
    return hashlib.sha256(state.encode("ascii")).hexdigest()


def consent_redirect_uri() -> str:
    return f"{settings.PORTAL_BASE_URL}/consent/callback"


@transaction.atomic
def create_consent_link(
    *, actor, customer: Customer, lifetime: timedelta = CONSENT_LINK_LIFETIME
) -> tuple[ConsentLink, str]:
    """A new single-use consent link and its URL.

    The URL is returned once and never stored: only a hash of its state is kept, so
    neither the database nor a log can replay it.
    """
    state = secrets.token_urlsafe(32)  # 256 random bits, 43 characters
    expected = customer.expected_tenant.strip()
    pinned = uuid.UUID(expected) if validators.is_guid(expected) else None
    link = ConsentLink.objects.create(
        customer=customer,
        state_hash=hash_state(state),
        pinned_tenant=pinned,
        created_by=actor,
        expires_at=timezone.now() + lifetime,
    )
    # Microsoft makes the admin sign in to the tenant named in the path; without a
    # known tenant, any work or school tenant may consent.
    authority = str(pinned) if pinned else (expected.lower() or "organizations")
    query = urlencode(
        {
            "client_id": settings.MS_CLIENT_ID,
            "scope": CONSENT_SCOPE,
            "redirect_uri": consent_redirect_uri(),
            "state": state,
        }
    )
    url = f"{settings.MS_LOGIN_URL.rstrip('/')}/{authority}/v2.0/adminconsent?{query}"
    core_services.audit(
        action="consent_link.created",
        actor=actor,
        customer=customer,
        detail=f"expires {link.expires_at:%Y-%m-%d %H:%M} UTC"
        + (f", pinned to tenant {pinned}" if pinned else ""),
    )
    return link, url


@transaction.atomic
def withdraw_consent_link(*, actor, link: ConsentLink) -> None:
    updated = ConsentLink.objects.filter(
        pk=link.pk, used_at__isnull=True, withdrawn_at__isnull=True
    ).update(withdrawn_at=timezone.now())
    if updated:
        core_services.audit(
            action="consent_link.withdrawn", actor=actor, customer=link.customer
        )


# --- The consent callback -------------------------------------------------------------


class CallbackRejected(Exception):
    """A callback that proves nothing: forged, replayed, expired or malformed."""

    def __init__(self, reason: str, public_message: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.public_message = public_message


@dataclass(frozen=True)
class CallbackResult:
    """What the customer's admin is shown after Microsoft sent them back."""

    outcome: str  # a ConsentLink.Outcome value
    link: ConsentLink
    message: str


_REJECTED = (
    "This consent response could not be accepted. The link may have expired, been "
    "used already, or been withdrawn. Nothing was changed. Ask your security provider "
    "for a new consent link."
)


def record_consent_callback(*, params: dict[str, str], remote_addr: str | None):
    """Checks and consumes the state, then records what Microsoft reported.

    The `tenant` parameter is a claim, not a proof: the tenant is only marked
    consented here, and verify_tenant_access later proves it with a token.
    Raises CallbackRejected for anything that does not match a live link.
    """
    state = params.get("state", "")
    if not STATE_PATTERN.match(state):
        _reject(
            "missing or malformed state", remote_addr, detail="no usable state value"
        )
    error = params.get("error", "")
    if error:
        return _record_refusal(state=state, params=params, remote_addr=remote_addr)

    tenant_param = params.get("tenant", "")
    if params.get("admin_consent", "") != "True" or not tenant_param:
        _reject("incomplete success response", remote_addr, state=state)
    if not validators.is_guid(tenant_param):
        _reject("tenant is not a GUID", remote_addr, state=state)
    tenant_id = uuid.UUID(tenant_param)

    # Consuming is one conditional UPDATE of its own: of two parallel callbacks with
    # the same state exactly one gets the row, and a rejection below still leaves the
    # link used (fail closed).
    link = _consume(state, remote_addr)
    if link.pinned_tenant and link.pinned_tenant != tenant_id:
        with transaction.atomic():
            _close_link(link, "The tenant in the response is not the pinned one.")
            core_services.audit(
                action="consent.rejected",
                customer=link.customer,
                detail=f"tenant {tenant_id} does not match pinned {link.pinned_tenant}",
                remote_addr=remote_addr,
            )
        raise CallbackRejected("tenant does not match the pinned tenant", _REJECTED)
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().filter(tenant_id=tenant_id).first()
        if tenant is not None and tenant.customer_id != link.customer_id:
            _close_link(link, "That tenant is already connected to another customer.")
            core_services.audit(
                action="consent.rejected",
                customer=link.customer,
                detail=f"tenant {tenant_id} already belongs to another customer",
                remote_addr=remote_addr,
            )
            return CallbackResult(
                outcome=ConsentLink.Outcome.REJECTED,
                link=link,
                message=(
                    "This Microsoft tenant is already connected under a different "
                    "customer account with your security provider, so it was not "
                    "linked again. Please contact them to sort out which account it "
                    "belongs to."
                ),
            )
        now = timezone.now()
        if tenant is None:
            try:
                with transaction.atomic():
                    tenant = Tenant.objects.create(
                        customer=link.customer,
                        # Microsoft does not send the tenant's name; staff may edit.
                        display_name=link.customer.name,
                        tenant_id=tenant_id,
                        state=Tenant.State.CONSENTED,
                        consented_at=now,
                    )
            except IntegrityError:  # a parallel callback for another link won the race
                raise CallbackRejected(
                    "tenant created concurrently", _REJECTED
                ) from None
        else:
            tenant.state = Tenant.State.CONSENTED
            tenant.consented_at = now
            tenant.last_error = ""
            tenant.save(
                update_fields=["state", "consented_at", "last_error", "updated_at"]
            )
        link.outcome = ConsentLink.Outcome.CONSENTED
        link.tenant = tenant
        link.outcome_detail = ""
        link.save(update_fields=["outcome", "tenant", "outcome_detail"])
        core_services.audit(
            action="consent.granted",
            tenant=tenant,
            detail="admin consent reported by Microsoft; verifying access",
            remote_addr=remote_addr,
        )
        _enqueue_verification(tenant)
    return CallbackResult(
        outcome=ConsentLink.Outcome.CONSENTED,
        link=link,
        message="Thank you. Consent was received; we are now checking access.",
    )


def _close_link(link: ConsentLink, detail: str) -> None:
    link.outcome = ConsentLink.Outcome.REJECTED
    link.outcome_detail = detail
    link.save(update_fields=["outcome", "outcome_detail"])


def _consume(state: str, remote_addr: str | None) -> ConsentLink:
    """Marks the link used, exactly once, or raises CallbackRejected."""
    now = timezone.now()
    state_hash = hash_state(state)
    claimed = ConsentLink.objects.filter(
        state_hash=state_hash,
        used_at__isnull=True,
        withdrawn_at__isnull=True,
        expires_at__gt=now,
    ).update(used_at=now)
    if claimed != 1:
        link = ConsentLink.objects.filter(state_hash=state_hash).first()
        if link is None:
            reason = "unknown state"
        elif link.withdrawn_at:
            reason = "withdrawn link"
        elif link.used_at:
            reason = "link already used"
        else:
            reason = "expired link"
        _reject(reason, remote_addr, customer=link.customer if link else None)
    return ConsentLink.objects.select_related("customer").get(state_hash=state_hash)


_NOT_AN_ADMIN = (
    "The account that signed in is not an administrator of the tenant (AADSTS90094), "
    "so nothing was connected. Ask a Global Administrator to open the same link."
)
_REFUSED = (
    "Consent was not given, so nothing was connected. If that was a mistake, open the "
    "same link again and choose Accept. Only a Global Administrator (or Privileged "
    "Role Administrator) of your Microsoft tenant can consent."
)
_MICROSOFT_ERROR = (
    "Microsoft reported a problem and nothing was connected{code}. Try the link again "
    "later; if it keeps failing, send this page's message to your security provider."
)


def _record_refusal(*, state: str, params: dict[str, str], remote_addr: str | None):
    """The admin cancelled or Microsoft reported an error: record it, keep the link.

    The link stays usable, so an admin who cancelled by mistake can follow it again.
    """
    link = (
        ConsentLink.objects.select_related("customer")
        .filter(state_hash=hash_state(state))
        .first()
    )
    if link is None or not link.is_open:
        _reject(
            "error response for an unknown or closed link", remote_addr, state=state
        )
    error = params.get("error", "")[:64]
    description = params.get("error_description", "")
    code = re.search(r"AADSTS(\d+)", description)
    cancelled = params.get("error_subcode") == "cancel" or (code and code[1] == "65004")
    if code and code[1] == "90094":
        outcome, message = ConsentLink.Outcome.FAILED, _NOT_AN_ADMIN
    elif cancelled or (not code and error in ("access_denied", "consent_required")):
        outcome, message = ConsentLink.Outcome.REFUSED, _REFUSED
    else:
        outcome = ConsentLink.Outcome.FAILED
        message = _MICROSOFT_ERROR.format(code=f" (AADSTS{code[1]})" if code else "")
    detail = f"{error}" + (f" AADSTS{code[1]}" if code else "")
    with transaction.atomic():
        ConsentLink.objects.filter(pk=link.pk).update(
            outcome=outcome, outcome_detail=detail
        )
        core_services.audit(
            action="consent.refused"
            if outcome == ConsentLink.Outcome.REFUSED
            else "consent.failed",
            customer=link.customer,
            detail=detail,
            remote_addr=remote_addr,
        )
    link.refresh_from_db()
    return CallbackResult(outcome=outcome, link=link, message=message)


def _reject(
    reason: str,
    remote_addr: str | None,
    *,
    state: str = "",
    customer: Customer | None = None,
    detail: str = "",
):
    if customer is None and state:
        link = ConsentLink.objects.filter(state_hash=hash_state(state)).first()
        customer = link.customer if link else None
    core_services.audit(
        action="consent.callback_rejected",
        customer=customer,
        detail=detail or reason,
        remote_addr=remote_addr,
    )
    logger.warning("consent callback rejected: %s", reason)
    raise CallbackRejected(reason, _REJECTED)


def _enqueue_verification(tenant: Tenant) -> None:
    tasks.verify_tenant.delay_on_commit(tenant.pk)


# --- Proof of access ------------------------------------------------------------------


class ConsentNotYetReplicated(Exception):
    """Microsoft does not know the grant yet; verification should try again soon."""


class TransientFailure(Exception):
    """Microsoft was unavailable or throttled us; verification should try again."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def verify_tenant_access(*, tenant: Tenant) -> Tenant:
    """Proves access with an app-only token and one call per source.

    Records a Capability per source. The tenant becomes verified only after a token
    whose `tid` is this tenant and at least one successful source call. Raises
    ConsentNotYetReplicated or TransientFailure when trying again later makes sense.
    """
    client = microsoft.get_client()
    # A proof uses fresh tokens: drop cached ones (and MSAL's memory of a refusal),
    # so a revoked consent or a broken credential shows now, not when tokens expire.
    client.forget_tenant(str(tenant.tenant_id))
    capabilities: dict[str, tuple[str, str, list[str], list[str]]] = {}
    try:
        for source in sources.SOURCES.values():
            capabilities[source.key] = _check_source(client, tenant, source)
    except schemas.ConsentRevoked as exc:
        if (
            tenant.state == Tenant.State.CONSENTED
            and tenant.consented_at
            and timezone.now() - tenant.consented_at < CONSENT_REPLICATION_WINDOW
        ):
            raise ConsentNotYetReplicated(exc.message) from None
        return mark_tenant_revoked(tenant=tenant, reason=exc.message)
    except schemas.CredentialBroken as exc:
        core_services.raise_partner_credential_alarm(message=exc.message)
        raise TransientFailure(exc.message) from None
    except (schemas.TenantNotFound, schemas.BlockedByPolicy) as exc:
        return _mark_failing(tenant, exc.message)
    except (schemas.Throttled, schemas.Unavailable) as exc:
        raise TransientFailure(exc.message, getattr(exc, "retry_after", None)) from None
    core_services.clear_partner_credential_alarm()
    return _record_capabilities(tenant, capabilities)


def _check_source(
    client, tenant: Tenant, source: sources.Source
) -> tuple[str, str, list, list]:
    """(status, detail, granted roles, missing roles) for one source."""
    tenant_id = str(tenant.tenant_id)
    facts = tenant.facts
    unmet = source.unmet_needs(facts)
    if unmet:
        hint = source.needs_hint or f"Enter the tenant's {', '.join(unmet)}."
        return Capability.Status.NOT_CONFIGURED, hint, [], []
    try:
        token = client.get_token(tenant_id, source.resource)
    except schemas.NotLicensed as exc:
        return Capability.Status.NOT_LICENSED, exc.message, [], []
    if token.tenant_id.lower() != tenant_id.lower():
        # The token was issued for another directory: nothing here is proven.
        raise schemas.TenantNotFound(
            "Microsoft issued a token for a different tenant than the one recorded; "
            "access is not proven."
        )
    granted = sorted(token.roles)
    missing = source.missing_roles(token.roles)
    if missing:
        return (
            Capability.Status.MISSING_PERMISSION,
            f"{', '.join(missing)} missing: the customer's admin must consent again "
            "after the permission was added to the app.",
            granted,
            missing,
        )
    try:
        # The probe's list call counts in the tenant's quota like the sync's calls.
        quotas.take_call(tenant_id, source)
        client.probe(
            tenant_id, source.key, mcas_url=facts.mcas_url, region=facts.region
        )
    except core_quotas.QuotaExhausted as exc:
        return Capability.Status.ERROR, exc.message, granted, []
    except schemas.AccessDenied as exc:
        return (
            Capability.Status.MISSING_PERMISSION,
            exc.message,
            granted,
            list(exc.missing_roles),
        )
    except schemas.NotLicensed as exc:
        return Capability.Status.NOT_LICENSED, exc.message, granted, []
    except (schemas.Throttled, schemas.Unavailable) as exc:
        return Capability.Status.ERROR, exc.message, granted, []
    return Capability.Status.OK, "", granted, []


@transaction.atomic
def _record_capabilities(tenant: Tenant, capabilities: dict) -> Tenant:
    now = timezone.now()
    for source, (status, detail, granted, missing) in capabilities.items():
        Capability.objects.update_or_create(
            tenant=tenant,
            source=source,
            defaults={
                "status": status,
                "detail": detail,
                "granted_roles": granted,
                "missing_roles": missing,
                "checked_at": now,
            },
        )
    ok = [s for s, (status, *_rest) in capabilities.items() if status == "ok"]
    # A source whose check met a passing failure (throttled, unavailable) is synced
    # too: its first successful run settles it. Otherwise one 503 during a check
    # would stop that source until staff asked for another check.
    passing = [
        s
        for s, (status, *_rest) in capabilities.items()
        if status == Capability.Status.ERROR
    ]
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    if ok:
        was = tenant.state
        tenant.state = Tenant.State.VERIFIED
        tenant.verified_at = now
        tenant.last_error = ""
        tenant.save(update_fields=["state", "verified_at", "last_error", "updated_at"])
        # The sync app starts (or, back from revoked or failing, restarts now)
        # the sync of these sources.
        signals.tenant_verified.send(
            sender=Tenant,
            tenant=tenant,
            sources=ok + passing,
            again=was != Tenant.State.VERIFIED,
        )
        if was != Tenant.State.VERIFIED:
            core_services.audit(
                action="tenant.verified",
                tenant=tenant,
                detail="connected: " + ", ".join(sorted(ok)),
            )
        return tenant
    problems = "; ".join(
        f"{sources.get(s).label}: {detail}"
        for s, (status, detail, *_rest) in capabilities.items()
        if status != Capability.Status.NOT_CONFIGURED
    )
    return _mark_failing(tenant, f"No source could be read. {problems}")


@transaction.atomic
def mark_capability_lost(
    *, tenant: Tenant, source: str, status: str, detail: str
) -> None:
    """A source stopped answering for good (licence, permission): the sync of that
    source stops until the tenant is verified again; the others carry on."""
    changed = (
        Capability.objects.filter(tenant=tenant, source=source)
        .exclude(status=status, detail=detail)
        .update(status=status, detail=detail, checked_at=timezone.now())
    )
    if changed:
        core_services.audit(
            action="tenant.capability_lost",
            tenant=tenant,
            detail=f"{sources.get(source).label}: {detail}",
        )


@transaction.atomic
def _mark_failing(tenant: Tenant, reason: str) -> Tenant:
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    if tenant.state != Tenant.State.FAILING or tenant.last_error != reason:
        tenant.state = Tenant.State.FAILING
        tenant.last_error = reason
        tenant.save(update_fields=["state", "last_error", "updated_at"])
        core_services.audit(action="tenant.failing", tenant=tenant, detail=reason)
    return tenant


@transaction.atomic
def mark_tenant_revoked(*, tenant: Tenant, reason: str) -> Tenant:
    """The customer's consent is gone: stop using the tenant, keep its data."""
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    if tenant.state != Tenant.State.REVOKED:
        tenant.state = Tenant.State.REVOKED
        tenant.last_error = reason
        tenant.save(update_fields=["state", "last_error", "updated_at"])
        core_services.audit(action="tenant.revoked", tenant=tenant, detail=reason)
    # What its sources last proved no longer holds: say so on each of them (the
    # next verification records them afresh).
    tenant.capabilities.exclude(status=Capability.Status.CONSENT_REVOKED).update(
        status=Capability.Status.CONSENT_REVOKED,
        detail="The customer's consent was revoked; nothing can be read until "
        "their admin consents again.",
        missing_roles=[],
        checked_at=timezone.now(),
    )
    return tenant


@transaction.atomic
def mark_tenant_unverifiable(*, tenant: Tenant, reason: str) -> Tenant:
    """Verification gave up after retries: say so on the tenant."""
    return _mark_failing(tenant, reason)


@transaction.atomic
def set_tenant_details(
    *, actor, tenant: Tenant, mcas_url: str | None = None, region: str | None = None
) -> Tenant:
    """Staff-entered facts Microsoft does not tell us: Cloud Apps URL, Defender geo."""
    if region and region not in sources.DEFENDER_GEOS:
        raise ValueError(f"unknown Defender region {region!r}")
    changed = []
    if mcas_url is not None and mcas_url != tenant.mcas_url:
        tenant.mcas_url = mcas_url
        changed.append("Cloud Apps API URL")
    if region is not None and region != tenant.region:
        tenant.region = region
        changed.append("region")
    if changed:
        tenant.save(update_fields=["mcas_url", "region", "updated_at"])
        core_services.audit(
            action="tenant.details_changed",
            actor=actor,
            tenant=tenant,
            detail="changed " + ", ".join(changed),
        )
    return tenant


@transaction.atomic
def request_reverification(*, actor, tenant: Tenant) -> None:
    core_services.audit(action="tenant.reverify_requested", actor=actor, tenant=tenant)
    _enqueue_verification(tenant)

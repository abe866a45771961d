"""Entra ID endpoints: OpenID discovery, JWKS, instance discovery, token, authorize.

Error bodies, statuses and AADSTS codes follow reference sections 1.5/1.6 and the state
machine of 10.2. The checks run in the order Entra applies them: tenant, client,
service principal (consent), credential, scope/resource, licence, Conditional Access.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import html
import json
import random
import re
import secrets
import threading
import time
import uuid
import weakref
from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import jwt
from cryptography import x509
from werkzeug.wrappers import Request, Response

from emulator import tokens
from emulator.world import resource_for

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
DOMAIN_RE = re.compile(
    r"^(?=.{1,253}$)(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]{2,63}$"
)
MULTI_TENANT = ("common", "organizations", "consumers")
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DECORATION = ("openid", "profile", "offline_access", "email")

# code -> (error, HTTP status, message template)
AADSTS: dict[int, tuple[str, int, str]] = {
    700016: (
        "unauthorized_client",
        400,
        "Application with identifier '{client_id}' was not found in the directory "
        "'{tenant}'. This can happen if the application has not been installed by the "
        "administrator of the tenant or consented to by any user in the tenant. You "
        "may "
        "have sent your authentication request to the wrong tenant.",
    ),
    7000229: (
        "invalid_client",
        401,
        "The client application {client_id} is missing service principal in the tenant "
        "{tenant_id}. See instructions here: "
        "https://go.microsoft.com/fwlink/?linkid=2225119",
    ),
    7000215: (
        "invalid_client",
        401,
        "Invalid client secret provided. Ensure the secret being sent in the request "
        "is "
        "the client secret value, not the client secret ID, for a secret added to app "
        "'{client_id}'.",
    ),
    7000222: (
        "invalid_client",
        401,
        "The provided client secret keys for app '{client_id}' are expired. Visit the "
        "Azure portal to create new keys for your app: "
        "https://aka.ms/NewClientSecret, or "
        "consider using certificate credentials for added security: "
        "https://aka.ms/certCreds.",
    ),
    7000218: (
        "invalid_client",
        401,
        "The request body must contain the following parameter: 'client_assertion' or "
        "'client_secret'.",
    ),
    700027: (
        "invalid_client",
        401,
        "Client assertion failed signature validation. {reason}",
    ),
    700024: (
        "invalid_client",
        401,
        "Client assertion is not within its valid time range. Current time: {now}, "
        "assertion valid from {nbf}, expiry time of assertion {exp}. Review the "
        "documentation at https://learn.microsoft.com/entra/identity-platform/"
        "certificate-credentials .",
    ),
    500011: (
        "invalid_resource",
        400,
        "The resource principal named {resource} was not found in the tenant named "
        "{tenant}. This can happen if the application has not been installed by the "
        "administrator of the tenant or consented to by any user in the tenant. You "
        "might have sent your authentication request to the wrong tenant.",
    ),
    53003: (
        "invalid_grant",
        400,
        "Access has been blocked by Conditional Access policies. The access policy "
        "does "
        "not allow token issuance.",
    ),
    90002: (
        "invalid_request",
        400,
        "Tenant '{tenant}' not found. Check to make sure you have the correct tenant "
        "ID "
        "and are signing into the correct cloud. Check with your subscription "
        "administrator, this may happen if there are no active subscriptions for the "
        "tenant.",
    ),
    900023: (
        "invalid_request",
        400,
        "Specified tenant identifier '{tenant}' is neither a valid DNS name, nor a "
        "valid "
        "external domain.",
    ),
    70011: (
        "invalid_scope",
        400,
        "The provided value for the input parameter 'scope' is not valid. The scope "
        "{scope} is not valid.",
    ),
    700022: (
        "invalid_scope",
        400,
        "The provided value for the input parameter scope is not valid because it "
        "contains more than one resource. Scope {scope} is not valid.",
    ),
    900144: (
        "invalid_request",
        400,
        "The request body must contain the following parameter: '{parameter}'.",
    ),
    70003: (
        "unsupported_grant_type",
        400,
        "The app requested an unsupported grant type '{grant_type}'.",
    ),
    50059: (
        "invalid_request",
        400,
        "No tenant-identifying information found in either the request or implied by "
        "any provided credentials.",
    ),
    7000112: (
        "unauthorized_client",
        400,
        "Application '{client_id}' is disabled.",
    ),
    650052: (
        "invalid_grant",
        400,
        "The app is trying to access a service that your organization '{tenant_id}' "
        "lacks a service principal for.",
    ),
    70008: (
        "invalid_grant",
        400,
        "The provided authorization code or refresh token has expired due to "
        "inactivity. Send a new interactive authorization request for this user and "
        "resource.",
    ),
    54005: (
        "invalid_grant",
        400,
        "OAuth2 Authorization code was already redeemed, please retry with a new valid "
        "code or use an existing refresh token.",
    ),
    501481: (
        "invalid_grant",
        400,
        "The Code_Verifier does not match the code_challenge supplied in the "
        "authorization request.",
    ),
    50148: (
        "invalid_grant",
        400,
        "The code_verifier does not match the code_challenge supplied in the "
        "authorization request for PKCE.",
    ),
    50126: (
        "invalid_grant",
        400,
        "Error validating credentials due to invalid username or password.",
    ),
    65001: (
        "invalid_grant",
        400,
        "The user or administrator has not consented to use the application with ID "
        "'{client_id}'. Send an interactive authorization request for this user and "
        "resource.",
    ),
    90055: (
        "temporarily_unavailable",
        429,
        "TenantThrottlingError - There are too many incoming requests. This exception "
        "is thrown for blocked tenants.",
    ),
    90033: (
        "temporarily_unavailable",
        503,
        "A transient error has occurred. Please try again.",
    ),
    50011: (
        "invalid_request",
        400,
        "The redirect URI '{redirect_uri}' specified in the request does not match the "
        "redirect URIs configured for the application '{client_id}'. Make sure the "
        "redirect URI sent in the request matches one added to your application in the "
        "Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to learn "
        "more "
        "about how to fix this.",
    ),
    50020: (
        "invalid_request",
        400,
        "User account '{upn}' from identity provider 'https://sts.windows.net/"
        "{user_tenant}/' does not exist in tenant '{tenant}' and cannot access the "
        "application '{client_id}'({app_name}) in that tenant. The account needs to be "
        "added as an external user in the tenant first. Sign out and sign in again "
        "with a different Azure Active Directory user account.",
    ),
    65004: ("access_denied", 400, "User declined to consent to access the app."),
    90094: ("access_denied", 400, "The grant requires admin permission."),
    1003031: (
        "access_denied",
        400,
        "Misconfigured required resource access in client application registration. "
        "App ID: '{client_id}'.",
    ),
}


def describe(code: int, **details) -> tuple[str, int, str]:
    """(error, status, message) for an AADSTS code, details filled where known."""
    error, status, template = AADSTS.get(
        code, ("invalid_request", 400, "The request failed with AADSTS{code}.")
    )
    values = defaultdict(lambda: "", code=code, **details)
    return error, status, template.format_map(values)


@dataclass
class IdentityState:
    """Runtime state of the identity side, kept beside (not inside) the World."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    flows: dict[str, dict] = field(default_factory=dict)
    codes: dict[str, dict] = field(default_factory=dict)
    refresh_tokens: dict[str, dict] = field(default_factory=dict)
    token_fault: dict | None = None
    consent_fault: dict | None = None
    not_consented_code: int = 700016
    rng: random.Random = field(default_factory=random.Random)


_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def state(world) -> IdentityState:
    existing = _STATES.get(world)
    if existing is None:
        existing = _STATES.setdefault(world, IdentityState())
    return existing


def new_secret_token() -> str:
    return secrets.token_urlsafe(32)


def put_bounded(store: dict, key: str, value: dict, limit: int = 5000) -> None:
    store[key] = value
    while len(store) > limit:
        store.pop(next(iter(store)))


# -- shared helpers ----------------------------------------------------------------
def base_url(request: Request) -> str:
    return request.host_url.rstrip("/")


def timestamp(world) -> str:
    seconds = tokens.now_seconds(world)
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def correlation_id(request: Request) -> str:
    value = request.headers.get("client-request-id", "")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return str(uuid.uuid4())


def json_response(
    body: dict, status: int = 200, headers: dict | None = None
) -> Response:
    response = Response(
        json.dumps(body), status=status, content_type="application/json; charset=utf-8"
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def error_payload(world, request: Request, code: int, **details) -> tuple[dict, int]:
    error, status, message = describe(code, **details)
    trace_id = str(uuid.uuid4())
    corr = correlation_id(request)
    ts = timestamp(world)
    body = {
        "error": error,
        "error_description": (
            f"AADSTS{code}: {message}\r\nTrace ID: {trace_id}\r\n"
            f"Correlation ID: {corr}\r\nTimestamp: {ts}"
        ),
        "error_codes": [code],
        "timestamp": ts,
        "trace_id": trace_id,
        "correlation_id": corr,
        "error_uri": f"{base_url(request)}/error?code={code}",
    }
    return body, status


def oauth_error(world, request: Request, code: int, **details) -> Response:
    body, status = error_payload(world, request, code, **details)
    headers = {
        "Cache-Control": "no-store, no-cache",
        "Pragma": "no-cache",
        "x-ms-request-id": body["trace_id"],
        "client-request-id": body["correlation_id"],
    }
    if status in (429, 503):
        headers["Retry-After"] = str(details.get("retry_after") or 5)
    response = json_response(body, status, headers)
    response.aadsts = code  # for the request log
    return response


def resolve_tenant(world, segment: str):
    """(kind, tenant); kind: a multi-tenant alias, tenant, unknown or malformed."""
    lowered = segment.lower()
    if lowered in MULTI_TENANT:
        return lowered, None
    if GUID_RE.match(segment) or DOMAIN_RE.match(segment):
        tenant = world.tenant_by_name_or_id(segment)
        if tenant is None or getattr(tenant, "disabled", False):
            return "unknown", None
        return "tenant", tenant
    return "malformed", None


def tenant_problem(world, request: Request, segment: str, kind: str, discovery=False):
    """Error response for an unknown or malformed tenant segment, else None."""
    if kind not in ("unknown", "malformed"):
        return None
    code = 90002 if kind == "unknown" else 900023
    body, status = error_payload(world, request, code, tenant=segment)
    if discovery:
        body["error"] = "invalid_tenant"
    return json_response(body, status, {"Cache-Control": "no-store, no-cache"})


def page(title: str, body_html: str, status: int = 200) -> Response:
    """An HTML page in the style of the Microsoft sign-in screens (body pre-escaped)."""
    document = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>
body{{font-family:"Segoe UI",Arial,sans-serif;background:#f2f2f2;margin:0}}
main{{background:#fff;max-width:440px;margin:60px auto;padding:44px;
box-shadow:0 2px 6px rgba(0,0,0,.2)}}
h1{{font-size:24px;font-weight:600;margin:0 0 16px}}
label{{display:block;margin:12px 0 4px}}
input[type=text],input[type=email],input[type=password]{{width:100%;padding:6px;
box-sizing:border-box}}
button{{padding:6px 24px;margin:16px 8px 0 0}}
.error{{color:#e81123}} .brand{{color:#737373;font-size:13px}}
ul{{padding-left:20px}}
</style></head>
<body><main>
<p class="brand">Microsoft (emulated)</p>
{body_html}
</main></body></html>"""
    return Response(document, status=status, content_type="text/html; charset=utf-8")


def error_page(
    world, request: Request, code: int, status: int = 400, **details
) -> Response:
    _, _, message = describe(code, **details)
    trace_id = str(uuid.uuid4())
    body = (
        "<h1>Sorry, but we\u2019re having trouble signing you in.</h1>"
        f'<p id="error-code" class="error">AADSTS{code}: {html.escape(message)}</p>'
        f"<p>Request Id: {trace_id}<br>Correlation Id: {correlation_id(request)}"
        f"<br>Timestamp: {html.escape(timestamp(world))}</p>"
    )
    response = page("Sign in to your account", body, status)
    response.aadsts = code
    return response


def add_query(uri: str, params: list[tuple[str, str]]) -> str:
    """`uri` with `params` appended to its query string."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True) + params
    return urlunsplit(parts._replace(query=urlencode(query)))


def redirect(location: str) -> Response:
    response = Response("", status=302)
    response.headers["Location"] = location
    response.headers["Cache-Control"] = "no-store, no-cache"
    return response


# -- discovery ---------------------------------------------------------------------
def openid_configuration(world, request: Request, segment: str, v2: bool) -> Response:
    kind, tenant = resolve_tenant(world, segment)
    problem = tenant_problem(world, request, segment, kind, discovery=True)
    if problem:
        return problem
    base = base_url(request)
    path_tenant = tenant.id if tenant else kind
    issuer_tenant = tenant.id if tenant else "{tenantid}"
    region = {"us": "NA", "eu": "EU", "uk": "EU", "au": "OC"}.get(
        getattr(tenant, "region", "us"), "NA"
    )
    common = {
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": [
            "code",
            "id_token",
            "code id_token",
            "token id_token",
        ],
        "request_uri_parameter_supported": False,
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "tenant_region_scope": region,
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }
    if v2:
        doc = {
            "token_endpoint": f"{base}/{path_tenant}/oauth2/v2.0/token",
            "jwks_uri": f"{base}/{path_tenant}/discovery/v2.0/keys",
            "issuer": f"{base}/{issuer_tenant}/v2.0",
            "userinfo_endpoint": f"{base}/graph/oidc/userinfo",
            "authorization_endpoint": f"{base}/{path_tenant}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": (
                f"{base}/{path_tenant}/oauth2/v2.0/devicecode"
            ),
            "end_session_endpoint": f"{base}/{path_tenant}/oauth2/v2.0/logout",
            "kerberos_endpoint": f"{base}/{path_tenant}/kerberos",
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "acr",
                "nonce",
                "preferred_username",
                "name",
                "tid",
                "ver",
                "at_hash",
                "c_hash",
                "email",
            ],
            **common,
        }
    else:
        doc = {
            "token_endpoint": f"{base}/{path_tenant}/oauth2/token",
            "jwks_uri": f"{base}/common/discovery/keys",
            "issuer": f"https://sts.windows.net/{issuer_tenant}/",
            "userinfo_endpoint": f"{base}/{path_tenant}/openid/userinfo",
            "authorization_endpoint": f"{base}/{path_tenant}/oauth2/authorize",
            "device_authorization_endpoint": f"{base}/{path_tenant}/oauth2/devicecode",
            "end_session_endpoint": f"{base}/{path_tenant}/oauth2/logout",
            "check_session_iframe": f"{base}/{path_tenant}/oauth2/checksession",
            "microsoft_multi_refresh_token": True,
            "scopes_supported": ["openid"],
            "claims_supported": [
                "sub",
                "iss",
                "cloud_instance_name",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "acr",
                "amr",
                "nonce",
                "email",
                "given_name",
                "family_name",
                "nickname",
            ],
            **common,
        }
    return json_response(
        doc,
        headers={
            "Cache-Control": "max-age=86400, private",
            "Access-Control-Allow-Origin": "*",
        },
    )


def keys(world, request: Request, segment: str, v2: bool) -> Response:
    issuer = f"{base_url(request)}/{{tenantid}}/v2.0" if v2 else None
    return json_response(
        tokens.jwks(world, issuer),
        headers={
            "Cache-Control": "max-age=86400, private",
            "Access-Control-Allow-Origin": "*",
        },
    )


def instance_discovery(world, request: Request) -> Response:
    host = urlsplit(base_url(request)).netloc
    tenant = "common"
    endpoint = request.args.get("authorization_endpoint", "")
    if endpoint:
        path = urlsplit(endpoint).path.strip("/").split("/")
        tenant = path[0] if path and path[0] else "common"
    return json_response(
        {
            "tenant_discovery_endpoint": (
                f"{base_url(request)}/{tenant}/v2.0/.well-known/openid-configuration"
            ),
            "api-version": request.args.get("api-version", "1.1"),
            "metadata": [
                {
                    "preferred_network": host,
                    "preferred_cache": host,
                    "aliases": [host],
                }
            ],
        },
        headers={"Cache-Control": "max-age=86400, private"},
    )


# -- token endpoint ----------------------------------------------------------------
def _take_fault(world, tenant) -> dict | None:
    st = state(world)
    with st.lock:
        fault = st.token_fault
        if not fault:
            return None
        wanted = fault.get("tenant")
        if wanted and (
            tenant is None
            or wanted.lower() not in (tenant.id.lower(), tenant.domain.lower())
        ):
            return None
        remaining = fault.get("remaining")
        if remaining is not None:
            if remaining <= 0:
                st.token_fault = None
                return None
            fault["remaining"] = remaining - 1
            if fault["remaining"] <= 0:
                st.token_fault = None
            return fault
        rate = float(fault.get("rate", 1.0))
        return fault if st.rng.random() < rate else None


def _fault_response(world, request: Request, fault: dict) -> Response:
    status = fault.get("status")
    retry_after = fault.get("retry_after", 5)
    if status in (429, 503) and not fault.get("code"):
        code = 90055 if status == 429 else 90033
    else:
        code = int(fault["code"])
    response = oauth_error(world, request, code, retry_after=retry_after)
    if status:
        response.status_code = int(status)
    if response.status_code in (429, 503):
        response.headers["Retry-After"] = str(retry_after)
    return response


def _client_credentials(request: Request) -> tuple[str, str | None]:
    """(client_id, client_secret) from the form, falling back to HTTP Basic."""
    form = request.form
    client_id = form.get("client_id", "")
    secret = form.get("client_secret")
    auth = request.authorization
    if auth is not None and auth.type == "basic":
        client_id = client_id or (auth.username or "")
        if secret is None:
            secret = auth.password
    return client_id, secret


def _check_secret(world, request: Request, client_id: str, value: str):
    app = world.app
    now = tokens.now_seconds(world)
    for secret in app.secrets:
        if hmac.compare_digest(secret.value.encode(), value.encode()):
            expires_at = secret.expires_at
            if hasattr(expires_at, "timestamp"):
                expires_at = expires_at.timestamp()
            if expires_at is not None and expires_at <= now:
                return oauth_error(world, request, 7000222, client_id=client_id)
            return None
    return oauth_error(world, request, 7000215, client_id=client_id)


def _b64_variants(value: str) -> set[str]:
    stripped = value.rstrip("=")
    return {stripped, stripped.replace("+", "-").replace("/", "_")}


def _check_assertion(world, request: Request, client_id: str, assertion: str):
    """None when the client assertion is acceptable, else the error response."""

    def bad(reason: str) -> Response:
        return oauth_error(world, request, 700027, reason=reason)

    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        return bad("[Reason - The assertion is not a well-formed JWT.]")
    alg = header.get("alg")
    if alg not in ("RS256", "PS256"):
        return bad(f"[Reason - The algorithm '{alg}' is not supported.]")
    x5t = header.get("x5t")
    x5t256 = header.get("x5t#S256")
    if not (x5t or x5t256):
        return bad(
            "[Reason - The key was not found., Thumbprint of key used by client: '']"
        )
    match = None
    for cert in world.app.certificates:
        sha1 = tls_b64(bytes.fromhex(cert.sha1_thumbprint_hex))
        if (
            x5t
            and _b64_variants(x5t) & {sha1}
            or x5t256
            and _b64_variants(x5t256) & {cert.sha256_thumbprint_b64url.rstrip("=")}
        ):
            match = cert
        if match:
            break
    if match is None:
        used = x5t or x5t256
        return bad(
            "[Reason - The key was not found., Thumbprint of key used by client: "
            f"'{used}', Please visit the Microsoft Graph Explorer and run query "
            f"https://graph.microsoft.com/v1.0/applications/{client_id} and search for "
            "keyCredentials.]"
        )
    public_key = _cert_public_key(match.pem)
    token_url = f"{base_url(request)}{request.path}"
    try:
        claims = jwt.decode(
            assertion,
            public_key,
            algorithms=[alg],
            options={
                "verify_aud": False,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.PyJWTError:
        return bad("[Reason - The signature is invalid.]")
    audiences = claims.get("aud")
    audiences = [audiences] if isinstance(audiences, str) else list(audiences or [])
    if token_url not in audiences:
        return bad(f"[Reason - The audience '{claims.get('aud')}' is invalid.]")
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        return bad("[Reason - The issuer or subject does not match the client id.]")
    # The assertion is minted with the client's clock: judge it by real time.
    now = int(time.time())
    exp = claims.get("exp")
    nbf = claims.get("nbf")
    fmt = "%m/%d/%Y %H:%M:%S"

    def when(value) -> str:
        return dt.datetime.fromtimestamp(int(value), dt.UTC).strftime(fmt)

    if (
        not isinstance(exp, int | float)
        or exp <= now - 300
        or (isinstance(nbf, int | float) and nbf > now + 300)
    ):
        return oauth_error(
            world,
            request,
            700024,
            now=when(now),
            nbf=when(nbf) if isinstance(nbf, int | float) else "",
            exp=when(exp) if isinstance(exp, int | float) else "",
        )
    return None


def tls_b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


_CERT_KEYS: dict[str, object] = {}


def _cert_public_key(pem: str):
    key = _CERT_KEYS.get(pem)
    if key is None:
        key = x509.load_pem_x509_certificate(pem.encode()).public_key()
        _CERT_KEYS[pem] = key
    return key


def _authenticate_client(world, request: Request, client_id: str, secret: str | None):
    """(None, certificate_auth) when the client proved itself, else (error, False)."""
    form = request.form
    assertion = form.get("client_assertion")
    if assertion:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return oauth_error(
                world, request, 900144, parameter="client_assertion_type"
            ), False
        return _check_assertion(world, request, client_id, assertion), True
    if secret:
        return _check_secret(world, request, client_id, secret), False
    return oauth_error(world, request, 7000218), False


def token(world, request: Request, segment: str, v2: bool) -> Response:
    """`POST /{tenant}/oauth2/v2.0/token` and the v1 `POST /{tenant}/oauth2/token`."""
    kind, tenant = resolve_tenant(world, segment)
    problem = tenant_problem(world, request, segment, kind)
    if problem:
        return problem
    fault = _take_fault(world, tenant)
    if fault:
        return _fault_response(world, request, fault)
    form = request.form
    grant_type = form.get("grant_type", "")
    if not grant_type:
        return oauth_error(world, request, 900144, parameter="grant_type")
    client_id, secret = _client_credentials(request)
    if not client_id:
        return oauth_error(world, request, 900144, parameter="client_id")
    if grant_type == "client_credentials":
        return _client_credentials_grant(
            world, request, segment, tenant, client_id, secret, v2
        )
    if grant_type == "authorization_code":
        return _authorization_code_grant(world, request, tenant, client_id, secret, v2)
    if grant_type == "refresh_token":
        return _refresh_token_grant(world, request, tenant, client_id, secret, v2)
    return oauth_error(world, request, 70003, grant_type=grant_type)


def _client_credentials_grant(world, request, segment, tenant, client_id, secret, v2):
    form = request.form
    if tenant is None:
        return oauth_error(world, request, 50059)
    app = world.app
    st = state(world)
    if client_id.lower() != app.client_id.lower():
        return oauth_error(
            world, request, 700016, client_id=client_id, tenant=tenant.id
        )
    if not tenant.consented:
        code = st.not_consented_code
        return oauth_error(
            world,
            request,
            code,
            client_id=client_id,
            tenant=tenant.id,
            tenant_id=tenant.id,
        )
    error, certificate_auth = _authenticate_client(world, request, client_id, secret)
    if error is not None:
        return error
    if v2:
        scope = form.get("scope", "")
        if not scope.strip():
            return oauth_error(world, request, 900144, parameter="scope")
        items = scope.split()
        if any(not item.endswith("/.default") for item in items):
            return oauth_error(world, request, 70011, scope=scope)
        found = {resource_for(item) for item in items}
        if len(found) > 1:
            return oauth_error(world, request, 700022, scope=scope)
        requested = items[0][: -len("/.default")]
    else:
        requested = form.get("resource", "")
        if not requested:
            return oauth_error(world, request, 900144, parameter="resource")
    resource = resource_for(requested)
    if resource is None or resource.key not in tenant.licensed:
        return oauth_error(world, request, 500011, resource=requested, tenant=tenant.id)
    if tenant.ca_blocked:
        return oauth_error(world, request, 53003)
    audience = resource.audience
    if requested.rstrip("/").lower() == resource.app_id.lower():
        audience = resource.app_id
    access_token, claims = tokens.mint_app_token(
        world,
        tenant=tenant,
        resource=resource,
        audience=audience,
        client_id=app.client_id,
        app_display_name=app.display_name,
        certificate_auth=certificate_auth,
    )
    headers = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}
    if v2:
        body = {
            "token_type": "Bearer",
            "expires_in": tokens.EXPIRES_IN,
            "ext_expires_in": tokens.EXPIRES_IN,
            "access_token": access_token,
        }
    else:
        body = {
            "token_type": "Bearer",
            "expires_in": str(tokens.EXPIRES_IN),
            "ext_expires_in": str(tokens.EXPIRES_IN),
            "expires_on": str(claims["exp"]),
            "not_before": str(claims["nbf"]),
            "resource": requested,
            "access_token": access_token,
        }
    response = json_response(body, 200, headers)
    response.token_claims = claims
    return response


def _client_info(user, tenant) -> str:
    raw = json.dumps({"uid": user.oid, "utid": tenant.id}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _user_token_response(
    world, request, record: dict, scope: str, v2: bool
) -> Response:
    tenant = world.tenant_by_name_or_id(record["tenant_id"])
    user = next(u for u in world.staff if u.oid == record["user_oid"])
    minted = tokens.mint_user_tokens(
        world,
        tenant=tenant,
        user=user,
        client_id=world.app.client_id,
        scope=scope,
        nonce=record.get("nonce"),
        authority_base=base_url(request),
    )
    refresh = new_secret_token()
    st = state(world)
    with st.lock:
        put_bounded(st.refresh_tokens, refresh, {**record, "nonce": None})
    body = {
        "token_type": "Bearer",
        "scope": scope,
        "expires_in": tokens.EXPIRES_IN,
        "ext_expires_in": tokens.EXPIRES_IN,
        "access_token": minted["access_token"],
        "refresh_token": refresh,
        "id_token": minted["id_token"],
    }
    if request.form.get("client_info") == "1":
        body["client_info"] = _client_info(user, tenant)
    if not v2:
        body["expires_in"] = str(body["expires_in"])
        body["ext_expires_in"] = str(body["ext_expires_in"])
    response = json_response(body, 200, {"Cache-Control": "no-store, no-cache"})
    response.token_claims = minted["access_claims"]
    return response


def _check_user_client(world, request, client_id, secret):
    if client_id.lower() != world.app.client_id.lower():
        return oauth_error(
            world, request, 700016, client_id=client_id, tenant=world.home_tenant.id
        )
    error, _ = _authenticate_client(world, request, client_id, secret)
    return error


def _authorization_code_grant(world, request, tenant, client_id, secret, v2):
    error = _check_user_client(world, request, client_id, secret)
    if error is not None:
        return error
    form = request.form
    code = form.get("code", "")
    if not code:
        return oauth_error(world, request, 900144, parameter="code")
    st = state(world)
    with st.lock:
        record = st.codes.get(code)
        if record is None:
            return oauth_error(world, request, 70008)
        if record.get("redeemed"):
            return oauth_error(world, request, 54005)
        record["redeemed"] = True
    if record["expires_at"] < time.time():
        return oauth_error(world, request, 70008)
    if record.get("redirect_uri") != form.get(
        "redirect_uri", record.get("redirect_uri")
    ):
        return oauth_error(
            world,
            request,
            50011,
            redirect_uri=form.get("redirect_uri"),
            client_id=client_id,
        )
    challenge = record.get("code_challenge")
    if challenge:
        verifier = form.get("code_verifier", "")
        if record.get("code_challenge_method", "plain") == "S256":
            computed = tls_b64(hashlib.sha256(verifier.encode()).digest())
        else:
            computed = verifier
        if not verifier or not hmac.compare_digest(computed, challenge):
            return oauth_error(world, request, 501481)
    if record.get("kind") != "signin":
        return oauth_error(world, request, 65001, client_id=client_id)
    scope = form.get("scope") or record.get("scope", "openid profile")
    return _user_token_response(world, request, record, scope, v2)


def _refresh_token_grant(world, request, tenant, client_id, secret, v2):
    error = _check_user_client(world, request, client_id, secret)
    if error is not None:
        return error
    value = request.form.get("refresh_token", "")
    if not value:
        return oauth_error(world, request, 900144, parameter="refresh_token")
    st = state(world)
    with st.lock:
        record = st.refresh_tokens.pop(value, None)
    if record is None:
        return oauth_error(world, request, 70008)
    scope = request.form.get("scope") or record.get("scope", "openid profile")
    return _user_token_response(world, request, record, scope, v2)


# -- staff sign-in (authorization code + PKCE) --------------------------------------
def registered_redirect(world, uri: str | None) -> bool:
    return bool(uri) and uri in world.app.redirect_uris


def authorize(world, request: Request, segment: str, v2: bool) -> Response:
    """`GET /{tenant}/oauth2/v2.0/authorize`: the staff sign-in page."""
    kind, tenant = resolve_tenant(world, segment)
    if kind in ("unknown", "malformed"):
        return error_page(
            world, request, 90002 if kind == "unknown" else 900023, tenant=segment
        )
    args = request.args
    client_id = args.get("client_id", "")
    if client_id.lower() != world.app.client_id.lower():
        return error_page(world, request, 700016, client_id=client_id, tenant=segment)
    redirect_uri = args.get("redirect_uri", "")
    if not registered_redirect(world, redirect_uri):
        return error_page(
            world, request, 50011, redirect_uri=redirect_uri, client_id=client_id
        )
    if args.get("response_type", "code") != "code":
        return redirect(
            add_query(
                redirect_uri,
                [
                    ("error", "unsupported_response_type"),
                    (
                        "error_description",
                        "AADSTS70005: response_type is not supported.",
                    ),
                ],
            )
        )
    flow_id = new_secret_token()
    flow = {
        "kind": "signin",
        "segment": segment,
        "tenant_id": tenant.id if tenant else None,
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": args.get("scope", "openid profile"),
        "state": args.get("state"),
        "nonce": args.get("nonce"),
        "code_challenge": args.get("code_challenge"),
        "code_challenge_method": args.get("code_challenge_method", "plain"),
        "created": time.time(),
    }
    st = state(world)
    with st.lock:
        put_bounded(st.flows, flow_id, flow)
    return signin_page(world, segment, flow_id, args.get("login_hint", ""))


def signin_page(
    world,
    segment: str,
    flow_id: str,
    login_hint: str = "",
    error: str = "",
    heading: str = "Sign in",
) -> Response:
    error_html = (
        f'<p id="signin-error" class="error" role="alert">{html.escape(error)}</p>'
        if error
        else ""
    )
    body = f"""<h1>{html.escape(heading)}</h1>
<p>to continue to {html.escape(world.app.display_name)}</p>
{error_html}
<form method="post" action="/{html.escape(segment)}/login" id="signin-form">
<input type="hidden" name="flow" value="{html.escape(flow_id)}">
<label for="login">Email, phone, or Skype</label>
<input type="email" id="login" name="login" value="{html.escape(login_hint)}"
 autocomplete="username" required>
<label for="passwd">Password</label>
<input type="password" id="passwd" name="passwd" autocomplete="current-password"
 required>
<button type="submit" id="signin" name="action" value="signin">Sign in</button>
</form>"""
    return page("Sign in to your account", body)


def find_staff(world, upn: str, password: str):
    for user in world.staff:
        if user.upn.lower() == upn.lower() and hmac.compare_digest(
            user.password.encode(), password.encode()
        ):
            return user
    return None


def signin_post(world, request: Request, segment: str, flow_id: str, flow: dict):
    upn = request.form.get("login", "").strip()
    password = request.form.get("passwd", "")
    user = find_staff(world, upn, password)
    if user is None:
        _, _, message = describe(50126)
        return signin_page(
            world,
            segment,
            flow_id,
            upn,
            f"Your account or password is incorrect. (AADSTS50126: {message})",
        )
    home = world.home_tenant
    if flow["tenant_id"] and flow["tenant_id"] != home.id:
        return error_page(
            world,
            request,
            50020,
            upn=user.upn,
            user_tenant=home.id,
            tenant=flow["tenant_id"],
            client_id=world.app.client_id,
            app_name=world.app.display_name,
        )
    code = new_secret_token()
    record = {
        "kind": "signin",
        "tenant_id": home.id,
        "user_oid": user.oid,
        "client_id": flow["client_id"],
        "redirect_uri": flow["redirect_uri"],
        "scope": flow["scope"],
        "nonce": flow["nonce"],
        "code_challenge": flow["code_challenge"],
        "code_challenge_method": flow["code_challenge_method"],
        "expires_at": time.time() + 600,
    }
    st = state(world)
    with st.lock:
        put_bounded(st.codes, code, record)
        st.flows.pop(flow_id, None)
    params = [("code", code)]
    if flow.get("state") is not None:
        params.append(("state", flow["state"]))
    params.append(("session_state", str(uuid.uuid4())))
    return redirect(add_query(flow["redirect_uri"], params))

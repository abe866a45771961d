"""Admin consent pages (reference section 3).

Entry points: `GET /{tenant|organizations|common}/v2.0/adminconsent` ("v2"), the legacy
`GET /common/adminconsent` ("legacy") and the v1 link
`GET /common/oauth2/authorize?prompt=consent&response_type=code` ("v1"). The browser
signs in as an admin of an emulated tenant, sees what the app asks for, and Accepts or
Cancels; both end in a 302 to the registered redirect URI with Microsoft's parameters.
"""

from __future__ import annotations

import html
import time
import uuid

from werkzeug.wrappers import Request, Response

from emulator import identity
from emulator.world import RESOURCES

RESOURCE_NAMES = {
    "mde": "WindowsDefenderATP",
    "xdr": "Microsoft Threat Protection",
    "graph": "Microsoft Graph",
    "mcas": "Microsoft Cloud App Security",
}

ROLE_DESCRIPTIONS = {
    "Alert.Read.All": "Read all alerts",
    "Alert.ReadWrite.All": "Read and write all alerts",
    "Machine.Read.All": "Read all machine profiles",
    "Machine.Isolate": "Isolate machine",
    "Incident.Read.All": "Read all incidents",
    "Incident.ReadWrite.All": "Read and write all incidents",
    "AdvancedHunting.Read.All": "Run advanced queries",
    "SecurityAlert.Read.All": "Read all security alerts",
    "SecurityAlert.ReadWrite.All": "Read and write to all security alerts",
    "SecurityIncident.Read.All": "Read all security incidents",
    "SecurityIncident.ReadWrite.All": "Read and write to all security incidents",
    "Investigation.read": "Read investigations and alerts",
    "Investigation.manage": "Manage investigations and alerts",
    "Discovery.read": "View discovery alerts, reports, apps and related information",
    "Discovery.manage": "Manage discovery alerts, reports, apps and related "
    "information",
    "Settings.read": "View all settings",
    "Settings.manage": "Manage all settings",
}


def _description(world, request: Request, code: int, **details) -> str:
    _, _, message = identity.describe(code, **details)
    return (
        f"AADSTS{code}: {message}\r\nTrace ID: {uuid.uuid4()}\r\n"
        f"Correlation ID: {identity.correlation_id(request)}\r\n"
        f"Timestamp: {identity.timestamp(world)}"
    )


def start(world, request: Request, segment: str, mode: str) -> Response:
    """Validate the consent link and show the admin sign-in page."""
    kind, tenant = identity.resolve_tenant(world, segment)
    if kind in ("unknown", "malformed"):
        return identity.error_page(
            world, request, 90002 if kind == "unknown" else 900023, tenant=segment
        )
    args = request.args
    client_id = args.get("client_id", "")
    app = world.app
    if client_id.lower() != app.client_id.lower():
        return identity.error_page(
            world, request, 700016, client_id=client_id, tenant=segment
        )
    redirect_uri = args.get("redirect_uri")
    if redirect_uri is None:
        # Without redirect_uri Entra falls back to the app's registered reply URL.
        redirect_uri = app.redirect_uris[0] if app.redirect_uris else ""
    if not identity.registered_redirect(world, redirect_uri):
        return identity.error_page(
            world, request, 50011, redirect_uri=redirect_uri, client_id=client_id
        )
    state_value = args.get("state")
    if mode == "v1" and args.get("response_type", "code") != "code":
        return _error_redirect(
            world,
            request,
            mode,
            redirect_uri,
            state_value,
            900144,
            error="invalid_request",
            parameter="response_type",
        )
    scope = args.get("scope", "")
    if mode == "v2" and not scope.strip():
        return _error_redirect(
            world,
            request,
            mode,
            redirect_uri,
            state_value,
            900144,
            error="invalid_request",
            parameter="scope",
        )
    flow_id = identity.new_secret_token()
    flow = {
        "kind": "consent",
        "mode": mode,
        "segment": segment,
        "tenant_id": tenant.id if tenant else None,
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state_value,
        "created": time.time(),
    }
    st = identity.state(world)
    with st.lock:
        identity.put_bounded(st.flows, flow_id, flow)
    return identity.signin_page(
        world,
        segment,
        flow_id,
        args.get("login_hint", ""),
        heading="Sign in with an administrator account",
    )


def post(world, request: Request, segment: str, flow_id: str, flow: dict) -> Response:
    """Form posts of the consent flow: sign in, then accept or cancel."""
    action = request.form.get("action", "signin")
    if action == "signin":
        return _signin(world, request, segment, flow_id, flow)
    if not flow.get("consent_tenant_id"):
        return identity.signin_page(
            world, segment, flow_id, heading="Sign in with an administrator account"
        )
    st = identity.state(world)
    with st.lock:
        st.flows.pop(flow_id, None)
    if action == "accept":
        return _accept(world, request, flow)
    if action == "back":
        return _error_redirect(
            world,
            request,
            flow["mode"],
            flow["redirect_uri"],
            flow["state"],
            90094,
            error="access_denied",
        )
    return _error_redirect(
        world,
        request,
        flow["mode"],
        flow["redirect_uri"],
        flow["state"],
        65004,
        error="access_denied",
        subcode="cancel",
    )


def _find_admin(world, upn: str, password: str):
    for tenant in [world.home_tenant, *world.tenants.values()]:
        for admin_upn, admin_password in tenant.admins.items():
            if admin_upn.lower() == upn.lower() and admin_password == password:
                return tenant
    return None


def _take_fault(world, tenant) -> dict | None:
    st = identity.state(world)
    with st.lock:
        fault = st.consent_fault
        if not fault:
            return None
        wanted = fault.get("tenant")
        if wanted and wanted.lower() not in (tenant.id.lower(), tenant.domain.lower()):
            return None
        remaining = fault.get("remaining")
        if remaining is not None:
            fault["remaining"] = remaining - 1
            if fault["remaining"] <= 0:
                st.consent_fault = None
        return fault


def _signin(world, request, segment, flow_id, flow) -> Response:
    upn = request.form.get("login", "").strip()
    password = request.form.get("passwd", "")
    heading = "Sign in with an administrator account"
    tenant = _find_admin(world, upn, password)
    if tenant is None:
        staff = identity.find_staff(world, upn, password)
        if staff is None:
            return identity.signin_page(
                world,
                segment,
                flow_id,
                upn,
                "Your account or password is incorrect. If you don't remember your "
                "password, reset it now. (AADSTS50126)",
                heading=heading,
            )
        return _need_admin_page(world, request, segment, flow_id, flow)
    pinned = flow.get("tenant_id")
    if pinned and pinned != tenant.id:
        app = world.app
        return identity.error_page(
            world,
            request,
            50020,
            upn=upn,
            user_tenant=tenant.id,
            tenant=pinned,
            client_id=app.client_id,
            app_name=app.display_name,
        )
    fault = _take_fault(world, tenant)
    if fault:
        st = identity.state(world)
        with st.lock:
            st.flows.pop(flow_id, None)
        return _error_redirect(
            world,
            request,
            flow["mode"],
            flow["redirect_uri"],
            flow["state"],
            int(fault["code"]),
            error=fault.get("error", "access_denied"),
        )
    st = identity.state(world)
    with st.lock:
        flow["consent_tenant_id"] = tenant.id
        flow["admin_upn"] = upn
    return _consent_page(world, segment, flow_id, flow, tenant, upn)


def _need_admin_page(world, request, segment, flow_id, flow) -> Response:
    st = identity.state(world)
    with st.lock:
        flow["consent_tenant_id"] = world.home_tenant.id
    _, _, message = identity.describe(90094)
    body = f"""<h1>Need admin approval</h1>
<p id="error-code" class="error">AADSTS90094: {html.escape(message)}</p>
<p>{html.escape(world.app.display_name)} needs permission to access resources in your
organization that only an admin can grant.</p>
<form method="post" action="/{html.escape(segment)}/login">
<input type="hidden" name="flow" value="{html.escape(flow_id)}">
<button type="submit" id="back" name="action" value="back">Return to the application
without granting consent</button>
</form>"""
    return identity.page("Need admin approval", body, 200)


def _consent_page(world, segment, flow_id, flow, tenant, upn) -> Response:
    app = world.app
    items = []
    for key, roles in app.required_roles.items():
        resource = RESOURCES.get(key)
        name = RESOURCE_NAMES.get(key, key)
        role_items = "".join(
            f'<li data-role="{html.escape(role)}"><strong>{html.escape(role)}</strong>'
            f" \u2014 {html.escape(ROLE_DESCRIPTIONS.get(role, role))}</li>"
            for role in roles
        )
        audience = html.escape(resource.audience if resource else "")
        items.append(
            f'<li data-resource="{html.escape(key)}">{html.escape(name)} '
            f'<span class="brand">({audience})</span><ul>{role_items}</ul></li>'
        )
    body = f"""<p class="brand" id="signed-in-as">{html.escape(upn)}</p>
<h1>Permissions requested</h1>
<p>Review for your organization</p>
<p><strong id="app-name">{html.escape(app.display_name)}</strong><br>
<span class="brand">unverified</span></p>
<p>This application is not published by Microsoft or your organization
(<span id="tenant-name">{html.escape(tenant.name)}</span>).</p>
<p>This app would like to:</p>
<ul id="permissions">{"".join(items)}</ul>
<p>If you accept, this app will get access to the specified resources for all users in
your organization. No one else will be prompted to review these permissions.</p>
<form method="post" action="/{html.escape(segment)}/login" id="consent-form">
<input type="hidden" name="flow" value="{html.escape(flow_id)}">
<button type="submit" id="cancel" name="action" value="cancel">Cancel</button>
<button type="submit" id="accept" name="action" value="accept">Accept</button>
</form>"""
    return identity.page("Permissions requested", body)


def grant(world, tenant, roles: dict | None = None) -> None:
    """Mark `tenant` consented with the app's required roles (or `roles`)."""
    wanted = roles if roles is not None else world.app.required_roles
    with world.lock:
        tenant.consented = True
        tenant.granted_roles = {k: set(v) for k, v in wanted.items()}


def _accept(world, request: Request, flow: dict) -> Response:
    tenant = world.tenant_by_name_or_id(flow["consent_tenant_id"])
    grant(world, tenant)
    mode = flow["mode"]
    if mode == "v1":
        params = [("code", identity.new_secret_token())]
        if flow["state"] is not None:
            params.append(("state", flow["state"]))
        params.append(("session_state", str(uuid.uuid4())))
    else:
        params = [("admin_consent", "True"), ("tenant", tenant.id)]
        if mode == "v2":
            params.append(("scope", flow["scope"]))
        if flow["state"] is not None:
            params.append(("state", flow["state"]))
    return identity.redirect(identity.add_query(flow["redirect_uri"], params))


def _error_redirect(
    world,
    request,
    mode,
    redirect_uri,
    state_value,
    code,
    *,
    error,
    subcode=None,
    **details,
) -> Response:
    params = []
    if mode in ("v2", "legacy"):
        params.append(("admin_consent", "True"))
    params.append(("error", error))
    if subcode:
        params.append(("error_subcode", subcode))
    params.append(
        (
            "error_description",
            _description(
                world, request, code, client_id=world.app.client_id, **details
            ),
        )
    )
    if state_value is not None:
        params.append(("state", state_value))
    response = identity.redirect(identity.add_query(redirect_uri, params))
    response.aadsts = code
    return response

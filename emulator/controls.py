"""Scenario controls under `/_emulator/...` (JSON, `Authorization: Bearer <token>`).

Identity controls live here; the APIs side's controls (fault profiles, alerts, ground
truth, stats) are thin calls to the World functions named in CONTRACT.md / world.py.

| method + path | body / query | effect |
|---|---|---|
| GET  state | | summary of app, tenants, faults |
| POST tenants | name?, region?, consented? | add a customer tenant |
| POST tenants/{t}/consent | roles? {key: [role]} | grant consent |
| POST tenants/{t}/revoke | | remove consent (service principal deleted) |
| POST tenants/{t}/roles/remove | resource, role | drop one granted role |
| PATCH tenants/{t} | licensed [keys], ca_blocked, disabled, region | tenant flags |
| POST app/secret/expire | | every secret expires now |
| POST app/secret/rotate | | new secret (returned), old ones dropped |
| POST app/redirect-uris | uri | register another redirect URI |
| POST faults/token | code or status, count?, rate?, retry_after?, tenant? | |
| DELETE faults/token | | clear |
| POST faults/consent | code, count?, tenant? | consent page faults (1003031, 90094) |
| DELETE faults/consent | | clear |
| POST settings | not_consented_code (700016 or 7000229) | |
| POST clock/advance | seconds | move the World clock |
| POST clock/freeze | frozen (default true), at? | World.freeze_clock |
| GET requests | limit? | request log (no credentials in it) |
| DELETE requests | | clear the log |
| POST faults/api | tenant?, profile | World.set_fault_profile |
| POST alerts | tenant, source, fields? | World.add_alert |
| POST alerts/update | n, tenant? | World.update_random_alerts |
| GET ground-truth | tenant, source | World.ground_truth |
| GET / DELETE stats | | World.stats / World.reset_stats |
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import secrets
import uuid

from werkzeug.wrappers import Request, Response

from emulator import consent, identity, tokens
from emulator.world import RESOURCES, Secret, Tenant


def _json(body, status: int = 200) -> Response:
    return identity.json_response(body, status)


def _problem(status: int, message: str) -> Response:
    return _json({"error": message}, status)


def _body(request: Request) -> dict:
    if not request.data:
        return {}
    try:
        data = json.loads(request.data)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _authorized(world, request: Request) -> bool:
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer "):
        return False
    return hmac.compare_digest(
        header[7:].strip().encode(), world.control_token.encode()
    )


def tenant_view(tenant) -> dict:
    return {
        "id": tenant.id,
        "name": tenant.name,
        "domain": tenant.domain,
        "region": tenant.region,
        "mcas_portal_name": tenant.mcas_portal_name,
        "mcas_url": getattr(tenant, "mcas_url", ""),
        "admins": [{"upn": u, "password": p} for u, p in tenant.admins.items()],
        "consented": tenant.consented,
        "granted_roles": {k: sorted(v) for k, v in tenant.granted_roles.items()},
        "licensed": sorted(tenant.licensed),
        "ca_blocked": tenant.ca_blocked,
        "disabled": tenant.disabled,
        "sp_object_id": tenant.sp_object_id,
    }


def summary(world) -> dict:
    st = identity.state(world)
    app = world.app
    return {
        "now": tokens.now_seconds(world),
        "clock_offset": world.clock_offset,
        "app": {
            "client_id": app.client_id,
            "display_name": app.display_name,
            "secrets": [
                {"secret_id": s.secret_id, "expires_at": s.expires_at}
                for s in app.secrets
            ],
            "certificates": [c.sha1_thumbprint_hex for c in app.certificates],
            "redirect_uris": list(app.redirect_uris),
            "required_roles": app.required_roles,
        },
        "home_tenant": tenant_view(world.home_tenant),
        "tenants": [tenant_view(t) for t in world.tenants.values()],
        "token_fault": st.token_fault,
        "consent_fault": st.consent_fault,
        "not_consented_code": st.not_consented_code,
        "requests_logged": len(world.request_log),
    }


def _add_tenant(world, body: dict) -> Tenant:
    add = getattr(world, "add_tenant", None)
    if callable(add):
        tenant = add(name=body.get("name"), region=body.get("region"))
    else:
        with world.lock:
            index = len(world.tenants) + 1
            tid = str(uuid.UUID(int=secrets.randbits(128), version=4))
            slug = f"customer-{index}-{tid[:4]}"
            tenant = Tenant(
                id=tid,
                name=body.get("name") or f"Customer {index}",
                domain=f"{slug}.example",
                region=body.get("region") or "us",
                mcas_portal_name=slug.replace("-", ""),
                admins={f"admin@{slug}.example": secrets.token_urlsafe(12)},
                sp_object_id=str(uuid.uuid4()),
            )
            tenant.mcas_url = f"{world.base_url}/mcas/{tenant.mcas_portal_name}"
            world.tenants[tid] = tenant
    if body.get("consented"):
        consent.grant(world, tenant)
    return tenant


def _world_call(world, name: str, *args):
    function = getattr(world, name, None)
    if not callable(function):
        return _problem(501, f"World.{name} is not available yet.")
    try:
        return _json({"result": function(*args)})
    except (ValueError, KeyError, TypeError) as exc:
        return _problem(400, str(exc))


def handle(world, request: Request, parts: list[str]) -> Response:
    if not _authorized(world, request):
        return _problem(401, "control token required")
    parts = [p for p in parts if p]
    method = request.method
    body = _body(request)
    route = "/".join(parts)

    if route == "state" and method == "GET":
        return _json(summary(world))
    if route == "tenants" and method == "GET":
        return _json([tenant_view(t) for t in world.tenants.values()])
    if route == "tenants" and method == "POST":
        return _json(tenant_view(_add_tenant(world, body)), 201)
    if len(parts) >= 2 and parts[0] == "tenants":
        tenant = world.tenant_by_name_or_id(parts[1])
        if tenant is None:
            return _problem(404, "unknown tenant")
        return _tenant_route(world, request, tenant, parts[2:], body)
    if route == "app/secret/expire" and method == "POST":
        past = tokens.now_seconds(world) - 1
        with world.lock:
            for secret in world.app.secrets:
                if isinstance(secret.expires_at, dt.datetime):
                    secret.expires_at = dt.datetime.fromtimestamp(past, dt.UTC)
                else:
                    secret.expires_at = past
        return _json(summary(world)["app"])
    if route == "app/secret/rotate" and method == "POST":
        value = secrets.token_urlsafe(30)
        with world.lock:
            world.app.secrets = [
                Secret(
                    value=value,
                    secret_id=str(uuid.uuid4()),
                    expires_at=tokens.now_seconds(world) + 365 * 86400,
                )
            ]
        return _json({"client_secret": value, **summary(world)["app"]})
    if route == "app/redirect-uris" and method == "POST":
        uri = body.get("uri", "")
        with world.lock:
            if uri and uri not in world.app.redirect_uris:
                world.app.redirect_uris.append(uri)
        return _json({"redirect_uris": world.app.redirect_uris})
    if route in ("faults/token", "faults/consent"):
        return _fault_route(world, route, method, body)
    if route == "settings" and method == "POST":
        st = identity.state(world)
        code = int(body.get("not_consented_code", st.not_consented_code))
        if code not in (700016, 7000229):
            return _problem(400, "not_consented_code must be 700016 or 7000229")
        st.not_consented_code = code
        return _json({"not_consented_code": code})
    if route == "clock/advance" and method == "POST":
        world.advance(float(body.get("seconds", 0)))
        return _json({"now": tokens.now_seconds(world), "offset": world.clock_offset})
    if route == "clock/freeze" and method == "POST":
        return _world_call(
            world, "freeze_clock", bool(body.get("frozen", True)), body.get("at")
        )
    if route == "requests" and method == "GET":
        limit = request.args.get("limit", type=int) or len(world.request_log)
        entries = list(world.request_log)[-limit:]
        return _json({"requests": entries})
    if route == "requests" and method == "DELETE":
        world.request_log.clear()
        return _json({"requests": []})
    # APIs side (world.py)
    if route == "faults/api" and method in ("POST", "PUT"):
        return _world_call(
            world, "set_fault_profile", body.get("tenant"), body.get("profile", {})
        )
    if route == "faults/api" and method == "DELETE":
        return _world_call(world, "set_fault_profile", body.get("tenant"), {})
    if route == "alerts" and method == "POST":
        return _world_call(
            world,
            "add_alert",
            body.get("tenant"),
            body.get("source"),
            body.get("fields", {}),
        )
    if route == "alerts/update" and method == "POST":
        return _world_call(
            world, "update_random_alerts", int(body.get("n", 1)), body.get("tenant")
        )
    if route == "ground-truth" and method == "GET":
        return _world_call(
            world,
            "ground_truth",
            request.args.get("tenant"),
            request.args.get("source"),
        )
    if route == "render-ahead" and method == "POST":
        return _world_call(world, "render_ahead", body.get("max_mb", 1024))
    if route == "stats" and method == "GET":
        return _world_call(world, "stats")
    if route == "stats" and method == "DELETE":
        return _world_call(world, "reset_stats")
    return _problem(404, "unknown control")


def _tenant_route(world, request, tenant, rest, body) -> Response:
    method = request.method
    route = "/".join(rest)
    if route == "" and method == "GET":
        return _json(tenant_view(tenant))
    if route == "" and method == "PATCH":
        with world.lock:
            if "licensed" in body:
                unknown = set(body["licensed"]) - set(RESOURCES)
                if unknown:
                    return _problem(400, f"unknown resources {sorted(unknown)}")
                tenant.licensed = set(body["licensed"])
            for flag in ("ca_blocked", "disabled"):
                if flag in body:
                    setattr(tenant, flag, bool(body[flag]))
            if "region" in body:
                tenant.region = str(body["region"])
        return _json(tenant_view(tenant))
    if route == "consent" and method == "POST":
        consent.grant(world, tenant, body.get("roles"))
        return _json(tenant_view(tenant))
    if route in ("revoke", "consent") and method in ("POST", "DELETE"):
        with world.lock:
            tenant.consented = False
            tenant.granted_roles = {}
        return _json(tenant_view(tenant))
    if route == "roles/remove" and method == "POST":
        with world.lock:
            roles = tenant.granted_roles.get(body.get("resource", ""), set())
            roles.discard(body.get("role", ""))
        return _json(tenant_view(tenant))
    return _problem(404, "unknown control")


def _fault_route(world, route, method, body) -> Response:
    st = identity.state(world)
    attribute = "token_fault" if route == "faults/token" else "consent_fault"
    if method == "DELETE":
        with st.lock:
            setattr(st, attribute, None)
        return _json({attribute: None})
    if method not in ("POST", "PUT"):
        return _problem(405, "use POST or DELETE")
    fault = {}
    if body.get("code") is not None:
        code = int(body["code"])
        if attribute == "token_fault" and code not in identity.AADSTS:
            return _problem(400, f"unknown AADSTS code {code}")
        fault["code"] = code
    if body.get("status") is not None:
        fault["status"] = int(body["status"])
    if not fault:
        return _problem(400, "give code (AADSTS) or status (429/503)")
    if body.get("count") is not None:
        fault["remaining"] = int(body["count"])
    elif body.get("rate") is not None:
        fault["rate"] = float(body["rate"])
    else:
        fault["remaining"] = 1
    fault["retry_after"] = int(body.get("retry_after", 5))
    if body.get("tenant"):
        fault["tenant"] = str(body["tenant"])
    if body.get("error"):
        fault["error"] = str(body["error"])
    with st.lock:
        setattr(st, attribute, fault)
    return _json({attribute: fault})

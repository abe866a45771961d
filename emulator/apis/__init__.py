"""The emulated Defender (MDE + XDR), Graph security and Cloud Apps APIs.

``dispatch(world, request)`` serves every path under ``/defender/`` (regional aliases
``/defender/{us,eu,uk,au,swa,ina,aea}/api/...``), ``/graph/`` and ``/mcas/``. The
aliases stand for the geo hosts ``{geo}.api.security.microsoft.com`` that reference
§6.1 documents for Defender for Endpoint (and its copy of advanced hunting, §7.3);
the XDR incidents API documents none (§7), so a geo alias does not serve it. Each call:
route -> bearer token (``emulator.tokens.decode_access_token``) -> injected faults ->
401/403 checks (audience, tenant consented, role, licence) -> quota (429) -> handler.
The verified claims ride on ``response.token_claims`` for the app's request log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Request, Response

from emulator import faults as faults_mod
from emulator.apis import graph, mcas, mde, xdr
from emulator.apis.common import ApiError, Call
from emulator.odata import ODataError
from emulator.world import resource_for

REGIONS = {"us", "eu", "uk", "au", "swa", "ina", "aea"}
LICENCE_NAMES = {
    "mde": "Microsoft Defender for Endpoint",
    "xdr": "Microsoft Defender XDR",
    "graph": "the Microsoft Graph security API (Microsoft Defender XDR)",
    "mcas": "Microsoft Defender for Cloud Apps",
}


@dataclass
class Route:
    """What a path resolved to."""

    api: str  # quota/statistics key
    handler: Callable[..., Response]
    roles: frozenset[str]  # any one of them is enough
    licence: str  # resource key the tenant must be licensed for
    kwargs: dict[str, Any] = field(default_factory=dict)


#: What a Defender geo host serves besides MDE's paths (reference §7.3: the MDE copy
#: of advanced hunting lists the geo hosts).
GEO_XDR_PATHS = (["api", "advancedhunting", "run"],)


def _area(parts: list[str]) -> tuple[str, str, list[str]] | None:
    """(style, audience group, rest of the path) for the first path segment; the
    group is ``defender-geo`` on a regional alias."""
    if not parts:
        return None
    if parts[0] == "defender":
        rest = parts[1:]
        if rest and rest[0].lower() in REGIONS:
            return "mde", "defender-geo", rest[1:]
        return "mde", "defender", rest
    if parts[0] == "graph":
        return "graph", "graph", parts[1:]
    if parts[0] == "mcas":
        return "mcas", "mcas", parts[1:]
    return None


AUDIENCES = {"defender": {"mde", "xdr"}, "graph": {"graph"}, "mcas": {"mcas"}}


def dispatch(world: Any, request: Request) -> Response:
    """Serve one API request (see the module docstring)."""
    parts = [p for p in request.path.split("/") if p]
    area = _area(parts)
    if area is None:
        return Response("Not found", status=404)
    style, group, rest = area
    call = Call(world, request, style)
    if group == "defender":
        route = mde.resolve(rest, request.method) or xdr.resolve(rest, request.method)
    elif group == "defender-geo":
        route = mde.resolve(rest, request.method)
        if route is None and rest in GEO_XDR_PATHS:
            route = xdr.resolve(rest, request.method)
        group = "defender"
    elif group == "graph":
        route = graph.resolve(rest, request.method)
    else:
        route = mcas.resolve(rest, request.method)
    if route is None:
        return call.error(404, f"Resource not found for the segment '{request.path}'.")
    if route == "method":
        return call.error(405, "The requested resource does not support this method.")
    call.api = route.api
    response = _serve(world, call, route, group)
    response.token_claims = call.claims
    world.count(call.tenant.id if call.tenant else None, call.api, "requests")
    world.count(
        call.tenant.id if call.tenant else None,
        call.api,
        f"status_{response.status_code}",
    )
    return response


def _bearer(request: Request) -> str | None:
    value = request.headers.get("Authorization", "")
    if value[:7].lower() == "bearer ":
        return value[7:].strip() or None
    return None


def _decode(world: Any, token: str | None) -> dict | None:
    if not token:
        return None
    from emulator import tokens  # identity side; imported late on purpose

    return tokens.decode_access_token(world, token)


def _serve(world: Any, call: Call, route: Route, group: str) -> Response:
    token = _bearer(call.request)
    claims = _decode(world, token)
    call.claims = claims
    tenant = world.tenants.get(claims.get("tid")) if claims else None
    call.tenant = tenant

    kind, profile = world.faults.pick(tenant.id if tenant else None, route.api)
    if profile is not None and profile.latency_ms:
        time.sleep(profile.latency_ms / 1000.0)
    if kind is not None and kind not in faults_mod.BODY_KINDS:
        return _inject(world, call, kind, profile)

    denied = _authorize(call, route, group, token, claims, tenant)
    if denied is not None:
        return denied

    with world.lock:
        wait = world.quotas.check(
            route.api, tenant.id, claims.get("appid") or "", world.quota_now()
        )
    if wait is not None:
        world.count(tenant.id, route.api, "throttled_provoked")
        return _throttled(call, wait)

    try:
        with world.lock:
            response = route.handler(call, **route.kwargs)
    except ODataError as exc:
        response = call.error(
            400, str(exc), "ODataError" if call.style == "mde" else None
        )
    except ApiError as exc:
        if exc.body is not None:
            response = call.json(exc.body, exc.status, exc.headers)
        else:
            response = call.error(exc.status, exc.message, exc.code, exc.headers)
    if kind is not None:
        world.count(tenant.id, route.api, "faults_injected")
        response = _mangle(kind, response)
    return response


def _authorize(
    call: Call, route: Route, group: str, token, claims, tenant
) -> Response | None:
    if token is None:
        msg = (
            "Access token is empty."
            if call.style == "graph"
            else "Authorization header is missing or is not a Bearer token."
        )
        if call.style == "mcas":
            msg = "Authentication credentials were not provided."
        return call.error(401, msg, headers=_www_auth())
    if claims is None:
        msg = "Access token validation failure: the token is invalid or has expired."
        if call.style == "mcas":
            msg = "Invalid token."
        return call.error(401, msg, headers=_www_auth())
    resource = resource_for(str(claims.get("aud", "")))
    if resource is None or resource.key not in AUDIENCES[group]:
        return call.error(
            401,
            "Access token validation failure. Invalid audience.",
            headers=_www_auth(),
        )
    if tenant is None or tenant.disabled or not tenant.consented:
        return call.error(
            401,
            f"The tenant '{claims.get('tid')}' is unknown or has not consented to "
            "this application.",
            headers=_www_auth(),
        )
    if group == "mcas" and route.kwargs.get("portal") != tenant.mcas_portal_name:
        return call.error(401, "Invalid token for this portal.")
    roles = set(claims.get("roles") or ())
    if not roles & route.roles:
        needed = " or ".join(sorted(route.roles))
        if call.style == "mcas":
            return call.error(403, "You do not have permission to perform this action.")
        code = "Forbidden"
        return call.error(
            403,
            f"The application does not have any of the required application "
            f"permissions ({needed}) to access the resource.",
            code,
        )
    if route.licence not in tenant.licensed:
        return call.error(
            403,
            f"Tenant '{tenant.id}' is not licensed for "
            f"{LICENCE_NAMES.get(route.licence, route.licence)}.",
            "DisabledFeature" if call.style == "mde" else "Forbidden",
        )
    return None


def _www_auth() -> dict[str, str]:
    return {"WWW-Authenticate": 'Bearer error="invalid_token"'}


def _throttled(call: Call, wait: int) -> Response:
    if call.style == "mcas":
        message = f"Request was throttled. Expected available in {wait} seconds."
    elif call.style == "graph":
        message = "Please retry again later."
    else:
        message = (
            f"API calls quota exceeded! Maximum admitted calls are reached. "
            f"Retry in {wait} seconds."
        )
    return call.error(429, message, "TooManyRequests", {"Retry-After": str(wait)})


def _inject(world: Any, call: Call, kind: str, profile: Any) -> Response:
    tid = call.tenant.id if call.tenant else None
    world.count(tid, call.api, "faults_injected")
    if kind == "timeout":
        time.sleep(profile.timeout_seconds)
        return call.error(504, "The operation timed out.")
    status = int(kind)
    headers = {}
    if status in (429, 503):
        headers["Retry-After"] = str(profile.retry_after)
    if status == 429:
        world.count(tid, call.api, "throttled_injected")
        return _throttled(call, profile.retry_after)
    return call.error(status, f"Injected fault: HTTP {status}.", headers=headers)


def _mangle(kind: str, response: Response) -> Response:
    """Break a good response's body: reset mid-body, truncate, or malform."""
    data = response.get_data()
    half = data[: max(1, len(data) // 2)]
    if kind == "malformed":
        response.set_data(half + b"\x00<html>")
        return response
    if kind == "truncated":
        out = Response(half, status=response.status_code)
        out.headers["Content-Type"] = response.headers.get("Content-Type", "")
        out.headers["Content-Length"] = str(len(data))
        out.headers["Connection"] = "close"
        out.automatically_set_content_length = False
        return out

    def body():
        yield half
        raise ConnectionResetError("emulator: connection reset by fault injection")

    out = Response(body(), status=response.status_code)
    out.headers["Content-Type"] = response.headers.get("Content-Type", "")
    out.headers["Content-Length"] = str(len(data))
    out.headers["Connection"] = "close"
    return out

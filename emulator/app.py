"""The emulator's WSGI application: routing, request log, and world assembly.

Paths follow CONTRACT.md: `/defender/`, `/graph/`, `/mcas/` go to the APIs side
(`emulator.apis.dispatch`), `/_emulator/` to the controls, everything else is Entra ID
with the tenant as first path segment.
"""

from __future__ import annotations

import html
import importlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from werkzeug.wrappers import Request, Response

from emulator import consent, controls, identity, persistence, tls, tokens
from emulator.world import Certificate, World

API_PREFIXES = ("defender", "graph", "mcas")
RESERVED = (*API_PREFIXES, "_emulator", "static")

DEFAULT_REDIRECT_URIS = (
    "http://127.0.0.1:8000/consent/callback",
    "http://localhost:8000/consent/callback",
    "https://127.0.0.1:8000/consent/callback",
)

# The permissions the partner app asks for (its requiredResourceAccess).
REQUIRED_ROLES = {
    "mde": ["Alert.Read.All", "Alert.ReadWrite.All"],
    "xdr": ["Incident.Read.All", "Incident.ReadWrite.All"],
    "graph": [
        "SecurityAlert.Read.All",
        "SecurityAlert.ReadWrite.All",
        "SecurityIncident.Read.All",
    ],
    "mcas": ["Investigation.read"],
}

# Query parameters that carry credentials; the request log keeps only their names.
SENSITIVE = {
    "code",
    "client_secret",
    "client_assertion",
    "access_token",
    "id_token",
    "refresh_token",
    "password",
    "passwd",
    "code_verifier",
    "session_state",
}


@dataclass
class StateFiles:
    """Files the emulator writes to its state folder."""

    state_dir: Path
    tls: tls.TlsFiles
    app_cert_path: Path
    app_key_path: Path
    extra: dict = field(default_factory=dict)


def build_world(
    state_dir: str | Path,
    *,
    seed: int = 0,
    tenants: int = 3,
    alerts_per_minute: float = 1.0,
    redirect_uris: tuple[str, ...] | list[str] = (),
    base_url: str = "https://127.0.0.1:8443",
    consented: bool = False,
    saved: dict | None = None,
    **options,
) -> tuple[World, StateFiles]:
    """A deterministic default world plus its keys and certificates in `state_dir`.

    With `saved` (from `persistence.read`), the saved world instead: seed, tenants,
    consent and streams come from it; `redirect_uris` are added to its own."""
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    world = World.create(
        seed=saved["seed"] if saved else seed,
        tenants=0 if saved else tenants,
        alerts_per_minute=alerts_per_minute,
        base_url=base_url,
        **options,
    )
    if saved:
        persistence.restore(world, saved)
    else:
        world.app.required_roles = {k: list(v) for k, v in REQUIRED_ROLES.items()}
        for tenant in world.tenants.values():
            tenant.consented = consented
            tenant.granted_roles = (
                {k: set(v) for k, v in REQUIRED_ROLES.items()} if consented else {}
            )
    app = world.app
    app.redirect_uris = list(
        dict.fromkeys([*DEFAULT_REDIRECT_URIS, *app.redirect_uris, *redirect_uris])
    )
    tokens.register(world, tokens.load_signing_key(state))
    files = StateFiles(
        state_dir=state,
        tls=tls.ensure_server_tls(state),
        app_cert_path=state / "app-cert.pem",
        app_key_path=state / "app-key.pem",
    )
    _, cert = tls.ensure_rsa_certificate(
        files.app_key_path, files.app_cert_path, app.display_name
    )
    sha1_hex, _, sha256_b64 = tls.thumbprints(cert)
    app.certificates = [
        Certificate(
            pem=files.app_cert_path.read_text(),
            sha1_thumbprint_hex=sha1_hex,
            sha256_thumbprint_b64url=sha256_b64,
        )
    ]
    return world, files


def describe_world(world: World, files: StateFiles, base_url: str) -> dict:
    """What `emulator.json` and the start-up banner tell the portal and the tests."""
    app = world.app
    cert = app.certificates[0] if app.certificates else None
    return {
        "base_url": base_url,
        "ca_path": str(files.tls.ca_path.resolve()),
        "client_id": app.client_id,
        "client_secret": app.secrets[0].value if app.secrets else None,
        "cert_path": str(files.app_cert_path.resolve()),
        "key_path": str(files.app_key_path.resolve()),
        "cert_thumbprint": cert.sha1_thumbprint_hex if cert else None,
        "server_cert_path": str(files.tls.cert_path.resolve()),
        "server_key_path": str(files.tls.key_path.resolve()),
        "control_token": world.control_token,
        "redirect_uris": list(app.redirect_uris),
        "home_tenant": _tenant_summary(world.home_tenant),
        "staff": [
            {"upn": u.upn, "password": u.password, "display_name": u.display_name}
            for u in world.staff
        ],
        "tenants": [_tenant_summary(t) for t in world.tenants.values()],
    }


def _tenant_summary(tenant) -> dict:
    return {
        "id": tenant.id,
        "name": tenant.name,
        "domain": tenant.domain,
        "region": tenant.region,
        "mcas_portal_name": tenant.mcas_portal_name,
        "admins": [{"upn": u, "password": p} for u, p in tenant.admins.items()],
        "consented": tenant.consented,
    }


def write_description(files: StateFiles, description: dict) -> Path:
    path = files.state_dir / "emulator.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(description, indent=2))
    tmp.chmod(0o600)
    tmp.replace(path)
    return path


_IMPORT_ERRORS: set[str] = set()


def _api_dispatch():
    """`emulator.apis.dispatch`, or None while the APIs side is missing or broken."""
    try:
        module = importlib.import_module("emulator.apis")
    except Exception as exc:  # noqa: BLE001 - a broken APIs module must not crash us
        message = f"emulator.apis could not be imported: {exc!r}"
        if message not in _IMPORT_ERRORS:
            _IMPORT_ERRORS.add(message)
            print(message, file=sys.stderr, flush=True)
        return None
    return getattr(module, "dispatch", None)


def _not_implemented() -> Response:
    return identity.json_response(
        {"error": {"code": "NotImplemented", "message": "API side not available yet."}},
        501,
    )


def _not_found() -> Response:
    return identity.json_response(
        {"error": {"code": "NotFound", "message": "No such endpoint."}}, 404
    )


def _scrub_query(query: str) -> str:
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, "[redacted]" if k in SENSITIVE else v) for k, v in pairs])


class EmulatorApp:
    """WSGI callable serving every emulated Microsoft endpoint for one World."""

    def __init__(self, world: World, files: StateFiles | None = None):
        self.world = world
        self.files = files
        self._dispatch = None

    def __call__(self, environ, start_response):
        request = Request(environ)
        started = time.perf_counter()
        try:
            response = self.route(request)
        except Exception:  # noqa: BLE001 - an emulator bug must not kill the server
            import traceback

            traceback.print_exc()
            response = identity.json_response(
                {
                    "error": {
                        "code": "InternalServerError",
                        "message": "Emulator error.",
                    }
                },
                500,
            )
        if not request.path.startswith("/_emulator"):
            self.log(request, response, time.perf_counter() - started)
        return response(environ, start_response)

    def route(self, request: Request) -> Response:
        parts = request.path.strip("/").split("/")
        first = parts[0] if parts else ""
        world = self.world
        if first in API_PREFIXES:
            dispatch = self._dispatch or _api_dispatch()
            if dispatch is None:
                return _not_implemented()
            self._dispatch = dispatch
            return dispatch(world, request)
        if first == "_emulator":
            return controls.handle(world, request, parts[1:])
        if first in ("static", ""):
            return _not_found()
        return self.route_identity(request, first, parts[1:])

    def route_identity(
        self, request: Request, segment: str, rest: list[str]
    ) -> Response:
        world = self.world
        method = request.method
        path = "/".join(rest)
        if path == "v2.0/.well-known/openid-configuration":
            return identity.openid_configuration(world, request, segment, v2=True)
        if path == ".well-known/openid-configuration":
            return identity.openid_configuration(world, request, segment, v2=False)
        if path in ("discovery/v2.0/keys", "discovery/keys"):
            return identity.keys(
                world, request, segment, v2=path.startswith("discovery/v2")
            )
        if path == "discovery/instance":
            return identity.instance_discovery(world, request)
        if path in ("oauth2/v2.0/token", "oauth2/token"):
            if method != "POST":
                return _method_not_allowed()
            return identity.token(world, request, segment, v2="v2.0" in path)
        if path in ("v2.0/adminconsent", "adminconsent") and method == "GET":
            return consent.start(
                world, request, segment, "v2" if rest[0] == "v2.0" else "legacy"
            )
        if path in ("oauth2/authorize", "oauth2/v2.0/authorize") and method == "GET":
            v2 = "v2.0" in path
            if not v2 and request.args.get("prompt") in ("consent", "admin_consent"):
                return consent.start(world, request, segment, "v1")
            return identity.authorize(world, request, segment, v2=v2)
        if path == "login" and method == "POST":
            return self.login_post(request, segment)
        if path == "error":
            code = request.args.get("code", "")[:12]
            return identity.page("Error lookup", f"<h1>AADSTS{html.escape(code)}</h1>")
        return _not_found()

    def login_post(self, request: Request, segment: str) -> Response:
        st = identity.state(self.world)
        flow_id = request.form.get("flow", "")
        with st.lock:
            flow = st.flows.get(flow_id)
        if flow is None:
            return identity.page(
                "Sign in to your account",
                "<h1>Your sign-in session has expired.</h1>"
                '<p id="error-code" class="error">Please start again.</p>',
                400,
            )
        if flow["kind"] == "signin":
            return identity.signin_post(self.world, request, segment, flow_id, flow)
        return consent.post(self.world, request, segment, flow_id, flow)

    def log(self, request: Request, response: Response, seconds: float) -> None:
        entry = {
            "time": tokens.now_seconds(self.world),
            "method": request.method,
            "path": request.path,
            "query": _scrub_query(request.query_string.decode("latin-1")),
            "status": response.status_code,
            "tid": None,
            "aud": None,
            "client_id": None,
            "ms": round(seconds * 1000, 2),
        }
        claims = getattr(response, "token_claims", None)
        if claims is None and request.headers.get("Authorization"):
            claims = tokens.decode_access_token(
                self.world, request.headers.get("Authorization")
            )
        if claims:
            entry["tid"] = claims.get("tid")
            entry["aud"] = claims.get("aud")
            entry["client_id"] = claims.get("appid") or claims.get("azp")
        code = getattr(response, "aadsts", None)
        if code:
            entry["aadsts"] = code
        if request.path.endswith("/token") and request.method == "POST":
            entry["grant_type"] = request.form.get("grant_type")
            entry["client_id"] = entry["client_id"] or request.form.get("client_id")
            if entry["tid"] is None:
                entry["tid"] = request.path.strip("/").split("/")[0]
        self.world.request_log.append(entry)


def _method_not_allowed() -> Response:
    return identity.json_response(
        {"error": "invalid_request", "error_description": "Method not allowed."}, 405
    )


def create_app(
    state_dir: str | Path, **world_options
) -> tuple[EmulatorApp, World, StateFiles]:
    """Build a World in `state_dir` and the WSGI app serving it."""
    world, files = build_world(state_dir, **world_options)
    return EmulatorApp(world, files), world, files

"""Entra ID side of the emulator, driven by real MSAL over real HTTPS."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt
import msal
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from emulator import tokens
from emulator.testing import in_process_session

MDE = "https://api.securitycenter.microsoft.com/.default"
GRAPH = "https://graph.microsoft.com/.default"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DESCRIPTION_RE = re.compile(
    r"^AADSTS(\d+): .+\r\nTrace ID: [0-9a-f-]{36}\r\nCorrelation ID: [0-9a-f-]{36}"
    r"\r\nTimestamp: \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$",
    re.DOTALL,
)


def first_tenant(emulator) -> str:
    return emulator.description["tenants"][0]["id"]


def consent(emulator, tenant_id: str) -> None:
    emulator.control("POST", f"tenants/{tenant_id}/consent")


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def assert_error(result: dict, error: str, code: int) -> None:
    assert result.get("error") == error, result
    assert result.get("error_codes") == [code], result
    assert DESCRIPTION_RE.match(result["error_description"]), result
    assert result["error_description"].startswith(f"AADSTS{code}: ")
    for key in ("timestamp", "trace_id", "correlation_id", "error_uri"):
        assert result.get(key), key


def post_token(emulator, tenant: str, data: dict, v2: bool = True, **kwargs):
    path = "oauth2/v2.0/token" if v2 else "oauth2/token"
    with emulator.session() as session:
        return session.post(
            f"{emulator.base_url}/{tenant}/{path}", data=data, timeout=10, **kwargs
        )


def make_assertion(emulator, audience: str, **overrides) -> str:
    key = Path(emulator.key_path).read_bytes()
    cert = x509.load_pem_x509_certificate(Path(emulator.cert_path).read_bytes())
    der = cert.public_bytes(serialization.Encoding.DER)
    now = int(time.time())
    claims = {
        "aud": audience,
        "iss": emulator.client_id,
        "sub": emulator.client_id,
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides.pop("claims", {}))
    x5t = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).decode()  # noqa: S324
    headers = {"x5t": x5t.rstrip("=") if overrides.get("unpadded") else x5t}
    return jwt.encode(claims, key, algorithm="RS256", headers=headers)


# -- discovery ------------------------------------------------------------------------
def test_v2_discovery_advertises_https_endpoints_with_the_tenant_guid(emulator):
    tenant = emulator.description["tenants"][0]
    with emulator.session() as session:
        for segment in (tenant["id"], tenant["domain"]):
            response = session.get(
                f"{emulator.base_url}/{segment}/v2.0/.well-known/openid-configuration"
            )
            assert response.status_code == 200
            doc = response.json()
            for name in ("token_endpoint", "authorization_endpoint", "jwks_uri"):
                assert doc[name].startswith(f"{emulator.base_url}/{tenant['id']}/")
            assert doc["issuer"] == f"{emulator.base_url}/{tenant['id']}/v2.0"
            assert doc["token_endpoint"].endswith("/oauth2/v2.0/token")
            assert response.headers["Cache-Control"] == "max-age=86400, private"


def test_v1_discovery_uses_sts_issuer_and_v1_token_endpoint(emulator):
    tid = first_tenant(emulator)
    with emulator.session() as session:
        doc = session.get(
            f"{emulator.base_url}/{tid}/.well-known/openid-configuration"
        ).json()
    assert doc["issuer"] == f"https://sts.windows.net/{tid}/"
    assert doc["token_endpoint"] == f"{emulator.base_url}/{tid}/oauth2/token"
    assert doc["jwks_uri"] == f"{emulator.base_url}/common/discovery/keys"


def test_discovery_of_unknown_and_malformed_tenants_is_invalid_tenant(emulator):
    with emulator.session() as session:
        unknown = session.get(
            f"{emulator.base_url}/{uuid.uuid4()}/v2.0/.well-known/openid-configuration"
        )
        malformed = session.get(
            f"{emulator.base_url}/not_a_tenant!/v2.0/.well-known/openid-configuration"
        )
    assert unknown.status_code == 400
    assert_error(unknown.json(), "invalid_tenant", 90002)
    assert malformed.status_code == 400
    assert_error(malformed.json(), "invalid_tenant", 900023)


def test_msal_constructor_rejects_an_unknown_tenant(emulator):
    with pytest.raises(ValueError):
        msal.ConfidentialClientApplication(
            emulator.client_id,
            client_credential=emulator.client_secret,
            authority=f"{emulator.base_url}/{uuid.uuid4()}",
            instance_discovery=False,
            azure_region=False,
            http_client=emulator.session(),
        )


def test_jwks_publishes_the_signing_key_with_kid_equal_to_x5t(emulator):
    with emulator.session() as session:
        for path in ("common/discovery/v2.0/keys", "common/discovery/keys"):
            keys = session.get(f"{emulator.base_url}/{path}").json()["keys"]
            assert len(keys) == 1
            assert keys[0]["kid"] == keys[0]["x5t"]
            assert keys[0]["kty"] == "RSA" and keys[0]["use"] == "sig"


def test_instance_discovery_answers_in_microsofts_shape(emulator):
    with emulator.session() as session:
        body = session.get(
            f"{emulator.base_url}/common/discovery/instance",
            params={"api-version": "1.1"},
        ).json()
    assert body["tenant_discovery_endpoint"].startswith(emulator.base_url)
    assert body["metadata"][0]["aliases"]


# -- client credentials: success -------------------------------------------------------
def test_secret_gets_a_token_and_the_second_call_comes_from_msal_cache(
    emulator, make_msal_app
):
    tid = first_tenant(emulator)
    consent(emulator, tid)
    app = make_msal_app(tid)
    first = app.acquire_token_for_client([MDE])
    assert first["token_source"] == "identity_provider"
    assert first["expires_in"] == 3599
    second = app.acquire_token_for_client([MDE])
    assert second["token_source"] == "cache"
    assert second["access_token"] == first["access_token"]

    claims = claims_of(first["access_token"])
    tenant = emulator.world.tenant_by_name_or_id(tid)
    assert claims["aud"] == "https://api.securitycenter.microsoft.com"
    assert claims["iss"] == f"https://sts.windows.net/{tid}/"
    assert claims["tid"] == tid
    assert claims["appid"] == emulator.client_id
    assert claims["appidacr"] == "1"
    assert claims["oid"] == claims["sub"] == tenant.sp_object_id
    assert claims["idtyp"] == "app"
    assert claims["ver"] == "1.0"
    assert claims["exp"] - claims["iat"] == 3900
    assert claims["roles"] == ["Alert.Read.All", "Alert.ReadWrite.All"]
    assert "scp" not in claims


def test_token_signature_verifies_against_the_published_jwks(emulator, make_msal_app):
    tid = first_tenant(emulator)
    consent(emulator, tid)
    token = make_msal_app(tid).acquire_token_for_client([GRAPH])["access_token"]
    header = jwt.get_unverified_header(token)
    with emulator.session() as session:
        jwks = session.get(f"{emulator.base_url}/{tid}/discovery/v2.0/keys").json()
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    assert header["x5t"] == header["kid"] and header["alg"] == "RS256"
    claims = jwt.decode(
        token,
        jwt.PyJWK(key).key,
        algorithms=["RS256"],
        audience="https://graph.microsoft.com",
    )
    assert claims["roles"] == [
        "SecurityAlert.Read.All",
        "SecurityAlert.ReadWrite.All",
        "SecurityIncident.Read.All",
    ]
    assert tokens.decode_access_token(emulator.world, f"Bearer {token}") == claims


@pytest.mark.parametrize("form", ["thumbprint", "public_certificate"])
def test_certificate_credential_gets_a_token(emulator, make_msal_app, form):
    tid = first_tenant(emulator)
    consent(emulator, tid)
    app = make_msal_app(tid, credential=emulator.credential_certificate(form))
    result = app.acquire_token_for_client([MDE])
    assert result["token_source"] == "identity_provider", result
    assert claims_of(result["access_token"])["appidacr"] == "2"
    assert app.acquire_token_for_client([MDE])["token_source"] == "cache"


def test_v1_endpoint_returns_string_numbers_and_resource(emulator):
    tid = first_tenant(emulator)
    consent(emulator, tid)
    response = post_token(
        emulator,
        tid,
        {
            "grant_type": "client_credentials",
            "resource": "05a65629-4c1b-48c1-a78b-804c4abdd4af",
        },
        v2=False,
        auth=(emulator.client_id, emulator.client_secret),  # HTTP Basic
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == [
        "token_type",
        "expires_in",
        "ext_expires_in",
        "expires_on",
        "not_before",
        "resource",
        "access_token",
    ]
    assert body["expires_in"] == "3599"
    assert body["resource"] == "05a65629-4c1b-48c1-a78b-804c4abdd4af"
    claims = claims_of(body["access_token"])
    assert body["expires_on"] == str(claims["exp"])
    assert body["not_before"] == str(claims["nbf"])
    assert claims["aud"] == "05a65629-4c1b-48c1-a78b-804c4abdd4af"
    assert claims["roles"] == ["Investigation.read"]


def test_v2_success_body_has_exactly_the_four_fields(emulator):
    tid = first_tenant(emulator)
    consent(emulator, tid)
    body = post_token(
        emulator,
        tid,
        {
            "grant_type": "client_credentials",
            "client_id": emulator.client_id,
            "client_secret": emulator.client_secret,
            "scope": GRAPH,
        },
    ).json()
    assert list(body) == ["token_type", "expires_in", "ext_expires_in", "access_token"]
    assert body["expires_in"] == 3599 and body["ext_expires_in"] == 3599


def test_assertion_with_unpadded_x5t_no_nbf_and_reused_jti_is_accepted(emulator):
    tid = first_tenant(emulator)
    consent(emulator, tid)
    url = f"{emulator.base_url}/{tid}/oauth2/v2.0/token"
    assertion = make_assertion(emulator, url, unpadded=True)
    data = {
        "grant_type": "client_credentials",
        "client_id": emulator.client_id,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        "scope": MDE,
    }
    for _ in range(2):
        response = post_token(emulator, tid, data)
        assert response.status_code == 200, response.text


def test_token_without_granted_roles_has_no_roles_claim(emulator, make_msal_app):
    tid = first_tenant(emulator)
    consent(emulator, tid)
    for role in ("Alert.Read.All", "Alert.ReadWrite.All"):
        emulator.control(
            "POST", f"tenants/{tid}/roles/remove", {"resource": "mde", "role": role}
        )
    token = make_msal_app(tid).acquire_token_for_client([MDE])["access_token"]
    assert "roles" not in claims_of(token)


def test_advancing_the_clock_expires_tokens_for_the_apis(emulator, make_msal_app):
    tid = first_tenant(emulator)
    consent(emulator, tid)
    token = make_msal_app(tid).acquire_token_for_client([MDE])["access_token"]
    assert tokens.decode_access_token(emulator.world, token) is not None
    emulator.control("POST", "clock/advance", {"seconds": 3901})
    assert tokens.decode_access_token(emulator.world, token) is None
    assert tokens.decode_access_token(emulator.world, "Bearer not.a.jwt") is None


# -- client credentials: errors ----------------------------------------------------
def test_unconsented_tenant_is_unauthorized_client_700016(emulator, make_msal_app):
    result = make_msal_app(first_tenant(emulator)).acquire_token_for_client([MDE])
    assert_error(result, "unauthorized_client", 700016)


def test_unconsented_tenant_can_answer_7000229_instead(emulator, make_msal_app):
    emulator.control("POST", "settings", {"not_consented_code": 7000229})
    result = make_msal_app(first_tenant(emulator)).acquire_token_for_client([MDE])
    assert_error(result, "invalid_client", 7000229)


def test_wrong_secret_is_7000215_and_expired_secret_is_7000222(emulator, make_msal_app):
    tid = first_tenant(emulator)
    consent(emulator, tid)
    wrong = make_msal_app(tid, credential="not-the-secret")
    assert_error(wrong.acquire_token_for_client([MDE]), "invalid_client", 7000215)
    emulator.control("POST", "app/secret/expire")
    expired = make_msal_app(tid).acquire_token_for_client([MDE])
    assert_error(expired, "invalid_client", 7000222)
    rotated = emulator.control("POST", "app/secret/rotate")["client_secret"]
    fresh = make_msal_app(tid, credential=rotated).acquire_token_for_client([MDE])
    assert fresh["token_source"] == "identity_provider"


def test_status_codes_of_client_errors(emulator):
    tid = first_tenant(emulator)
    consent(emulator, tid)
    base = {"grant_type": "client_credentials", "client_id": emulator.client_id}
    bad_secret = post_token(emulator, tid, {**base, "client_secret": "x", "scope": MDE})
    assert bad_secret.status_code == 401
    missing = post_token(emulator, tid, {**base, "scope": MDE})
    assert missing.status_code == 401
    assert_error(missing.json(), "invalid_client", 7000218)


def test_unregistered_certificate_is_700027(emulator, make_msal_app, tmp_path):
    from emulator import tls

    tid = first_tenant(emulator)
    consent(emulator, tid)
    key, cert = tls.ensure_rsa_certificate(
        tmp_path / "k.pem", tmp_path / "c.pem", "someone else"
    )
    credential = {
        "private_key": (tmp_path / "k.pem").read_text(),
        "thumbprint": tls.thumbprints(cert)[0],
    }
    result = make_msal_app(tid, credential=credential).acquire_token_for_client([MDE])
    assert_error(result, "invalid_client", 700027)


def test_assertion_for_another_audience_is_700027(emulator):
    tid = first_tenant(emulator)
    consent(emulator, tid)
    assertion = make_assertion(emulator, "https://login.microsoftonline.com/x/token")
    response = post_token(
        emulator,
        tid,
        {
            "grant_type": "client_credentials",
            "client_id": emulator.client_id,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
            "scope": MDE,
        },
    )
    assert response.status_code == 401
    assert_error(response.json(), "invalid_client", 700027)


def test_stale_assertion_is_700024(emulator):
    tid = first_tenant(emulator)
    consent(emulator, tid)
    url = f"{emulator.base_url}/{tid}/oauth2/v2.0/token"
    old = int(time.time()) - 7200
    assertion = make_assertion(emulator, url, claims={"iat": old, "exp": old + 600})
    response = post_token(
        emulator,
        tid,
        {
            "grant_type": "client_credentials",
            "client_id": emulator.client_id,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
            "scope": MDE,
        },
    )
    assert response.status_code == 401
    assert_error(response.json(), "invalid_client", 700024)


def test_unlicensed_resource_is_invalid_resource_500011(emulator, make_msal_app):
    tid = first_tenant(emulator)
    consent(emulator, tid)
    emulator.control("PATCH", f"tenants/{tid}", {"licensed": ["graph"]})
    result = make_msal_app(tid).acquire_token_for_client([MDE])
    assert_error(result, "invalid_resource", 500011)
    unknown = make_msal_app(tid).acquire_token_for_client(
        ["https://nope.example/.default"]
    )
    assert_error(unknown, "invalid_resource", 500011)


def test_conditional_access_block_is_53003(emulator, make_msal_app):
    tid = first_tenant(emulator)
    consent(emulator, tid)
    emulator.control("PATCH", f"tenants/{tid}", {"ca_blocked": True})
    result = make_msal_app(tid).acquire_token_for_client([MDE])
    assert_error(result, "invalid_grant", 53003)


def test_bad_scope_is_invalid_scope_70011(emulator, make_msal_app):
    tid = first_tenant(emulator)
    consent(emulator, tid)
    result = make_msal_app(tid).acquire_token_for_client(
        ["https://graph.microsoft.com/User.Read"]
    )
    assert_error(result, "invalid_scope", 70011)


def test_unknown_and_malformed_tenant_on_the_token_endpoint(emulator):
    data = {
        "grant_type": "client_credentials",
        "client_id": emulator.client_id,
        "client_secret": emulator.client_secret,
        "scope": MDE,
    }
    unknown = post_token(emulator, "contoso-404.example", data)
    assert unknown.status_code == 400
    assert_error(unknown.json(), "invalid_request", 90002)
    malformed = post_token(emulator, "bad_tenant!", data)
    assert malformed.status_code == 400
    assert_error(malformed.json(), "invalid_request", 900023)


def test_error_body_echoes_client_request_id(emulator):
    correlation = str(uuid.uuid4())
    response = post_token(
        emulator,
        first_tenant(emulator),
        {"grant_type": "client_credentials", "client_id": emulator.client_id},
        headers={"client-request-id": correlation},
    )
    body = response.json()
    assert body["correlation_id"] == correlation
    assert f"Correlation ID: {correlation}" in body["error_description"]
    assert body["error_uri"].endswith("/error?code=700016")
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"


def test_scripted_token_faults(emulator, make_msal_app):
    tid = first_tenant(emulator)
    consent(emulator, tid)
    emulator.control("POST", "faults/token", {"status": 429, "retry_after": 7})
    throttled = make_msal_app(tid).acquire_token_for_client([MDE])
    assert throttled["error"] == "temporarily_unavailable", throttled
    emulator.control("POST", "faults/token", {"status": 503, "count": 1})
    with pytest.raises(msal.exceptions.MsalServiceError):
        make_msal_app(tid).acquire_token_for_client([MDE])
    emulator.control("POST", "faults/token", {"code": 7000222, "count": 1})
    result = make_msal_app(tid).acquire_token_for_client([MDE])
    assert_error(result, "invalid_client", 7000222)
    assert make_msal_app(tid).acquire_token_for_client([MDE])["access_token"]


# -- staff sign-in --------------------------------------------------------------------
def test_staff_sign_in_with_authorization_code_and_pkce(emulator):
    session = emulator.session()
    home = emulator.description["home_tenant"]["id"]
    staff = emulator.description["staff"][0]
    redirect_uri = "http://127.0.0.1:8000/consent/callback"
    app = msal.ConfidentialClientApplication(
        emulator.client_id,
        client_credential=emulator.client_secret,
        authority=f"{emulator.base_url}/{home}",
        instance_discovery=False,
        azure_region=False,
        http_client=session,
    )
    flow = app.initiate_auth_code_flow(["User.Read"], redirect_uri=redirect_uri)
    page = session.get(flow["auth_uri"])
    assert page.status_code == 200
    flow_id = re.search(r'name="flow" value="([^"]+)"', page.text).group(1)
    posted = session.post(
        f"{emulator.base_url}/{home}/login",
        data={
            "flow": flow_id,
            "login": staff["upn"],
            "passwd": staff["password"],
            "action": "signin",
        },
        allow_redirects=False,
    )
    assert posted.status_code == 302
    location = posted.headers["Location"]
    assert location.startswith(redirect_uri + "?code=")
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    result = app.acquire_token_by_auth_code_flow(flow, query)
    assert "access_token" in result, result
    id_claims = result["id_token_claims"]
    assert id_claims["preferred_username"] == staff["upn"]
    assert id_claims["tid"] == home
    assert id_claims["aud"] == emulator.client_id
    # The code is single use.
    again = session.post(
        f"{emulator.base_url}/{home}/oauth2/v2.0/token",
        data={
            "grant_type": "authorization_code",
            "client_id": emulator.client_id,
            "client_secret": emulator.client_secret,
            "code": query["code"],
            "redirect_uri": redirect_uri,
        },
    )
    assert_error(again.json(), "invalid_grant", 54005)


def test_wrong_pkce_verifier_is_rejected(emulator):
    session = emulator.session()
    home = emulator.description["home_tenant"]["id"]
    staff = emulator.description["staff"][0]
    redirect_uri = "http://localhost:8000/consent/callback"
    verifier = "a" * 50
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        .decode()
        .rstrip("=")
    )
    page = session.get(
        f"{emulator.base_url}/{home}/oauth2/v2.0/authorize",
        params={
            "client_id": emulator.client_id,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "scope": "openid profile",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    )
    flow_id = re.search(r'name="flow" value="([^"]+)"', page.text).group(1)
    posted = session.post(
        f"{emulator.base_url}/{home}/login",
        data={"flow": flow_id, "login": staff["upn"], "passwd": staff["password"]},
        allow_redirects=False,
    )
    code = re.search(r"code=([^&]+)", posted.headers["Location"]).group(1)
    response = session.post(
        f"{emulator.base_url}/{home}/oauth2/v2.0/token",
        data={
            "grant_type": "authorization_code",
            "client_id": emulator.client_id,
            "client_secret": emulator.client_secret,
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": "b" * 50,
        },
    )
    assert_error(response.json(), "invalid_grant", 501481)


# -- logging, controls, helpers ---------------------------------------------------
def test_request_log_holds_no_credentials(emulator, make_msal_app):
    tid = first_tenant(emulator)
    consent(emulator, tid)
    token = make_msal_app(tid).acquire_token_for_client([MDE])["access_token"]
    make_msal_app(
        tid, credential=emulator.credential_certificate("thumbprint")
    ).acquire_token_for_client([GRAPH])
    log = emulator.control("GET", "requests")["requests"]
    text = json.dumps(log)
    assert emulator.client_secret not in text
    assert token not in text and "eyJ" not in text
    token_entries = [e for e in log if e["path"].endswith("/oauth2/v2.0/token")]
    assert token_entries and token_entries[0]["tid"] == tid
    assert token_entries[0]["aud"] == "https://api.securitycenter.microsoft.com"
    assert token_entries[0]["client_id"] == emulator.client_id


def test_controls_require_the_control_token(emulator):
    with emulator.session() as session:
        response = session.get(f"{emulator.base_url}/_emulator/state")
    assert response.status_code == 401
    state = emulator.control("GET", "state")
    assert len(state["tenants"]) == 3
    assert not any(t["consented"] for t in state["tenants"])


def test_added_tenant_can_be_consented_and_used(emulator, make_msal_app):
    tenant = emulator.control("POST", "tenants", {"name": "Added Co"})
    assert tenant["consented"] is False
    emulator.control("POST", f"tenants/{tenant['id']}/consent")
    result = make_msal_app(tenant["id"]).acquire_token_for_client([GRAPH])
    assert claims_of(result["access_token"])["tid"] == tenant["id"]


def test_default_world_is_deterministic_for_a_seed(tmp_path):
    from emulator.app import build_world

    first, _ = build_world(tmp_path / "a", seed=11, tenants=2)
    second, _ = build_world(tmp_path / "b", seed=11, tenants=2)
    assert list(first.tenants) == list(second.tenants)
    assert first.app.client_id == second.app.client_id
    assert first.app.secrets[0].value == second.app.secrets[0].value
    assert "http://127.0.0.1:8000/consent/callback" in first.app.redirect_uris
    assert not any(t.consented for t in first.tenants.values())
    assert first.app.required_roles["mcas"] == ["Investigation.read"]


def test_in_process_adapter_serves_msal_without_a_socket(tmp_path):
    session, adapter = in_process_session(tmp_path, seed=3, tenants=1)
    world = adapter.world
    tid = next(iter(world.tenants))
    world.tenants[tid].consented = True
    world.tenants[tid].granted_roles = {"mde": {"Alert.Read.All"}}
    app = msal.ConfidentialClientApplication(
        world.app.client_id,
        client_credential=world.app.secrets[0].value,
        authority=f"https://emulator.test/{tid}",
        instance_discovery=False,
        azure_region=False,
        http_client=session,
    )
    result = app.acquire_token_for_client([MDE])
    assert claims_of(result["access_token"])["roles"] == ["Alert.Read.All"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_cli_serves_within_three_seconds_and_writes_emulator_json(tmp_path):
    port = _free_port()
    state_dir = tmp_path / "state"
    started = time.monotonic()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulator",
            "serve",
            "--port",
            str(port),
            "--state-dir",
            str(state_dir),
            "--seed",
            "5",
            "--tenants",
            "2",
        ],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ready = None
        while time.monotonic() - started < 10:
            ca = state_dir / "ca.pem"
            if ca.exists():
                session = requests.Session()
                session.trust_env = False
                session.verify = str(ca)
                try:
                    response = session.get(
                        f"https://127.0.0.1:{port}/common/discovery/v2.0/keys",
                        timeout=1,
                    )
                    if response.status_code == 200:
                        ready = time.monotonic() - started
                        break
                except requests.exceptions.RequestException:
                    pass
            time.sleep(0.02)
        assert ready is not None and ready < 3, ready
        description = json.loads((state_dir / "emulator.json").read_text())
        assert description["base_url"] == f"https://127.0.0.1:{port}"
        assert len(description["tenants"]) == 2
        for key in (
            "ca_path",
            "client_id",
            "client_secret",
            "cert_path",
            "key_path",
            "control_token",
        ):
            assert description[key]
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    assert process.returncode == 0, output
    assert "control token" in output and description["client_id"] in output


def test_controls_reach_the_world_functions_of_the_apis_side(emulator):
    tid = first_tenant(emulator)
    added = emulator.control(
        "POST", "alerts", {"tenant": tid, "source": "mde", "fields": {"title": "x"}}
    )["result"]
    truth = emulator.control("GET", "ground-truth", tenant=tid, source="mde")["result"]
    assert added["providerAlertId"] in truth
    assert "requests" in emulator.control("GET", "stats")["result"]
    with emulator.session() as session:
        bad = session.post(
            f"{emulator.base_url}/_emulator/ground-truth",
            headers={"Authorization": f"Bearer {emulator.control_token}"},
        )
    assert bad.status_code == 404

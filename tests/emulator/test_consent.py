"""Admin consent pages, followed with a plain requests session (real HTTPS)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

REDIRECT = "http://127.0.0.1:8000/consent/callback"
GRAPH_DEFAULT = "https://graph.microsoft.com/.default"


def flow_id(html: str) -> str:
    return re.search(r'name="flow" value="([^"]+)"', html).group(1)


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def admin_of(emulator, index: int = 0) -> tuple[dict, str, str]:
    tenant = emulator.description["tenants"][index]
    admin = tenant["admins"][0]
    return tenant, admin["upn"], admin["password"]


def start(session, emulator, segment="organizations", path="v2.0/adminconsent", **p):
    params = {"client_id": emulator.client_id, **p}
    return session.get(f"{emulator.base_url}/{segment}/{path}", params=params)


def sign_in(session, emulator, segment, page, upn, password):
    return session.post(
        f"{emulator.base_url}/{segment}/login",
        data={"flow": flow_id(page.text), "login": upn, "passwd": password},
        allow_redirects=False,
    )


def press(session, emulator, segment, page, action):
    return session.post(
        f"{emulator.base_url}/{segment}/login",
        data={"flow": flow_id(page.text), "action": action},
        allow_redirects=False,
    )


def consent_v2(emulator, action="accept", segment="organizations", index=0, **params):
    session = emulator.session()
    tenant, upn, password = admin_of(emulator, index)
    params.setdefault("scope", GRAPH_DEFAULT)
    params.setdefault("redirect_uri", REDIRECT)
    page = start(session, emulator, segment, **params)
    assert page.status_code == 200, page.text
    consent_page = sign_in(session, emulator, segment, page, upn, password)
    assert consent_page.status_code == 200, consent_page.text
    return tenant, press(session, emulator, segment, consent_page, action)


def test_v2_accept_redirects_with_admin_consent_tenant_scope_state(
    emulator, make_msal_app
):
    tenant, response = consent_v2(emulator, state="s-123")
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(REDIRECT + "?admin_consent=True&tenant=")
    assert query_of(location) == {
        "admin_consent": "True",
        "tenant": tenant["id"],
        "scope": GRAPH_DEFAULT,
        "state": "s-123",
    }
    token = make_msal_app(tenant["id"]).acquire_token_for_client([GRAPH_DEFAULT])
    claims = jwt.decode(token["access_token"], options={"verify_signature": False})
    assert claims["tid"] == tenant["id"]
    assert claims["roles"] == [
        "SecurityAlert.Read.All",
        "SecurityAlert.ReadWrite.All",
        "SecurityIncident.Read.All",
    ]


def test_state_is_omitted_when_none_was_sent(emulator):
    _, response = consent_v2(emulator)
    assert "state" not in query_of(response.headers["Location"])


def test_consent_page_shows_app_name_and_requested_permissions(emulator):
    session = emulator.session()
    _, upn, password = admin_of(emulator)
    page = start(session, emulator, scope=GRAPH_DEFAULT, redirect_uri=REDIRECT)
    consent_page = sign_in(session, emulator, "organizations", page, upn, password)
    html = consent_page.text
    assert 'id="app-name"' in html and emulator.world.app.display_name in html
    for roles in emulator.world.app.required_roles.values():
        for role in roles:
            assert f'data-role="{role}"' in html
    assert 'id="accept"' in html and 'id="cancel"' in html


def test_cancel_redirects_with_access_denied_and_subcode(emulator):
    tenant, response = consent_v2(emulator, action="cancel", state="xyz")
    query = query_of(response.headers["Location"])
    assert query["admin_consent"] == "True"
    assert query["error"] == "access_denied"
    assert query["error_subcode"] == "cancel"
    assert query["error_description"].startswith("AADSTS65004")
    assert query["state"] == "xyz"
    assert "tenant" not in query
    assert not emulator.world.tenant_by_name_or_id(tenant["id"]).consented


def test_tenant_pinned_link_works_with_its_own_admin(emulator):
    tenant = emulator.description["tenants"][1]
    _, response = consent_v2(emulator, segment=tenant["id"], index=1, state="p")
    assert query_of(response.headers["Location"])["tenant"] == tenant["id"]


def test_tenant_pinned_link_refuses_an_admin_of_another_tenant(emulator):
    session = emulator.session()
    pinned = emulator.description["tenants"][1]["id"]
    _, upn, password = admin_of(emulator, 0)
    page = start(session, emulator, pinned, scope=GRAPH_DEFAULT, redirect_uri=REDIRECT)
    response = sign_in(session, emulator, pinned, page, upn, password)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "AADSTS50020" in response.text
    assert not any(t.consented for t in emulator.world.tenants.values())


def test_legacy_adminconsent_has_no_scope(emulator):
    session = emulator.session()
    tenant, upn, password = admin_of(emulator)
    page = start(
        session,
        emulator,
        "common",
        "adminconsent",
        redirect_uri=REDIRECT,
        state="legacy",
    )
    consent_page = sign_in(session, emulator, "common", page, upn, password)
    response = press(session, emulator, "common", consent_page, "accept")
    assert query_of(response.headers["Location"]) == {
        "admin_consent": "True",
        "tenant": tenant["id"],
        "state": "legacy",
    }


def test_v1_prompt_consent_link_returns_code_and_session_state(emulator):
    session = emulator.session()
    tenant, upn, password = admin_of(emulator)
    page = start(
        session,
        emulator,
        "common",
        "oauth2/authorize",
        prompt="consent",
        response_type="code",
        sso_reload="true",
        state="v1",
    )
    assert page.status_code == 200, page.text
    consent_page = sign_in(session, emulator, "common", page, upn, password)
    response = press(session, emulator, "common", consent_page, "accept")
    location = response.headers["Location"]
    # No redirect_uri in the link: the registered reply URL is used.
    assert location.startswith(emulator.world.app.redirect_uris[0] + "?code=")
    query = query_of(location)
    assert set(query) == {"code", "session_state", "state"}
    assert query["state"] == "v1"
    assert emulator.world.tenant_by_name_or_id(tenant["id"]).consented


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://evil.example/consent/callback",
        "http://127.0.0.1:8000/consent/callback/",  # exact match only
        "HTTP://127.0.0.1:8000/consent/callback",
    ],
)
def test_unregistered_redirect_uri_is_an_error_page_without_redirect(
    emulator, redirect_uri
):
    session = emulator.session()
    page = start(session, emulator, scope=GRAPH_DEFAULT, redirect_uri=redirect_uri)
    assert page.status_code == 400
    assert "Location" not in page.headers
    assert "AADSTS50011" in page.text
    assert 'name="flow"' not in page.text


def test_wrong_password_shows_the_sign_in_page_again(emulator):
    session = emulator.session()
    _, upn, _ = admin_of(emulator)
    page = start(session, emulator, scope=GRAPH_DEFAULT, redirect_uri=REDIRECT)
    response = sign_in(session, emulator, "organizations", page, upn, "wrong")
    assert response.status_code == 200
    assert 'id="signin-error"' in response.text
    assert 'id="accept"' not in response.text


def test_scripted_failure_1003031_redirects_with_access_denied(emulator):
    emulator.control("POST", "faults/consent", {"code": 1003031, "count": 1})
    session = emulator.session()
    tenant, upn, password = admin_of(emulator)
    page = start(
        session, emulator, scope=GRAPH_DEFAULT, redirect_uri=REDIRECT, state="f"
    )
    response = sign_in(session, emulator, "organizations", page, upn, password)
    assert response.status_code == 302
    query = query_of(response.headers["Location"])
    assert query["error"] == "access_denied"
    assert query["error_description"].startswith("AADSTS1003031")
    assert query["state"] == "f"
    assert not emulator.world.tenant_by_name_or_id(tenant["id"]).consented


def test_non_admin_user_gets_90094(emulator):
    session = emulator.session()
    staff = emulator.description["staff"][0]
    page = start(session, emulator, scope=GRAPH_DEFAULT, redirect_uri=REDIRECT)
    need_admin = sign_in(
        session, emulator, "organizations", page, staff["upn"], staff["password"]
    )
    assert "AADSTS90094" in need_admin.text
    response = press(session, emulator, "organizations", need_admin, "back")
    query = query_of(response.headers["Location"])
    assert query["error"] == "access_denied"
    assert query["error_description"].startswith("AADSTS90094")


def test_pages_escape_reflected_input(emulator):
    session = emulator.session()
    payload = '"><script>alert(1)</script>'
    page = start(
        session,
        emulator,
        scope=GRAPH_DEFAULT,
        redirect_uri=REDIRECT,
        login_hint=payload,
    )
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;" in page.text
    bad = start(session, emulator, scope=GRAPH_DEFAULT, redirect_uri=REDIRECT + payload)
    assert "<script>alert(1)</script>" not in bad.text


def test_unknown_client_id_is_an_error_page(emulator):
    session = emulator.session()
    response = session.get(
        f"{emulator.base_url}/organizations/v2.0/adminconsent",
        params={
            "client_id": "00000000-0000-0000-0000-000000000001",
            "scope": GRAPH_DEFAULT,
            "redirect_uri": REDIRECT,
        },
    )
    assert response.status_code == 400
    assert "AADSTS700016" in response.text


def test_consent_then_revoke_flips_the_token_state(emulator, make_msal_app):
    tenant, _ = consent_v2(emulator)
    assert make_msal_app(tenant["id"]).acquire_token_for_client([GRAPH_DEFAULT])[
        "access_token"
    ]
    emulator.control("POST", f"tenants/{tenant['id']}/revoke")
    result = make_msal_app(tenant["id"]).acquire_token_for_client([GRAPH_DEFAULT])
    assert result["error_codes"] == [700016]

"""Typed errors, tokens, the sources table: plain data, no network."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from tenants.microsoft import sources
from tenants.microsoft.schemas import (
    AccessDenied,
    AccessToken,
    ConsentRevoked,
    CredentialBroken,
    MicrosoftError,
    Throttled,
    Unavailable,
    error_for_token_response,
    error_from_dict,
)
from tenants.microsoft.sources import SOURCES, missing_roles


def fake_jwt(claims: dict) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def test_access_token_reads_claims_and_hides_its_value():
    value = fake_jwt(
        {"tid": "t-1", "aud": sources.MDE_RESOURCE, "roles": ["Alert.Read.All"]}
    )
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)

    token = AccessToken.from_value(value, expires_at=expires)

    assert token.tenant_id == "t-1"
    assert token.audience == sources.MDE_RESOURCE
    assert token.roles == frozenset({"Alert.Read.All"})
    assert value not in repr(token)
    assert value not in str(token)
    assert 3590 < token.seconds_left() <= 3600


def test_opaque_token_has_no_claims():
    token = AccessToken.from_value("opaque", expires_at=dt.datetime.now(dt.UTC))

    assert token.roles == frozenset()
    assert token.tenant_id == ""


def test_every_source_has_a_label_resource_and_roles():
    assert set(SOURCES) == {
        "mde_alerts",
        "xdr_incidents",
        "graph_alerts",
        "graph_incidents",
        "mcas_alerts",
    }
    assert SOURCES["mde_alerts"].label == "Defender for Endpoint alerts"
    assert SOURCES["mcas_alerts"].resource == "05a65629-4c1b-48c1-a78b-804c4abdd4af"
    for row in SOURCES.values():
        assert row.read_roles and row.write_roles and row.docs.startswith("https://")


@pytest.mark.parametrize(
    ("source", "roles", "missing"),
    [
        ("mde_alerts", [], ["Alert.Read.All"]),
        ("mde_alerts", ["Alert.ReadWrite.All"], []),
        ("mde_alerts", ["Machine.Isolate"], ["Alert.Read.All"]),
        ("xdr_incidents", ["Incident.Read.All"], []),
        ("graph_alerts", ["SecurityIncident.Read.All"], ["SecurityAlert.Read.All"]),
        ("graph_incidents", ["SecurityIncident.ReadWrite.All"], []),
        ("mcas_alerts", ["Investigation.Read"], []),  # docs vary the case
        # Reference §9.1 does not say the Discovery roles list alerts.
        ("mcas_alerts", ["Discovery.read"], ["Investigation.read"]),
        ("mcas_alerts", ["Discovery.manage"], ["Investigation.read"]),
    ],
)
def test_missing_roles_names_what_to_grant(source, roles, missing):
    assert missing_roles(source, roles) == missing


def test_missing_write_roles():
    assert missing_roles("mde_alerts", ["Alert.Read.All"], write=True) == [
        "Alert.ReadWrite.All"
    ]
    with pytest.raises(ValueError):
        missing_roles("nope", [])


@pytest.mark.parametrize("role", ["Investigation.manage", "Discovery.manage"])
def test_cloud_apps_roles_that_close_alerts_allow_writing(role):
    # Reference §9.1: Investigation.manage and Discovery.manage both close alerts.
    assert missing_roles("mcas_alerts", [role], write=True) == []
    assert missing_roles("mcas_alerts", ["Discovery.read"], write=True) == [
        "Investigation.manage"
    ]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (
            {"error": "unauthorized_client", "error_codes": [700016]},
            400,
            ConsentRevoked,
        ),
        ({"error": "invalid_client", "error_codes": [7000222]}, 401, CredentialBroken),
        ({"error": "invalid_client"}, 401, CredentialBroken),
        ({"error": "temporarily_unavailable", "error_codes": [90055]}, 429, Throttled),
        ({"error": "temporarily_unavailable"}, 503, Unavailable),
        ({"error": "invalid_scope", "error_codes": [70011]}, 400, MicrosoftError),
    ],
)
def test_token_error_bodies_map_to_typed_errors(body, status, error):
    assert type(error_for_token_response(body, status=status)) is error


def test_errors_round_trip_through_a_record():
    for original in (
        Throttled(2.5, codes=[90055], status=429),
        AccessDenied(["Alert.Read.All"], status=403),
        ConsentRevoked(codes=[700016], status=400),
        Unavailable(retry_after=3.0, status=503),
    ):
        record = json.loads(json.dumps(original.to_dict()))
        copy = error_from_dict(record)

        assert type(copy) is type(original)
        assert copy.to_dict() == original.to_dict()


def test_error_text_is_plain_words_with_the_code():
    error = error_for_token_response(
        {"error": "invalid_client", "error_codes": [7000222], "error_description": "x"}
    )

    assert str(error).endswith("(AADSTS7000222)")
    assert "MS_CLIENT_SECRET" in error.message
    assert error.code == 7000222
    assert not error.transient
    assert Throttled(1).transient and Unavailable().transient

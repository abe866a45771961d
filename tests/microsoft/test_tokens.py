"""Tokens: real MSAL against the emulator over HTTPS, shared through real Redis."""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import threading
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tenants.microsoft import schemas, sources
from tenants.microsoft.client import MicrosoftClient
from tenants.microsoft.schemas import (
    BlockedByPolicy,
    ConsentRevoked,
    CredentialBroken,
    NotLicensed,
    TenantNotFound,
    Throttled,
    Unavailable,
    decode_jwt_claims,
)
from tests.microsoft.conftest import token_requests
from tests.microsoft.workers import fetch_tokens_in_threads

MDE = sources.MDE_RESOURCE


def test_secret_token_carries_tenant_audience_and_roles(emu, tenant, make_client):
    client = make_client()

    token = client.get_token(tenant["id"], MDE)

    assert token.tenant_id == tenant["id"]
    assert token.audience == MDE
    assert "Alert.Read.All" in token.roles
    assert 3000 < token.seconds_left() <= 3600
    assert decode_jwt_claims(token.value)["appidacr"] == "1"  # secret
    assert token.value not in repr(token) and token.value not in str(token)


def test_certificate_token_is_preferred_over_the_secret(
    emu, tenant, make_client, cert_pem
):
    client = make_client(client_cert_path=cert_pem)  # the secret is set as well

    token = client.get_token(tenant["id"], "graph_alerts")

    assert client.credential_kind == "certificate"
    assert token.audience == sources.GRAPH_RESOURCE
    assert decode_jwt_claims(token.value)["appidacr"] == "2"  # certificate
    assert "SecurityAlert.Read.All" in token.roles


def test_certificate_only_client_needs_no_secret(emu, tenant, make_client, cert_pem):
    client = make_client(client_secret=None, client_cert_path=cert_pem)

    token = client.get_token(tenant["id"], sources.MCAS_RESOURCE)

    assert token.audience == sources.MCAS_RESOURCE
    assert "Investigation.read" in token.roles


def test_shared_cache_serves_a_second_client_without_a_token_request(
    emu, tenant, make_client
):
    first = make_client().get_token(tenant["id"], MDE)
    assert len(token_requests(emu, tenant["id"])) == 1

    second = make_client().get_token(tenant["id"], MDE)  # another "process"

    assert second.value == first.value
    assert len(token_requests(emu, tenant["id"])) == 1


def test_tokens_are_cached_per_tenant_and_resource(emu, make_client):
    client = make_client()
    tenants = [t["id"] for t in emu.description["tenants"][:2]]

    for tenant_id in tenants:
        for resource in (MDE, sources.GRAPH_RESOURCE):
            client.get_token(tenant_id, resource)
            client.get_token(tenant_id, resource)

    logged = token_requests(emu)
    assert len(logged) == 4
    assert {(e["tid"], e["aud"]) for e in logged} == {
        (t, r) for t in tenants for r in (MDE, sources.GRAPH_RESOURCE)
    }


def test_drop_token_makes_the_next_call_ask_entra_again(emu, tenant, make_client):
    client = make_client()
    client.get_token(tenant["id"], MDE)

    client.drop_token(tenant["id"], MDE)
    make_client().get_token(tenant["id"], MDE)

    assert len(token_requests(emu, tenant["id"])) == 2


def test_single_flight_across_processes_makes_one_token_request(
    emu, tenant, client_options
):
    context = multiprocessing.get_context("spawn")
    processes, threads = 2, 4
    barrier = context.Barrier(processes * threads)
    results = context.Queue()
    children = [
        context.Process(
            target=fetch_tokens_in_threads,
            args=(client_options, tenant["id"], MDE, threads, barrier, results),
        )
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    got = [results.get(timeout=120) for _ in range(processes * threads)]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0

    assert all(outcome == "ok" for outcome, *_ in got), got
    assert len({tail for _, _, tail in got}) == 1  # everyone got the same token
    assert len(token_requests(emu, tenant["id"])) == 1


def _other_certificate(tmp_path: Path) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Not uploaded")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "other.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + cert.public_bytes(serialization.Encoding.PEM)
    )
    return str(path)


def test_revoked_consent_raises_consent_revoked(emu, tenant, make_client):
    emu.control("POST", f"tenants/{tenant['id']}/revoke")

    with pytest.raises(ConsentRevoked) as caught:
        make_client().get_token(tenant["id"], MDE)

    assert caught.value.codes == (700016,)
    assert "consent link" in caught.value.message


def test_missing_service_principal_variant_also_means_consent_revoked(
    emu, tenant, make_client
):
    emu.control("POST", "settings", {"not_consented_code": 7000229})
    emu.control("POST", f"tenants/{tenant['id']}/revoke")

    with pytest.raises(ConsentRevoked) as caught:
        make_client().get_token(tenant["id"], MDE)

    assert caught.value.codes == (7000229,)
    assert caught.value.status == 401


def test_expired_secret_is_our_credential_broken(emu, tenant, make_client):
    emu.control("POST", "app/secret/expire")

    with pytest.raises(CredentialBroken) as caught:
        make_client().get_token(tenant["id"], MDE)

    assert caught.value.codes == (7000222,)
    assert "expired" in caught.value.message
    assert "Every customer" in caught.value.message


def test_wrong_secret_is_our_credential_broken(emu, tenant, make_client):
    with pytest.raises(CredentialBroken) as caught:
        make_client(client_secret="not-the-secret").get_token(tenant["id"], MDE)

    assert caught.value.codes == (7000215,)


def test_certificate_not_uploaded_is_our_credential_broken(
    emu, tenant, make_client, tmp_path
):
    client = make_client(client_cert_path=_other_certificate(tmp_path))

    with pytest.raises(CredentialBroken) as caught:
        client.get_token(tenant["id"], MDE)

    assert caught.value.codes == (700027,)
    assert "certificate" in caught.value.message


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (65001, ConsentRevoked),
        (700016, ConsentRevoked),
        (7000229, ConsentRevoked),
        (90002, TenantNotFound),
        (900023, TenantNotFound),
        (7000215, CredentialBroken),
        (7000222, CredentialBroken),
        (700027, CredentialBroken),
        (700024, CredentialBroken),
        (7000218, CredentialBroken),
        (500011, NotLicensed),
        (53003, BlockedByPolicy),
    ],
)
def test_each_aadsts_code_maps_to_its_typed_error(
    emu, tenant, make_client, code, error
):
    emu.control("POST", "faults/token", {"code": code, "tenant": tenant["id"]})

    with pytest.raises(error) as caught:
        make_client().get_token(tenant["id"], MDE)

    assert caught.value.codes == (code,)
    assert f"AADSTS{code}" in str(caught.value)


def test_unknown_tenant_is_tenant_not_found(emu, make_client):
    with pytest.raises(TenantNotFound) as caught:
        make_client().get_token(str(uuid.uuid4()), MDE)

    assert caught.value.codes == (90002,)


def test_malformed_tenant_never_reaches_a_url(emu, make_client):
    with pytest.raises(TenantNotFound) as caught:
        make_client().get_token("../../evil", MDE)

    assert caught.value.codes == (900023,)
    assert token_requests(emu) == []


def test_tenant_without_licence_is_not_licensed(emu, tenant, make_client):
    emu.control("PATCH", f"tenants/{tenant['id']}", {"licensed": ["graph", "xdr"]})

    with pytest.raises(NotLicensed) as caught:
        make_client().get_token(tenant["id"], MDE)

    assert caught.value.codes == (500011,)


def test_conditional_access_block_is_blocked_by_policy(emu, tenant, make_client):
    emu.control("PATCH", f"tenants/{tenant['id']}", {"ca_blocked": True})

    with pytest.raises(BlockedByPolicy) as caught:
        make_client().get_token(tenant["id"], MDE)

    assert caught.value.codes == (53003,)


def test_token_endpoint_429_is_throttled_with_retry_after(emu, tenant, make_client):
    emu.control("POST", "faults/token", {"status": 429, "retry_after": 7})

    with pytest.raises(Throttled) as caught:
        make_client().get_token(tenant["id"], MDE)

    assert caught.value.retry_after == 7.0
    assert caught.value.transient


def test_token_endpoint_5xx_is_unavailable(emu, tenant, make_client):
    emu.control("POST", "faults/token", {"status": 503, "retry_after": 3})

    with pytest.raises(Unavailable) as caught:
        make_client().get_token(tenant["id"], MDE)

    assert caught.value.retry_after == 3.0


def test_forget_tenant_lets_a_fixed_tenant_verify_at_once(emu, tenant, make_client):
    client = make_client()
    emu.control("POST", f"tenants/{tenant['id']}/revoke")
    with pytest.raises(ConsentRevoked):
        client.get_token(tenant["id"], MDE)

    emu.control("POST", f"tenants/{tenant['id']}/consent")
    # MSAL remembers the 400 for 60 s on this app object ...
    with pytest.raises(ConsentRevoked):
        client.get_token(tenant["id"], MDE)
    assert len(token_requests(emu, tenant["id"])) == 1
    client.forget_tenant(tenant["id"])  # ... until we drop it.

    assert "Alert.Read.All" in client.get_token(tenant["id"], MDE).roles


def test_forget_tenant_drops_tokens_with_old_roles(emu, tenant, make_client):
    client = make_client()
    client.get_token(tenant["id"], MDE)
    emu.control(
        "POST",
        f"tenants/{tenant['id']}/roles/remove",
        {"resource": "mde", "role": "Alert.ReadWrite.All"},
    )

    client.forget_tenant(tenant["id"])

    assert "Alert.ReadWrite.All" not in make_client().get_token(tenant["id"], MDE).roles


def test_no_secret_or_token_in_errors_or_logs(emu, tenant, make_client, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_client()
    token = client.get_token(tenant["id"], MDE)
    errors = []
    emu.control("POST", "app/secret/expire")
    client.drop_token(tenant["id"], MDE)
    for attempt in (
        lambda: client.get_token(tenant["id"], MDE),
        lambda: make_client(client_secret="wrong-" + emu.client_secret).get_token(
            tenant["id"], MDE
        ),
    ):
        with pytest.raises(schemas.MicrosoftError) as caught:
            attempt()
        errors.append(caught.value)

    text = caplog.text + "".join(f"{e!s}{e!r}{e.to_dict()}" for e in errors)
    text += repr(client)
    assert emu.client_secret not in text
    assert token.value not in text
    assert token.value.split(".")[1] not in text  # not even the payload


def test_a_client_needs_a_credential(client_options):
    options = dict(client_options, client_secret=None)

    with pytest.raises(ValueError, match="credential"):
        MicrosoftClient(**options)


def test_waiting_workers_share_a_failed_token_request(emu, tenant, make_client):
    emu.control("POST", f"tenants/{tenant['id']}/revoke")
    clients = [make_client(), make_client()]
    for client in clients:  # discovery done, so the threads race for the token only
        client._app(tenant["id"])
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def one(client) -> None:
        barrier.wait(timeout=30)
        try:
            client.get_token(tenant["id"], MDE)
            outcomes.append("token")
        except ConsentRevoked as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=one, args=(clients[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert outcomes == ["ConsentRevoked"] * 8
    # Waiters take the holder's error instead of asking again. (A thread that came
    # after the holder released its lock would ask once per client object; MSAL
    # remembers the 400 for the rest. Measured: 1.)
    assert len(token_requests(emu, tenant["id"])) <= 2

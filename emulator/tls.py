"""The emulator's own certificate authority, server certificate and app certificate.

Everything is written to the state directory and reused on the next start, so the
portal and the tests can trust one CA file (`ca.pem`) for as long as the folder lives.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_SANS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the CA certificate and the server's certificate and key (PEM)."""

    ca_path: Path
    cert_path: Path
    key_path: Path


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Partner Portal Emulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _validity(builder: x509.CertificateBuilder, days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return builder.not_valid_before(now - dt.timedelta(days=1)).not_valid_after(
        now + dt.timedelta(days=days)
    )


def ensure_server_tls(state_dir: str | Path) -> TlsFiles:
    """CA + server certificate for 127.0.0.1/localhost/::1, created once per folder."""
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(
        state / "ca.pem", state / "server-cert.pem", state / "server-key.pem"
    )
    ca_key_path = state / "ca-key.pem"
    if all(
        p.exists()
        for p in (files.ca_path, files.cert_path, files.key_path, ca_key_path)
    ):
        cert = x509.load_pem_x509_certificate(files.cert_path.read_bytes())
        if cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=1):
            return files

    # ECDSA P-256 keeps TLS handshakes cheap under benchmark load.
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("Partner Portal Emulator CA")
    ca_cert = (
        _validity(x509.CertificateBuilder(), 3650)
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName("localhost")] + [
        x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", "::1")
    ]
    server_cert = (
        # Chromium rejects leaf certificates valid for more than 398 days.
        _validity(x509.CertificateBuilder(), 390)
        .subject_name(_name("localhost"))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(ca_key_path, _key_pem(ca_key), private=True)
    _write(files.ca_path, ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(files.key_path, _key_pem(server_key), private=True)
    _write(files.cert_path, server_cert.public_bytes(serialization.Encoding.PEM))
    return files


def ensure_rsa_certificate(
    key_path: Path, cert_path: Path, common_name: str, days: int = 730
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """An RSA-2048 key and self-signed certificate, loaded or created at the paths."""
    if key_path.exists() and cert_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        return key, cert
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = _name(common_name)
    cert = (
        _validity(x509.CertificateBuilder(), days)
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .sign(key, hashes.SHA256())
    )
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def b64url(data: bytes, padded: bool = False) -> str:
    text = base64.urlsafe_b64encode(data).decode("ascii")
    return text if padded else text.rstrip("=")


def thumbprints(cert: x509.Certificate) -> tuple[str, str, str]:
    """(SHA-1 hex upper, SHA-1 base64url unpadded, SHA-256 base64url unpadded)."""
    der = cert.public_bytes(serialization.Encoding.DER)
    sha1 = hashlib.sha1(der).digest()  # noqa: S324 - x5t is defined as SHA-1
    sha256 = hashlib.sha256(der).digest()
    return sha1.hex().upper(), b64url(sha1), b64url(sha256)

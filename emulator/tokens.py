"""JWT signing key, JWKS, access/ID token minting and verification.

One RS256 key per state directory (`signing-key.pem` + self-signed `signing-cert.pem`),
published in the JWKS with `kid` = `x5t` = base64url SHA-1 of the certificate, as Entra
does. Claims follow reference section 4.2 (app-only v1.0 tokens for first-party APIs).
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import RSAAlgorithm

from emulator import tls

ACCESS_TOKEN_LIFETIME = 3900  # exp - iat seen on real app-only tokens
EXPIRES_IN = 3599  # what the token endpoint says

_REGION_SCOPE = {
    "us": "NA",
    "eu": "EU",
    "uk": "EU",
    "au": "OC",
    "swa": "AS",
    "ina": "AS",
}


@dataclass
class SigningKey:
    private_key: Any
    public_key: Any
    kid: str
    x5c: str
    jwk: dict


_KEYS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_DECODED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_DECODED_LOCK = threading.Lock()
_DECODED_MAX = 4096


def load_signing_key(state_dir: str | Path) -> SigningKey:
    """The state folder's RS256 key (created on first use)."""
    state = Path(state_dir)
    key, cert = tls.ensure_rsa_certificate(
        state / "signing-key.pem", state / "signing-cert.pem", "Emulator token signing"
    )
    _, x5t, _ = tls.thumbprints(cert)
    der = cert.public_bytes(serialization.Encoding.DER)
    jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update(
        {
            "kty": "RSA",
            "use": "sig",
            "kid": x5t,
            "x5t": x5t,
            "x5c": [base64.b64encode(der).decode("ascii")],
        }
    )
    return SigningKey(key, key.public_key(), x5t, jwk["x5c"][0], jwk)


def register(world, signing_key: SigningKey) -> None:
    """Attach the signing key to a World (kept outside the World object)."""
    _KEYS[world] = signing_key
    _DECODED[world] = OrderedDict()


def signing_key_for(world) -> SigningKey:
    return _KEYS[world]


def jwks(world, issuer: str | None = None) -> dict:
    """The JWKS document for the emulator's signing key."""
    key = dict(signing_key_for(world).jwk)
    if issuer:
        key["issuer"] = issuer
    return {"keys": [key]}


def _sign(world, claims: dict, v1_header: bool = True) -> str:
    key = signing_key_for(world)
    headers = {"typ": "JWT", "kid": key.kid}
    if v1_header:
        headers["x5t"] = key.kid
    return jwt.encode(claims, key.private_key, algorithm="RS256", headers=headers)


def _opaque(n: int = 16) -> str:
    return secrets.token_urlsafe(n)


def now_seconds(world) -> int:
    value = world.now()
    if hasattr(value, "timestamp"):
        value = value.timestamp()
    return int(value)


def sts_issuer(tenant_id: str) -> str:
    return f"https://sts.windows.net/{tenant_id}/"


def mint_app_token(
    world,
    *,
    tenant,
    resource,
    audience: str,
    client_id: str,
    app_display_name: str,
    certificate_auth: bool,
) -> tuple[str, dict]:
    """A v1.0 app-only access token for `resource` in `tenant`: (jwt, claims)."""
    iat = now_seconds(world)
    claims: dict[str, Any] = {
        "aud": audience,
        "iss": sts_issuer(tenant.id),
        "iat": iat,
        "nbf": iat,
        "exp": iat + ACCESS_TOKEN_LIFETIME,
        "aio": _opaque(24),
        "app_displayname": app_display_name,
        "appid": client_id,
        "appidacr": "2" if certificate_auth else "1",
        "idp": sts_issuer(tenant.id),
        "idtyp": "app",
        "oid": tenant.sp_object_id,
        "rh": "0." + _opaque(30),
    }
    roles = (
        sorted(tenant.granted_roles.get(resource.key, ())) if tenant.consented else []
    )
    if roles:
        claims["roles"] = roles
    claims.update(
        {
            "sub": tenant.sp_object_id,
            "tenant_region_scope": _REGION_SCOPE.get(tenant.region, "NA"),
            "tid": tenant.id,
            "uti": _opaque(16),
            "ver": "1.0",
        }
    )
    return _sign(world, claims), claims


def mint_user_tokens(
    world,
    *,
    tenant,
    user,
    client_id: str,
    scope: str,
    nonce: str | None,
    authority_base: str,
) -> dict:
    """Delegated access token (Graph, v1.0) and v2.0 ID token for a staff member."""
    iat = now_seconds(world)
    scp = (
        " ".join(
            s for s in scope.split() if s not in ("openid", "profile", "offline_access")
        )
        or "User.Read"
    )
    access = {
        "aud": "https://graph.microsoft.com",
        "iss": sts_issuer(tenant.id),
        "iat": iat,
        "nbf": iat,
        "exp": iat + ACCESS_TOKEN_LIFETIME,
        "acr": "1",
        "amr": ["pwd"],
        "app_displayname": world.app.display_name,
        "appid": client_id,
        "appidacr": "1",
        "idtyp": "user",
        "name": user.display_name,
        "oid": user.oid,
        "scp": scp,
        "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{client_id}:{user.oid}")),
        "tid": tenant.id,
        "unique_name": user.upn,
        "upn": user.upn,
        "uti": _opaque(16),
        "ver": "1.0",
    }
    id_claims = {
        "aud": client_id,
        "iss": f"{authority_base}/{tenant.id}/v2.0",
        "iat": iat,
        "nbf": iat,
        "exp": iat + 3600,
        "name": user.display_name,
        "oid": user.oid,
        "preferred_username": user.upn,
        "email": user.upn,
        "sub": access["sub"],
        "tid": tenant.id,
        "uti": _opaque(16),
        "ver": "2.0",
    }
    if nonce:
        id_claims["nonce"] = nonce
    return {
        "access_token": _sign(world, access),
        "id_token": _sign(world, id_claims, v1_header=False),
        "access_claims": access,
        "id_claims": id_claims,
    }


def decode_access_token(world, bearer: str | None) -> dict | None:
    """Verified claims of an emulator-issued token, or None (bad, foreign or expired).

    Accepts the raw JWT or an `Authorization` header value (`Bearer …`). Expiry is
    checked against the World clock, so advancing the clock expires tokens.
    """
    if not bearer:
        return None
    token = bearer.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    cache = _DECODED.get(world)
    claims = None
    if cache is not None:
        with _DECODED_LOCK:
            claims = cache.get(token)
    if claims is None:
        try:
            key = signing_key_for(world)
            claims = jwt.decode(
                token,
                key.public_key,
                algorithms=["RS256"],
                options={
                    "verify_aud": False,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except (jwt.PyJWTError, KeyError, ValueError):
            return None
        if cache is not None:
            with _DECODED_LOCK:
                cache[token] = claims
                while len(cache) > _DECODED_MAX:
                    cache.popitem(last=False)
    now = now_seconds(world)
    if not isinstance(claims.get("exp"), int) or claims["exp"] <= now:
        return None
    if isinstance(claims.get("nbf"), int) and claims["nbf"] > now + 300:
        return None
    return dict(claims)


def unverified_header(token: str) -> dict:
    return jwt.get_unverified_header(token)


def real_time() -> float:
    return time.time()

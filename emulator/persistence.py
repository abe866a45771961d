"""The saved world: `<state-dir>/world.json`, so a restarted emulator is the same cloud.

Microsoft's cloud does not forget a tenant's consent, the app's secrets or the alerts it
served because a process restarted; neither does `python -m emulator serve`. It saves
the world when it stops (and every `--save-every` seconds) and reloads it on start;
`--fresh` (or deleting the file) starts a new world.

Saved: the world's seed, start and clock, the app registration (secrets, redirect URIs,
required roles), the home tenant, customer tenants (consent and granted roles, licences,
flags, admins), staff, the control token, fault profiles and identity settings, machine
actions, and every alert and incident stream generated so far, exactly (streams not yet
generated are generated on first use, from the same seed and start). The
token-signing key, CA and certificates are files of the state folder already, so tokens
issued before a restart stay valid. Not saved: quotas, request counters and log,
half-finished sign-in flows and authorization codes (they expire within minutes at
Microsoft too).

The file is written to a temporary file beside it and renamed over it, so a crash leaves
the old or the new world, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from emulator import identity, streams
from emulator.faults import FaultProfile
from emulator.world import AppRegistration, Secret, StaffUser, Tenant, World

FILE_NAME = "world.json"
FORMAT = "microsoft-cloud-emulator-world"
VERSION = 1

_WORLD_SCALARS = (
    "seed",
    "start_us",
    "clock_offset",
    "frozen_at",
    "backlog_per_tenant",
    "alerts_per_minute",
    "control_token",
)


class UnreadableWorld(Exception):
    """The saved world cannot be loaded (damaged, or written by another version)."""


def world_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / FILE_NAME


def dump(world: World) -> dict[str, Any]:
    """The world as JSON-ready values (taken under its lock: one consistent moment)."""
    with world.lock:
        ident = identity.state(world)
        faults = world.faults
        return {
            "format": FORMAT,
            "version": VERSION,
            **{name: getattr(world, name) for name in _WORLD_SCALARS},
            "app": _app_state(world.app),
            "home_tenant": _tenant_state(world.home_tenant),
            "tenants": [_tenant_state(t) for t in world.tenants.values()],
            "tenant_index": dict(world.tenant_index),
            "staff": [vars(user).copy() for user in world.staff],
            "faults": {
                "global": (
                    faults.global_profile.to_dict() if faults.global_profile else None
                ),
                "tenants": {
                    tid: profile.to_dict()
                    for tid, profile in faults.tenant_profiles.items()
                },
            },
            "identity": {
                "token_fault": ident.token_fault,
                "consent_fault": ident.consent_fault,
                "not_consented_code": ident.not_consented_code,
            },
            "api_options": dict(world.api_options),
            "machine_actions": dict(world.machine_actions),
            "streams": {
                tid: stream.to_state() for tid, stream in world.streams.items()
            },
        }


def save(world: World, state_dir: str | Path) -> Path:
    """Writes the world to `<state_dir>/world.json` atomically; returns its path."""
    path = world_path(state_dir)
    with world.lock:
        # Serialised under the lock too: comments and payloads are shared lists.
        text = json.dumps(dump(world), separators=(",", ":"))
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{FILE_NAME}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        # Secrets and admin passwords are in it: readable by its owner only.
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return path


def read(state_dir: str | Path) -> dict[str, Any] | None:
    """The saved world's values, None if there is none; raises UnreadableWorld."""
    path = world_path(state_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UnreadableWorld(f"cannot read {path}: {exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UnreadableWorld(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UnreadableWorld(f"{path} is not a saved emulator world")
    if data.get("version") != VERSION:
        raise UnreadableWorld(
            f"{path} was saved in format version {data.get('version')!r}; "
            f"this emulator reads version {VERSION}"
        )
    return data


def set_aside(state_dir: str | Path) -> Path:
    """Moves an unreadable saved world aside (kept for a look); returns its new path."""
    path = world_path(state_dir)
    kept = path.with_name(f"{FILE_NAME}.unreadable")
    os.replace(path, kept)
    return kept


def restore(world: World, data: dict[str, Any]) -> None:
    """Makes `world` (fresh from `World.create`, same seed) the saved one.

    Raises UnreadableWorld when a value is missing or of the wrong kind."""
    try:
        _restore(world, data)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise UnreadableWorld(
            f"the saved world is incomplete or damaged ({exc!r})"
        ) from exc


def _restore(world: World, data: dict[str, Any]) -> None:
    with world.lock:
        for name in _WORLD_SCALARS:
            setattr(world, name, data[name])
        world.seed = int(world.seed)
        world.start_us = int(world.start_us)
        world.app = _app_from(data["app"])
        world.home_tenant = _tenant_from(data["home_tenant"])
        world.tenants = {t["id"]: _tenant_from(t) for t in data["tenants"]}
        for tenant in world.tenants.values():
            tenant.mcas_url = f"{world.base_url}/mcas/{tenant.mcas_portal_name}"
        world.tenant_index = {k: int(v) for k, v in data["tenant_index"].items()}
        world.staff = [StaffUser(**user) for user in data["staff"]]
        faults = data["faults"]
        world.faults.global_profile = (
            FaultProfile.from_dict(faults["global"]) if faults["global"] else None
        )
        world.faults.tenant_profiles = {
            tid: FaultProfile.from_dict(profile)
            for tid, profile in faults["tenants"].items()
        }
        ident = identity.state(world)
        ident.token_fault = data["identity"]["token_fault"]
        ident.consent_fault = data["identity"]["consent_fault"]
        ident.not_consented_code = int(data["identity"]["not_consented_code"])
        world.api_options.update(data["api_options"])
        world.machine_actions = dict(data["machine_actions"])
        world.streams = {
            tid: streams.TenantStream.from_state(world, world.tenants[tid], state)
            for tid, state in data["streams"].items()
        }


def _app_state(app: AppRegistration) -> dict[str, Any]:
    # Certificates are files of the state folder, read again on start.
    return {
        "client_id": app.client_id,
        "display_name": app.display_name,
        "secrets": [vars(secret).copy() for secret in app.secrets],
        "redirect_uris": list(app.redirect_uris),
        "required_roles": {k: list(v) for k, v in app.required_roles.items()},
    }


def _app_from(data: dict[str, Any]) -> AppRegistration:
    return AppRegistration(
        client_id=data["client_id"],
        display_name=data["display_name"],
        secrets=[Secret(**secret) for secret in data["secrets"]],
        redirect_uris=list(data["redirect_uris"]),
        required_roles={k: list(v) for k, v in data["required_roles"].items()},
    )


def _tenant_state(tenant: Tenant) -> dict[str, Any]:
    state = vars(tenant).copy()
    state["granted_roles"] = {k: sorted(v) for k, v in tenant.granted_roles.items()}
    state["licensed"] = sorted(tenant.licensed)
    return state


def _tenant_from(data: dict[str, Any]) -> Tenant:
    tenant = Tenant(**data)
    tenant.granted_roles = {k: set(v) for k, v in data["granted_roles"].items()}
    tenant.licensed = set(data["licensed"])
    return tenant

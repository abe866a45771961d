"""Helpers for the API tests: a world with a signing key, tokens, in-process calls."""

from __future__ import annotations

import json
import tempfile
from functools import lru_cache
from typing import Any

from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from emulator import tokens
from emulator.apis import dispatch
from emulator.world import RESOURCES, World

START = 1_767_000_000.0  # 2025-12-29T09:20:00Z; pins the streams for determinism


@lru_cache(maxsize=1)
def signing_key() -> tokens.SigningKey:
    return tokens.load_signing_key(tempfile.mkdtemp(prefix="emulator-test-keys-"))


def make_world(**options: Any) -> World:
    """A small deterministic world with a frozen clock and a signing key."""
    options.setdefault("tenants", 2)
    options.setdefault("backlog_per_tenant", 120)
    options.setdefault("alerts_per_minute", 0.5)
    world = World.create(seed=options.pop("seed", 3), start=START, **options)
    world.freeze_clock(at=START)
    tokens.register(world, signing_key())
    return world


def first_tenant(world: World):
    return next(iter(world.tenants.values()))


def token(
    world: World,
    tenant,
    api: str = "mde",
    roles: list[str] | None = None,
    audience: str | None = None,
) -> str:
    """An app-only token for ``api`` (resource key); ``roles`` overrides the grant."""
    resource = RESOURCES[api]
    saved = tenant.granted_roles
    if roles is not None:
        tenant.granted_roles = {**saved, api: set(roles)}
    try:
        jwt, _ = tokens.mint_app_token(
            world,
            tenant=tenant,
            resource=resource,
            audience=audience or resource.audience,
            client_id=world.app.client_id,
            app_display_name=world.app.display_name,
            certificate_auth=False,
        )
    finally:
        tenant.granted_roles = saved
    return jwt


class Reply:
    def __init__(self, response):
        self.response = response
        self.status = response.status_code
        self.headers = response.headers
        self.text = response.get_data(as_text=True)

    def json(self) -> Any:
        return json.loads(self.text)


def call(
    world: World,
    method: str,
    path: str,
    bearer: str | None = None,
    query: dict | None = None,
    body: Any = None,
    headers: dict | None = None,
) -> Reply:
    """One in-process API call through ``emulator.apis.dispatch``."""
    hdrs = dict(headers or {})
    if bearer:
        hdrs["Authorization"] = f"Bearer {bearer}"
    kwargs: dict[str, Any] = {}
    if body is not None:
        kwargs["data"] = json.dumps(body)
        kwargs["content_type"] = "application/json"
    builder = EnvironBuilder(
        path=path, method=method, query_string=query, headers=hdrs, **kwargs
    )
    request = Request(builder.get_environ())
    return Reply(dispatch(world, request))

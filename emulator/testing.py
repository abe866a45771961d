"""Helpers for tests: an in-process requests transport and a real HTTPS emulator.

adapter = InProcessAdapter.create(tmp_path)          # fast, no socket
session = requests.Session(); session.mount("https://emulator.test", adapter)

with run_emulator(tmp_path, tenants=2) as emu:       # real TLS on loopback
    session = emu.session()
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3 import HTTPResponse
from urllib3._collections import HTTPHeaderDict
from werkzeug.test import EnvironBuilder, run_wsgi_app

from emulator import app as emulator_app
from emulator.server import EmulatorServer

IN_PROCESS_BASE_URL = "https://emulator.test"


class InProcessAdapter(HTTPAdapter):
    """A requests transport adapter that calls the emulator's WSGI app directly."""

    def __init__(self, application: emulator_app.EmulatorApp):
        super().__init__()
        self.app = application
        self.world = application.world

    @classmethod
    def create(cls, state_dir: str | Path, **world_options) -> InProcessAdapter:
        world_options.setdefault("base_url", IN_PROCESS_BASE_URL)
        application, _, _ = emulator_app.create_app(state_dir, **world_options)
        return cls(application)

    def send(
        self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None
    ):
        url = requests.utils.urlparse(request.url)
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        builder = EnvironBuilder(
            path=url.path or "/",
            base_url=f"{url.scheme}://{url.netloc}",
            query_string=url.query,
            method=request.method,
            headers=dict(request.headers),
            data=body,
        )
        try:
            environ = builder.get_environ()
        finally:
            builder.close()
        app_iter, status, headers = run_wsgi_app(self.app, environ)
        try:
            content = b"".join(app_iter)
        finally:
            close = getattr(app_iter, "close", None)
            if close:
                close()
        code, _, reason = status.partition(" ")
        raw = HTTPResponse(
            body=io.BytesIO(content),
            headers=HTTPHeaderDict(list(headers.items())),
            status=int(code),
            reason=reason,
            preload_content=False,
            decode_content=False,
        )
        return self.build_response(request, raw)


def in_process_session(
    state_dir: str | Path, **world_options
) -> tuple[requests.Session, InProcessAdapter]:
    """A session whose `https://emulator.test` requests go to an in-process emulator."""
    adapter = InProcessAdapter.create(state_dir, **world_options)
    session = requests.Session()
    session.trust_env = False
    session.mount(IN_PROCESS_BASE_URL, adapter)
    return session, adapter


@dataclass
class RunningEmulator:
    """What a test needs to talk to a running emulator."""

    base_url: str
    ca_path: str
    client_id: str
    client_secret: str
    cert_path: str
    key_path: str
    cert_thumbprint: str
    control_token: str
    world: object
    app: emulator_app.EmulatorApp
    description: dict
    state_dir: Path

    def session(self) -> requests.Session:
        """requests.Session trusting only the emulator CA (env CA variables ignored)."""
        session = requests.Session()
        session.verify = self.ca_path
        session.trust_env = False
        return session

    def control(self, method: str, path: str, body: dict | None = None, **params):
        """Call `/_emulator/{path}` and return the JSON (raises on HTTP errors)."""
        with self.session() as session:
            response = session.request(
                method,
                f"{self.base_url}/_emulator/{path.lstrip('/')}",
                json=body,
                params=params or None,
                headers={"Authorization": f"Bearer {self.control_token}"},
                timeout=10,
            )
        response.raise_for_status()
        return response.json()

    def credential_certificate(self, form: str = "thumbprint") -> dict:
        """MSAL `client_credential` for the app certificate (thumbprint/public form)."""
        key = Path(self.key_path).read_text()
        if form == "thumbprint":
            return {"private_key": key, "thumbprint": self.cert_thumbprint}
        return {
            "private_key": key,
            "public_certificate": Path(self.cert_path).read_text(),
        }


@contextlib.contextmanager
def run_emulator(
    state_dir: str | Path, host: str = "127.0.0.1", **world_options
) -> Iterator[RunningEmulator]:
    """Serve a fresh emulator over HTTPS on a free loopback port for the block."""
    from emulator import tls

    tls_files = tls.ensure_server_tls(state_dir)
    server = EmulatorServer(
        host, 0, tls_files.cert_path, tls_files.key_path, threads=32
    )
    try:
        application, world, files = emulator_app.create_app(
            state_dir, base_url=server.base_url, **world_options
        )
        server.set_app(application)
        description = emulator_app.describe_world(world, files, server.base_url)
        emulator_app.write_description(files, description)
        server.start()
        yield RunningEmulator(
            base_url=server.base_url,
            ca_path=description["ca_path"],
            client_id=description["client_id"],
            client_secret=description["client_secret"],
            cert_path=description["cert_path"],
            key_path=description["key_path"],
            cert_thumbprint=description["cert_thumbprint"],
            control_token=description["control_token"],
            world=world,
            app=application,
            description=description,
            state_dir=Path(state_dir),
        )
    finally:
        server.stop()


def load_description(state_dir: str | Path) -> dict:
    """The `emulator.json` a running `python -m emulator serve` wrote."""
    return json.loads((Path(state_dir) / "emulator.json").read_text())

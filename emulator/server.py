"""Threaded HTTPS server (cheroot + the stdlib `ssl` module) for the emulator app."""

from __future__ import annotations

import threading

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter


def format_base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"https://{shown}:{port}"


class EmulatorServer:
    """An HTTPS server bound at construction, so the real port is known before start."""

    def __init__(
        self,
        host: str,
        port: int,
        cert_path: str,
        key_path: str,
        app=None,
        threads: int = 64,
    ) -> None:
        self._server = wsgi.Server(
            (host, port),
            app,
            numthreads=threads,
            server_name="emulator",
            request_queue_size=1024,
            timeout=30,
            shutdown_timeout=1,
            accepted_queue_timeout=5,
        )
        self._server.ssl_adapter = BuiltinSSLAdapter(str(cert_path), str(key_path))
        self._server.prepare()
        self.host = host
        self.port = self._server.bind_addr[1]
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return format_base_url(self.host, self.port)

    def set_app(self, app) -> None:
        self._server.wsgi_app = app

    def serve_forever(self) -> None:
        """Serve in this thread until `stop()` is called from elsewhere."""
        self._server.serve()

    def start(self) -> None:
        """Serve from a daemon thread."""
        self._thread = threading.Thread(
            target=self._server.serve, name="emulator-https", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)

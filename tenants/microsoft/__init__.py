"""The Microsoft client: tokens and the security APIs, configured from settings.

``get_client()`` returns this process's ``MicrosoftClient`` (built from the ``MS_*``
settings and ``REDIS_URL``; the emulator is just other base URLs and a CA bundle).
"""

from __future__ import annotations

import os
import threading

from tenants.microsoft.client import MicrosoftClient

_lock = threading.Lock()
_client: MicrosoftClient | None = None
_client_pid: int | None = None


def get_client() -> MicrosoftClient:
    """This process's client (rebuilt after a fork: pooled sockets are not shared)."""
    global _client, _client_pid
    with _lock:
        if _client is None or _client_pid != os.getpid():
            from django.conf import settings

            _client = MicrosoftClient(
                client_id=settings.MS_CLIENT_ID,
                client_secret=settings.MS_CLIENT_SECRET or None,
                client_cert_path=settings.MS_CLIENT_CERT_PATH or None,
                login_url=settings.MS_LOGIN_URL,
                defender_url=settings.MS_DEFENDER_URL,
                graph_url=settings.MS_GRAPH_URL,
                ca_bundle=settings.MS_CA_BUNDLE or None,
                redis_url=settings.REDIS_URL,
                emulator=settings.MS_EMULATOR,
            )
            _client_pid = os.getpid()
        return _client


def reset_client() -> None:
    """Forget the cached client (tests that change settings call this)."""
    global _client, _client_pid
    with _lock:
        if _client is not None and _client_pid == os.getpid():
            _client.close()
        _client = None
        _client_pid = None

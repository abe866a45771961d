"""Code that runs in child processes (spawned, so importable by name)."""

from __future__ import annotations

import threading
from typing import Any


def fetch_tokens_in_threads(
    options: dict[str, Any],
    tenant_id: str,
    resource: str,
    threads: int,
    barrier: Any,
    results: Any,
) -> None:
    """Start ``threads`` threads that meet at ``barrier`` (shared with the other
    processes), then each ask for the same token; put what each got on ``results``."""
    from tenants.microsoft.client import MicrosoftClient

    client = MicrosoftClient(**options)

    def one() -> None:
        barrier.wait(timeout=60)
        try:
            token = client.get_token(tenant_id, resource)
            results.put(("ok", token.tenant_id, token.value[-16:]))
        except Exception as exc:  # noqa: BLE001 - reported to the parent test
            results.put(("error", type(exc).__name__, str(exc)))

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    client.close()

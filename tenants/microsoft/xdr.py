"""Defender XDR's incidents API (``/api/incidents`` on the global Defender host).

The API documents no geo host (reference §7), so a tenant's region does not move it.

``XdrApi`` is one part of ``MicrosoftClient``; each method names the Microsoft docs
page it implements. Calls go through ``HttpMixin``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tenants.microsoft import sources
from tenants.microsoft.http import odata_datetime
from tenants.microsoft.schemas import Page


class XdrApi:
    """Defender XDR incidents (with their alerts)."""

    def list_xdr_incidents(
        self,
        tenant_id: str,
        *,
        since: datetime | None,
        top: int = 100,
        skip: int = 0,
        region: str | None = None,
    ) -> Page:
        """Defender XDR incidents (with their alerts) changed since ``since``.

        Implements "List incidents API in Microsoft Defender XDR" (GET /api/incidents):
        https://learn.microsoft.com/defender-xdr/api-list-incidents
        ``$top`` is at most 100; page with ``skip`` (most recent first).
        """
        if not 1 <= top <= 100:
            raise ValueError("top must be within 1..100 for Defender XDR incidents")
        base = self.defender_base(region, api=sources.XDR)
        params: dict[str, Any] = {}
        if since is not None:
            params["$filter"] = f"lastUpdateTime ge {odata_datetime(since)}"
        params.update({"$top": top, "$skip": skip or None})
        data = self._call(
            "GET",
            f"{base}/api/incidents",
            tenant_id=tenant_id,
            source=sources.get("xdr_incidents"),
            base=base,
            params=params,
        )
        return self._odata_page(data, base=base, full=top)

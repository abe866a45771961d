"""Defender for Endpoint's alerts API (``/api/alerts`` on the tenant's Defender geo).

``MdeApi`` is one part of ``MicrosoftClient``: list, read and update alerts; each
method names the Microsoft docs page it implements. Calls go through ``HttpMixin``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from tenants.microsoft import sources
from tenants.microsoft.http import odata_datetime
from tenants.microsoft.schemas import Page

_MDE_UPDATABLE = {"status", "assignedTo", "classification", "determination", "comment"}


class MdeApi:
    """Defender for Endpoint alerts."""

    def list_mde_alerts(
        self,
        tenant_id: str,
        *,
        since: datetime | None,
        top: int = 1000,
        skip: int = 0,
        region: str | None = None,
    ) -> Page:
        """Defender for Endpoint alerts changed since ``since``, with evidence.

        Implements "List Alerts API" (GET /api/alerts):
        https://learn.microsoft.com/defender-endpoint/api/get-alerts
        ``$top`` is at most 10,000; page with ``skip``. MDE may or may not send an
        ``@odata.nextLink``; ``has_more`` is true when one came or the page is full.
        """
        if not 1 <= top <= 10_000:
            raise ValueError("top must be within 1..10000 for Defender alerts")
        base = self.defender_base(region, api=sources.MDE)
        params: dict[str, Any] = {}
        if since is not None:
            params["$filter"] = f"lastUpdateTime ge {odata_datetime(since)}"
        params.update({"$top": top, "$skip": skip or None, "$expand": "evidence"})
        data = self._call(
            "GET",
            f"{base}/api/alerts",
            tenant_id=tenant_id,
            source=sources.get("mde_alerts"),
            base=base,
            params=params,
        )
        return self._odata_page(data, base=base, full=top)

    def get_mde_alert(
        self, tenant_id: str, alert_id: str, *, region: str | None = None
    ) -> dict[str, Any]:
        """One Defender for Endpoint alert (with evidence); ``NotFound`` if unknown.

        Implements "Get alert information by ID API" (GET /api/alerts/{id}):
        https://learn.microsoft.com/defender-endpoint/api/get-alert-info-by-id
        """
        base = self.defender_base(region, api=sources.MDE)
        return self._call(
            "GET",
            f"{base}/api/alerts/{quote(alert_id, safe='')}",
            tenant_id=tenant_id,
            source=sources.get("mde_alerts"),
            base=base,
        )

    def update_mde_alert(
        self,
        tenant_id: str,
        alert_id: str,
        *,
        changes: Mapping[str, Any],
        region: str | None = None,
    ) -> dict[str, Any]:
        """Change status / assignedTo / classification / determination / comment of a
        Defender for Endpoint alert; returns the updated alert.

        Implements "Update alert entity API" (PATCH /api/alerts/{id}):
        https://learn.microsoft.com/defender-endpoint/api/update-alert
        """
        unknown = set(changes) - _MDE_UPDATABLE
        if unknown or not changes:
            raise ValueError(f"MDE alerts accept only {sorted(_MDE_UPDATABLE)}")
        base = self.defender_base(region, api=sources.MDE)
        return self._call(
            "PATCH",
            f"{base}/api/alerts/{quote(alert_id, safe='')}",
            tenant_id=tenant_id,
            source=sources.get("mde_alerts"),
            base=base,
            body=dict(changes),
            write=True,
        )

"""Defender for Cloud Apps' alerts API (``/api/v1/alerts/`` on the tenant's portal).

``McasApi`` is one part of ``MicrosoftClient``; each method names the Microsoft docs
page it implements. Calls go through ``HttpMixin``; the tenant's portal URL is
checked by ``HttpMixin.mcas_base`` before a token is sent there.
"""

from __future__ import annotations

from typing import Any

from tenants.microsoft import sources
from tenants.microsoft.schemas import Page, Unavailable


class McasApi:
    """Defender for Cloud Apps alerts."""

    def list_mcas_alerts(
        self,
        tenant_id: str,
        *,
        mcas_url: str,
        since_ms: int | None,
        skip: int = 0,
        limit: int = 100,
        resolved_since_ms: int | None = None,
    ) -> Page:
        """Defender for Cloud Apps alerts from ``since_ms`` (epoch ms), oldest first.

        Implements "List alerts" (POST /api/v1/alerts/):
        https://learn.microsoft.com/defender-cloud-apps/api-alerts-list
        ``limit`` is at most 100; page with ``skip`` while ``hasNext``. The API has no
        update time: ``resolved_since_ms`` filters on ``resolutionDate`` instead, so a
        caller can see alerts closed since then.
        """
        if not 1 <= limit <= 100:
            raise ValueError("limit must be within 1..100 for Cloud Apps alerts")
        base = self.mcas_base(mcas_url)
        filters: dict[str, Any] = {}
        if since_ms is not None:
            filters["date"] = {"gte": int(since_ms)}
        if resolved_since_ms is not None:
            filters["resolutionDate"] = {"gte": int(resolved_since_ms)}
        data = self._call(
            "POST",
            f"{base}/api/v1/alerts/",
            tenant_id=tenant_id,
            source=sources.get("mcas_alerts"),
            base=base,
            body={
                "filters": filters,
                "skip": skip,
                "limit": limit,
                "sortField": "date",
                "sortDirection": "asc",
            },
        )
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise Unavailable("Defender for Cloud Apps sent a page without 'data'.")
        items = [item for item in data["data"] if isinstance(item, dict)]
        return Page(items=items, next_link=None, has_more=bool(data.get("hasNext")))

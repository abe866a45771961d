"""Microsoft Graph's security API (``/v1.0/security/alerts_v2`` and ``incidents``).

``GraphApi`` is one part of ``MicrosoftClient``: list alerts and incidents, read and
update alerts; each method names the Microsoft docs page it implements. Calls go
through ``HttpMixin``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from tenants.microsoft import sources
from tenants.microsoft.http import odata_datetime
from tenants.microsoft.schemas import Page

_GRAPH_UPDATABLE = {
    "status",
    "assignedTo",
    "classification",
    "determination",
    "customDetails",
}


class GraphApi:
    """Graph security alerts and incidents."""

    def list_graph_alerts(
        self,
        tenant_id: str,
        *,
        since: datetime | None,
        top: int = 1000,
        next_link: str | None = None,
        oldest_first: bool = False,
        skip: int = 0,
    ) -> Page:
        """Graph security alerts (alerts_v2) changed since ``since``.

        Implements "List alerts_v2" (GET /security/alerts_v2):
        https://learn.microsoft.com/graph/api/security-list-alerts_v2
        Pass the previous page's ``next_link`` to continue (``since``/``top`` are then
        ignored: the link carries them). ``oldest_first`` asks for
        ``$orderby=lastUpdateDateTime asc`` (not on the docs page, used in practice)
        so a caller can page by update time with a small ``skip`` for ties.
        """
        return self._graph_list(
            tenant_id,
            "alerts_v2",
            source=sources.get("graph_alerts"),
            since=since,
            top=top,
            max_top=1000,
            next_link=next_link,
            oldest_first=oldest_first,
            skip=skip,
        )

    def list_graph_incidents(
        self,
        tenant_id: str,
        *,
        since: datetime | None,
        top: int = 50,
        next_link: str | None = None,
        expand_alerts: bool = True,
        oldest_first: bool = False,
        skip: int = 0,
    ) -> Page:
        """Graph security incidents changed since ``since``, with their alerts.

        Implements "List incidents" (GET /security/incidents):
        https://learn.microsoft.com/graph/api/security-list-incidents
        ``$top`` is at most 50. ``expand_alerts=False`` drops ``$expand=alerts``
        (large tenants have seen persistent 500s with it).
        """
        return self._graph_list(
            tenant_id,
            "incidents",
            source=sources.get("graph_incidents"),
            since=since,
            top=top,
            max_top=50,
            next_link=next_link,
            expand="alerts" if expand_alerts else None,
            oldest_first=oldest_first,
            skip=skip,
        )

    def _graph_list(
        self,
        tenant_id: str,
        collection: str,
        *,
        source: sources.Source,
        since: datetime | None,
        top: int,
        max_top: int,
        next_link: str | None,
        expand: str | None = None,
        oldest_first: bool = False,
        skip: int = 0,
    ) -> Page:
        base = self.graph.url
        if next_link:
            url, params = next_link, None
        else:
            if not 1 <= top <= max_top:
                raise ValueError(f"top must be within 1..{max_top} for {source.label}")
            url = f"{base}/v1.0/security/{collection}"
            params = {"$top": top, "$skip": skip or None, "$expand": expand}
            if oldest_first:
                params["$orderby"] = "lastUpdateDateTime asc"
            if since is not None:
                params["$filter"] = f"lastUpdateDateTime ge {odata_datetime(since)}"
        data = self._call(
            "GET",
            url,
            tenant_id=tenant_id,
            source=source,
            base=base,
            params=params,
            extra_headers={"Prefer": "include-unknown-enum-members"},
        )
        return self._odata_page(data, base=base, full=None)

    def get_graph_alert(self, tenant_id: str, alert_id: str) -> dict[str, Any]:
        """One Graph security alert; ``NotFound`` if unknown.

        Implements "Get alert" (GET /security/alerts_v2/{alertId}):
        https://learn.microsoft.com/graph/api/security-alert-get
        """
        base = self.graph.url
        return self._call(
            "GET",
            f"{base}/v1.0/security/alerts_v2/{quote(alert_id, safe='')}",
            tenant_id=tenant_id,
            source=sources.get("graph_alerts"),
            base=base,
            extra_headers={"Prefer": "include-unknown-enum-members"},
        )

    def update_graph_alert(
        self, tenant_id: str, alert_id: str, *, changes: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Change status / assignedTo / classification / determination of a Graph
        security alert; returns the updated alert.

        Implements "Update alert" (PATCH /security/alerts_v2/{alertId}):
        https://learn.microsoft.com/graph/api/security-alert-update
        """
        unknown = set(changes) - _GRAPH_UPDATABLE
        if unknown or not changes:
            raise ValueError(f"Graph alerts accept only {sorted(_GRAPH_UPDATABLE)}")
        base = self.graph.url
        return self._call(
            "PATCH",
            f"{base}/v1.0/security/alerts_v2/{quote(alert_id, safe='')}",
            tenant_id=tenant_id,
            source=sources.get("graph_alerts"),
            base=base,
            body=dict(changes),
            write=True,
            extra_headers={"Prefer": "include-unknown-enum-members"},
        )

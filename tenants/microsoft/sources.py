"""The registry of Microsoft sources: what each source is, declared once.

A source is one kind of data the portal pulls from a customer tenant ("mde_alerts",
"graph_incidents", ...). Its ``Source`` entry holds everything the rest of the portal
needs to know about it: label, API and quota windows, token resource and roles, page
limit, paging strategy, how to list one page, what it needs from the tenant, the
payload shape its items have, how its rows are stored, and its triage write-back.

Rules: code elsewhere looks a source up here (``get``, ``SOURCES``, ``choices``,
``write_back_for``) and never branches on a source's key. Names here are plain strings
that other apps resolve through their own lookups: ``paging`` names a strategy of the
sync runner, ``payload`` a normaliser of ``alerts.normalize.NORMALISERS`` (a system
check fails when one is missing). Listers and write-backs are functions of the client
passed in, so this module imports no client module and no model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tenants.microsoft.schemas import Page

# --- what an entry is made of ---------------------------------------------------------


@dataclass(frozen=True)
class Api:
    """One Microsoft API as its quotas see it: the sources of one API share them."""

    name: str
    #: Documented limits per app per customer tenant: (window seconds, calls).
    quotas: tuple[tuple[int, int], ...]
    docs: str
    #: Whether the API documents geo hosts (``https://{geo}.api.security.microsoft.com``
    #: for each of ``DEFENDER_GEOS``); an API without them is always called on its
    #: global host, whatever the tenant's region.
    geo_hosts: bool = False


@dataclass(frozen=True)
class TenantFacts:
    """What the client needs to know of a tenant (``Tenant.facts`` builds it)."""

    tenant_id: str
    region: str | None = None
    mcas_url: str | None = None


@dataclass(frozen=True)
class PageRequest:
    """One page to list: items changed (or created) since ``since``, after ``skip``.

    ``resolved_since`` asks instead for items closed since then (sources paged
    "created_then_resolved"); ``expand`` asks for related items inline where the API
    offers it (Graph incidents' alerts)."""

    facts: TenantFacts
    since: datetime | None
    skip: int = 0
    top: int = 1
    expand: bool = True
    resolved_since: datetime | None = None


#: (client, request) -> one page.
Lister = Callable[[Any, PageRequest], Page]


@dataclass(frozen=True)
class WriteBack:
    """How triage changes reach a source: re-read the item, build the body in the
    API's own spelling, PATCH it."""

    #: (client, facts, provider id) -> the item as the API holds it now.
    read: Callable[[Any, TenantFacts, str], dict[str, Any]]
    #: (client, facts, provider id, body) -> the item after the change.
    write: Callable[[Any, TenantFacts, str, dict[str, Any]], dict[str, Any]]
    #: (portal changes, comment) -> the PATCH body ({} when nothing to write).
    body: Callable[[dict[str, str], str], dict[str, Any]]
    #: Whether the PATCH carries the comment (else the portal keeps it alone).
    takes_comment: bool


@dataclass(frozen=True)
class Source:
    """One kind of data we pull, and everything the portal needs to know about it."""

    key: str
    label: str
    api: Api
    resource: str  # the token audience (resource URI or app id)
    read_roles: tuple[str, ...]  # any one of these is enough to read
    write_roles: tuple[str, ...]  # any one of these is enough to write back
    docs: str
    page_limit: int  # the most items the API returns per page
    paging: str  # the sync runner's strategy, by name
    list_page: Lister
    payload: str  # the shape of one listed item, for alerts.normalize.NORMALISERS
    row_source: str  # the ``Alert.source`` / ``Incident.source`` value of its rows
    #: The row time the cursor follows (falls back to ``updated_at_source``).
    cursor_field: str = "updated_at_source"
    #: ``TenantFacts`` fields that must be set before the source is checked or synced.
    needs: tuple[str, ...] = ()
    needs_hint: str = ""
    write_back: WriteBack | None = None

    def unmet_needs(self, facts: TenantFacts) -> list[str]:
        """The tenant facts this source needs and the tenant lacks ([] when ready)."""
        return [name for name in self.needs if not getattr(facts, name)]

    def missing_roles(self, roles: Iterable[str], *, write: bool = False) -> list[str]:
        """The role to ask for when ``roles`` grant no access, else ``[]``. Compared
        case-insensitively (Microsoft's docs vary the case of Cloud Apps roles)."""
        granted = {r.lower() for r in roles}
        needed = self.write_roles if write else self.read_roles
        if any(r.lower() in granted for r in needed):
            return []
        return [needed[0]]

    def probe(self, client: Any, facts: TenantFacts) -> Page:
        """The smallest list call (one item, nothing expanded): proves read access."""
        unmet = self.unmet_needs(facts)
        if unmet:
            raise ValueError(f"{', '.join(unmet)} is required to probe {self.label}")
        return self.list_page(
            client, PageRequest(facts=facts, since=None, top=1, expand=False)
        )


# --- the registry ---------------------------------------------------------------------

SOURCES: dict[str, Source] = {}


def register(source: Source) -> Source:
    """Adds a source to the registry (its key must be new)."""
    if source.key in SOURCES:
        raise ValueError(f"Microsoft source {source.key!r} is already registered")
    SOURCES[source.key] = source
    return source


def unregister(key: str) -> None:
    """Removes a source (tests that registered one)."""
    SOURCES.pop(key, None)


def get(source: str | Source) -> Source:
    """The entry for a key; ``ValueError`` for an unknown one."""
    if isinstance(source, Source):
        return source
    try:
        return SOURCES[source]
    except KeyError:
        raise ValueError(f"unknown Microsoft source {source!r}") from None


def choices() -> list[tuple[str, str]]:
    """(key, label) of every source: the choices of ``Capability.source``."""
    return [(s.key, s.label) for s in SOURCES.values()]


def missing_roles(
    source: str | Source, roles: Iterable[str], *, write: bool = False
) -> list[str]:
    """``missing_roles("mde_alerts", [])`` -> ``["Alert.Read.All"]``."""
    return get(source).missing_roles(roles, write=write)


def writing_source(row_source: str) -> Source | None:
    """The source that writes back alerts stored with this ``Alert.source`` value
    (its API's quota counts the calls), or None when none can be written to."""
    for source in SOURCES.values():
        if source.row_source == row_source and source.write_back is not None:
            return source
    return None


def write_back_for(row_source: str) -> WriteBack | None:
    """The write-back of alerts stored with this ``Alert.source`` value, or None when
    no source of theirs can be written to."""
    source = writing_source(row_source)
    return source.write_back if source is not None else None


# --- the APIs -------------------------------------------------------------------------

#: The geographies Defender for Endpoint documents a host for,
#: ``https://{geo}.api.security.microsoft.com`` (reference §6.1: us, eu, uk, au, swa
#: in the stored include, ina and aea on newer pages): ``Tenant.region``'s choices.
DEFENDER_GEOS = ("us", "eu", "uk", "au", "swa", "ina", "aea")


def geo_choices() -> list[tuple[str, str]]:
    """(geo, label) of every Defender geo: the choices of ``Tenant.region``."""
    return [(geo, f"{geo} ({geo}.api.security.microsoft.com)") for geo in DEFENDER_GEOS]


MDE_RESOURCE = "https://api.securitycenter.microsoft.com"
XDR_RESOURCE = "https://api.security.microsoft.com"
GRAPH_RESOURCE = "https://graph.microsoft.com"
MCAS_RESOURCE = "05a65629-4c1b-48c1-a78b-804c4abdd4af"

MDE = Api(
    "mde",
    ((60, 100), (3600, 1500)),
    "https://learn.microsoft.com/defender-endpoint/api/get-alerts",
    geo_hosts=True,
)
# The XDR API's pages document api.security.microsoft.com only (reference §7): no
# geo host, so its calls go to the global host for every tenant.
XDR = Api(
    "xdr",
    ((60, 50), (3600, 1500)),
    "https://learn.microsoft.com/defender-xdr/api-list-incidents",
)
GRAPH = Api(  # alerts and incidents share one quota
    "graph",
    ((60, 150),),
    "https://learn.microsoft.com/graph/throttling-limits",
)
MCAS = Api(
    "mcas",
    ((60, 30),),
    "https://learn.microsoft.com/defender-cloud-apps/api-introduction",
)


def _epoch_ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


# --- write-back bodies, in each API's spelling ----------------------------------------

# The portal's status -> (Defender for Endpoint spelling, Graph spelling).
_STATUSES = {
    "new": ("New", "new"),
    "in_progress": ("InProgress", "inProgress"),
    "resolved": ("Resolved", "resolved"),
}
# Where Defender for Endpoint's older determination enum differs from Graph's.
_MDE_DETERMINATION = {
    "compromised_account": "CompromisedUser",
    "confirmed_activity": "ConfirmedUserActivity",
    "not_malicious": "Clean",
    "not_enough_data_to_validate": "InsufficientData",
}


def _camel(value: str) -> str:
    head, *rest = value.split("_")
    return head + "".join(word.capitalize() for word in rest)


def _pascal(value: str) -> str:
    return "".join(word.capitalize() for word in value.split("_"))


def _mde_body(changes: dict[str, str], comment: str) -> dict[str, Any]:
    """The PATCH body of "Update alert entity API" (PascalCase enums)."""
    body: dict[str, Any] = {}
    if "status" in changes:
        body["status"] = _STATUSES[changes["status"]][0]
    if "assigned_to" in changes:
        body["assignedTo"] = changes["assigned_to"] or None
    if "classification" in changes:
        body["classification"] = _pascal(changes["classification"])
    if "determination" in changes:
        value = changes["determination"]
        body["determination"] = _MDE_DETERMINATION.get(value, _pascal(value))
    if comment:
        body["comment"] = comment
    return body


def _graph_body(changes: dict[str, str], comment: str) -> dict[str, Any]:  # noqa: ARG001
    """The PATCH body of Graph's "Update alert" (camelCase enums, no comment)."""
    body: dict[str, Any] = {}
    if "status" in changes:
        body["status"] = _STATUSES[changes["status"]][1]
    if "assigned_to" in changes:
        body["assignedTo"] = changes["assigned_to"] or None
    if "classification" in changes:
        body["classification"] = _camel(changes["classification"])
    if "determination" in changes:
        body["determination"] = _camel(changes["determination"])
    return body


# --- the sources ----------------------------------------------------------------------

register(
    Source(
        key="mde_alerts",
        label="Defender for Endpoint alerts",
        api=MDE,
        resource=MDE_RESOURCE,
        read_roles=("Alert.Read.All", "Alert.ReadWrite.All"),
        write_roles=("Alert.ReadWrite.All",),
        docs="https://learn.microsoft.com/defender-endpoint/api/get-alerts",
        page_limit=10_000,
        paging="updated_oldest_first",
        list_page=lambda client, r: client.list_mde_alerts(
            r.facts.tenant_id,
            since=r.since,
            top=r.top,
            skip=r.skip,
            region=r.facts.region,
        ),
        payload="mde_alert",
        row_source="mde",
        write_back=WriteBack(
            read=lambda client, facts, item_id: client.get_mde_alert(
                facts.tenant_id, item_id, region=facts.region
            ),
            write=lambda client, facts, item_id, body: client.update_mde_alert(
                facts.tenant_id, item_id, changes=body, region=facts.region
            ),
            body=_mde_body,
            takes_comment=True,
        ),
    )
)
register(
    Source(
        key="xdr_incidents",
        label="Defender XDR incidents",
        api=XDR,
        resource=XDR_RESOURCE,
        read_roles=("Incident.Read.All", "Incident.ReadWrite.All"),
        write_roles=("Incident.ReadWrite.All",),
        docs="https://learn.microsoft.com/defender-xdr/api-list-incidents",
        page_limit=100,
        paging="newest_first_skip",
        list_page=lambda client, r: client.list_xdr_incidents(
            r.facts.tenant_id,
            since=r.since,
            top=r.top,
            skip=r.skip,
            region=r.facts.region,
        ),
        payload="xdr_incident",
        row_source="xdr",
    )
)
register(
    Source(
        key="graph_alerts",
        label="Graph security alerts",
        api=GRAPH,
        resource=GRAPH_RESOURCE,
        read_roles=("SecurityAlert.Read.All", "SecurityAlert.ReadWrite.All"),
        write_roles=("SecurityAlert.ReadWrite.All",),
        docs="https://learn.microsoft.com/graph/api/security-list-alerts_v2",
        page_limit=1000,
        paging="updated_oldest_first",
        list_page=lambda client, r: client.list_graph_alerts(
            r.facts.tenant_id,
            since=r.since,
            top=r.top,
            oldest_first=True,
            skip=r.skip,
        ),
        payload="graph_alert",
        row_source="graph",
        write_back=WriteBack(
            read=lambda client, facts, item_id: client.get_graph_alert(
                facts.tenant_id, item_id
            ),
            write=lambda client, facts, item_id, body: client.update_graph_alert(
                facts.tenant_id, item_id, changes=body
            ),
            body=_graph_body,
            takes_comment=False,
        ),
    )
)
register(
    Source(
        key="graph_incidents",
        label="Graph security incidents",
        api=GRAPH,
        resource=GRAPH_RESOURCE,
        read_roles=("SecurityIncident.Read.All", "SecurityIncident.ReadWrite.All"),
        write_roles=("SecurityIncident.ReadWrite.All",),
        docs="https://learn.microsoft.com/graph/api/security-list-incidents",
        page_limit=50,
        paging="updated_oldest_first",
        list_page=lambda client, r: client.list_graph_incidents(
            r.facts.tenant_id,
            since=r.since,
            top=r.top,
            oldest_first=True,
            skip=r.skip,
            expand_alerts=r.expand,
        ),
        payload="graph_incident",
        row_source="graph",
    )
)
register(
    Source(
        key="mcas_alerts",
        label="Defender for Cloud Apps alerts",
        api=MCAS,
        resource=MCAS_RESOURCE,
        # Cloud Apps' application permission scopes (reference §9.1, from
        # api-authentication-application.md): Investigation.read lists and fetches
        # alerts, Investigation.manage adds closing them, and Discovery.manage closes
        # alerts too. The docs do not say Discovery.read or Discovery.manage list
        # alerts, so neither is claimed as a read role: a tenant granting only them
        # is reported as missing Investigation.read.
        read_roles=("Investigation.read", "Investigation.manage"),
        write_roles=("Investigation.manage", "Discovery.manage"),
        docs="https://learn.microsoft.com/defender-cloud-apps/api-alerts-list",
        page_limit=100,
        paging="created_then_resolved",
        list_page=lambda client, r: client.list_mcas_alerts(
            r.facts.tenant_id,
            mcas_url=r.facts.mcas_url,
            since_ms=_epoch_ms(r.since),
            resolved_since_ms=_epoch_ms(r.resolved_since),
            skip=r.skip,
            limit=r.top,
        ),
        payload="mcas_alert",
        row_source="mcas",
        # The API filters on creation time only: new alerts are paged by it.
        cursor_field="created_at_source",
        needs=("mcas_url",),
        needs_hint="Enter the tenant's Cloud Apps API URL to read these alerts.",
    )
)

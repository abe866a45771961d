"""A source's calls taken from the tenant's quota of its API (``core.quotas``, with
the API's windows from the source registry; sources of one API, Graph alerts and
incidents, share them): the sync's, which never wait, and those a person waits on
(verification's probes, triage's write-back)."""

from core import quotas
from tenants.microsoft import sources

#: How long such a call waits for a slot before giving up with ``QuotaExhausted``.
MAX_WAIT_SECONDS = 5.0


def take_call(
    tenant_id: str, source: sources.Source, *, max_wait: float | None = None
) -> None:
    """One call of ``source``'s API from the tenant's quota, waiting at most
    ``max_wait`` seconds (``MAX_WAIT_SECONDS`` by default) for a slot; raises
    ``core.quotas.QuotaExhausted`` (nothing taken) when none frees by then."""
    api = source.api
    quotas.take_api_call(
        tenant_id,
        api.name,
        api.quotas,
        max_wait=MAX_WAIT_SECONDS if max_wait is None else max_wait,
        label=source.label,
    )


def reserve_api_call(tenant_id: str, source: str) -> float:
    """The sync's call: one from the (tenant, API) quota, 0 when allowed, else the
    seconds until a slot frees (nothing taken); the run stops and the next goes on."""
    api = sources.get(source).api
    return quotas.reserve_api_call(tenant_id, api.name, api.quotas)

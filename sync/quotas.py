"""The sync's client-side quotas: one call of a source's API taken from the tenant's
windows in ``core.quotas`` (the windows of ``Source.api.quotas`` in the source
registry; sources of one API, Graph alerts and incidents, share them). Verification
and triage take their calls from the same windows."""

from core import quotas as core_quotas
from tenants.microsoft import sources

QUOTA_MARGIN_SECONDS = core_quotas.QUOTA_MARGIN_SECONDS


def reserve_api_call(tenant_id: str, source: str) -> float:
    """Takes one call from the (tenant, API) quota: 0 when allowed, else the seconds
    until a slot frees (nothing taken); the run stops and the next goes on."""
    api = sources.get(source).api
    return core_quotas.reserve_api_call(tenant_id, api.name, api.quotas)

"""Shared by the sync tests: tenants on the emulator, and the reconciliation check."""

from __future__ import annotations

from alerts import normalize
from alerts.models import Alert, Incident
from sync import services as sync_services
from sync.models import SyncState
from tenants.models import Capability, Customer, Tenant

SOURCES = (
    "mde_alerts",
    "xdr_incidents",
    "graph_alerts",
    "graph_incidents",
    "mcas_alerts",
)


def verified_tenants(emulator, *, sources=SOURCES, count: int | None = None):
    """Our Tenant rows for the emulator's tenants: verified, every source connected,
    one SyncState per source (what onboarding leaves behind)."""
    from django.utils import timezone

    customer, _ = Customer.objects.get_or_create(name="Contoso group")
    tenants = []
    for info in emulator.description["tenants"][:count]:
        tenant = Tenant.objects.create(
            customer=customer,
            tenant_id=info["id"],
            display_name=info["name"],
            region=info["region"],
            mcas_url=f"{emulator.base_url}/mcas/{info['mcas_portal_name']}",
            state=Tenant.State.VERIFIED,
            verified_at=timezone.now(),
        )
        for source in sources:
            Capability.objects.create(
                tenant=tenant,
                source=source,
                status=Capability.Status.OK,
                checked_at=timezone.now(),
            )
        sync_services.ensure_sync_states(tenant=tenant, sources=sources)
        tenants.append(tenant)
    return tenants


def ground_truth(emulator, tenant_id: str, source: str) -> dict:
    """{id: update time} the emulator holds now, times parsed like ours."""
    truth = emulator.control("GET", "ground-truth", tenant=tenant_id, source=source)
    truth = truth["result"]
    return {key: normalize.parse_time(value) for key, value in truth.items()}


def differences(emulator, tenant: Tenant) -> dict[str, dict]:
    """What our rows get wrong compared with the emulator's ground truth, per source:
    ids missing, ids we hold that it has not, and rows older than its version.
    Duplicates cannot hide: alerts are unique per (tenant, source, provider id),
    incidents per (tenant, provider id) with each source's update time in `seen_in`."""
    tid = str(tenant.tenant_id)
    checks = {
        "mde": (Alert, "mde", "mde"),
        "graph": (Alert, "graph", "graph"),
        "xdr_alerts": (Alert, "xdr", "graph"),
        "xdr_incidents": (Incident, "xdr", "xdr"),
        "graph_incidents": (Incident, "graph", "incidents"),
    }
    report = {}
    for name, (model, source, truth_source) in checks.items():
        truth = ground_truth(emulator, tid, truth_source)
        if model is Incident:
            # One row per incident; each source's copy is its update time there.
            ours = {
                pid: normalize.parse_time(seen_in[source])
                for pid, seen_in in Incident.objects.filter(
                    tenant=tenant, seen_in__has_key=source
                ).values_list("provider_id", "seen_in")
            }
        else:
            ours = dict(
                model.objects.filter(tenant=tenant, source=source).values_list(
                    "provider_id", "updated_at_source"
                )
            )
        report[name] = {
            "missing": sorted(set(truth) - set(ours)),
            "extra": sorted(set(ours) - set(truth)),
            "stale": sorted(k for k in truth if k in ours and ours[k] != truth[k]),
        }
    truth = ground_truth(emulator, tid, "mcas")
    ours = set(
        Alert.objects.filter(tenant=tenant, source="mcas").values_list(
            "provider_id", flat=True
        )
    )
    report["mcas"] = {
        "missing": sorted(set(truth) - ours),
        "extra": sorted(ours - set(truth)),
        "stale": [],
    }
    return {name: diff for name, diff in report.items() if any(diff.values())}


def states(tenant: Tenant) -> list[SyncState]:
    return list(SyncState.objects.filter(tenant=tenant).order_by("source"))


def consented_emulator(tmp_path_factory, **options):
    """The emulator over HTTPS with every tenant consented (a context manager)."""
    from emulator.testing import run_emulator

    options.setdefault("tenants", 3)
    return run_emulator(tmp_path_factory.mktemp("emulator"), consented=True, **options)

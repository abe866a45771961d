"""Celery tasks: take ids, re-fetch, call one service, decide about retrying."""

import logging

from celery import shared_task
from django.conf import settings

from core import backoff
from tenants import services
from tenants.models import Tenant

logger = logging.getLogger(__name__)

# 20 tries, TENANT_VERIFY_RETRY_SECONDS (15 s) apart: about the five minutes a new
# consent may take to replicate at Microsoft.
VERIFY_MAX_RETRIES = 20


@shared_task(
    name="tenants.tasks.verify_tenant",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=VERIFY_MAX_RETRIES,
    soft_time_limit=120,
    time_limit=150,
)
def verify_tenant(self, tenant_pk: int) -> None:
    """Proves (again) that the portal can read this tenant; records what it can read."""
    tenant = Tenant.objects.select_related("customer").filter(pk=tenant_pk).first()
    if tenant is None or tenant.state == Tenant.State.PENDING:
        return
    try:
        services.verify_tenant_access(tenant=tenant)
    except services.ConsentNotYetReplicated as exc:
        if self.request.retries >= self.max_retries:
            services.mark_tenant_unverifiable(
                tenant=tenant,
                reason=f"Consent was reported, but Microsoft still refuses a token "
                f"after several minutes: {exc}",
            )
            return
        raise self.retry(countdown=settings.TENANT_VERIFY_RETRY_SECONDS) from None
    except services.TransientFailure as exc:
        if self.request.retries >= self.max_retries:
            services.mark_tenant_unverifiable(
                tenant=tenant, reason=f"Verification kept failing: {exc}"
            )
            return
        countdown = exc.retry_after or backoff.backoff_seconds(
            self.request.retries + 1, base=10, cap=300
        )
        raise self.retry(countdown=countdown) from None

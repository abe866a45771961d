"""Tenant health: per tenant and source, what the sync knows."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from sync import selectors


@never_cache
@require_GET
@login_required
def tenant_health(request: HttpRequest) -> HttpResponse:
    rows = selectors.tenant_health(user=request.user)
    return render(
        request,
        "sync/tenant_health.html",
        {"rows": rows, "halted": selectors.HALTED},
    )

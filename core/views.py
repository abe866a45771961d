"""The deployment's health endpoint."""

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from core import health


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 with each part's state when all are up, 503 naming the part that is down."""
    healthy, parts = health.overall()
    down = [name for name, part in parts.items() if part["status"] != "ok"]
    body = {"status": "ok" if healthy else "down", "down": down, "parts": parts}
    return JsonResponse(body, status=200 if healthy else 503)

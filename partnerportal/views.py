"""Project-level views: the health endpoint."""

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from partnerportal import health


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 with each part's state when all are up, 503 naming the part that is down."""
    healthy, parts = health.overall()
    down = [name for name, part in parts.items() if part["status"] != "ok"]
    body = {"status": "ok" if healthy else "down", "down": down, "parts": parts}
    return JsonResponse(body, status=200 if healthy else 503)


def admin_login(request: HttpRequest) -> HttpResponse:
    """Sends the admin's sign-in to the portal's one sign-in page."""
    return redirect_to_login(request.GET.get("next") or "/admin/")

"""Project-level views: the health endpoint and staff sign-in with Microsoft."""

from django.contrib.auth import login
from django.contrib.auth.views import redirect_to_login
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from partnerportal import health, staff_signin


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


@never_cache
@require_GET
def microsoft_login(request: HttpRequest) -> HttpResponse:
    """Starts "Sign in with Microsoft" for the MSSP's own tenant."""
    if not staff_signin.is_enabled():
        raise Http404("Microsoft sign-in is not configured.")
    next_url = request.GET.get("next", "")
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = "/"
    try:
        auth_uri = staff_signin.start_sign_in(
            session=request.session, next_url=next_url
        )
    except staff_signin.SignInFailed as failed:
        return _sign_in_failed(request, failed)
    return HttpResponseRedirect(auth_uri)


@never_cache
@require_GET
def microsoft_callback(request: HttpRequest) -> HttpResponse:
    """Where Microsoft sends staff back with an authorization code."""
    if not staff_signin.is_enabled():
        raise Http404("Microsoft sign-in is not configured.")
    params = {key: request.GET.get(key, "")[:4096] for key in list(request.GET)[:20]}
    try:
        user, next_url = staff_signin.finish_sign_in(
            session=request.session,
            params=params,
            remote_addr=request.META.get("REMOTE_ADDR"),
        )
    except staff_signin.SignInFailed as failed:
        return _sign_in_failed(request, failed)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return HttpResponseRedirect(next_url)


def _sign_in_failed(request: HttpRequest, failed) -> HttpResponse:
    return render(
        request,
        "registration/microsoft_failed.html",
        {"message": failed.public_message},
        status=400,
    )

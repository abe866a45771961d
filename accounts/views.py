"""Staff sign-in views: the admin's sign-in and "Sign in with Microsoft"."""

from django.contrib.auth import login
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from accounts import signin


def admin_login(request: HttpRequest) -> HttpResponse:
    """Sends the admin's sign-in to the portal's one sign-in page."""
    return redirect_to_login(request.GET.get("next") or "/admin/")


@never_cache
@require_GET
def microsoft_login(request: HttpRequest) -> HttpResponse:
    """Starts "Sign in with Microsoft" for the MSSP's own tenant."""
    if not signin.is_enabled():
        raise Http404("Microsoft sign-in is not configured.")
    next_url = request.GET.get("next", "")
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = "/"
    try:
        auth_uri = signin.start_sign_in(session=request.session, next_url=next_url)
    except signin.SignInFailed as failed:
        return _sign_in_failed(request, failed)
    return HttpResponseRedirect(auth_uri)


@never_cache
@require_GET
def microsoft_callback(request: HttpRequest) -> HttpResponse:
    """Where Microsoft sends staff back with an authorization code."""
    if not signin.is_enabled():
        raise Http404("Microsoft sign-in is not configured.")
    params = {key: request.GET.get(key, "")[:4096] for key in list(request.GET)[:20]}
    try:
        user, next_url = signin.finish_sign_in(
            session=request.session,
            params=params,
            remote_addr=request.META.get("REMOTE_ADDR"),
        )
    except signin.SignInFailed as failed:
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

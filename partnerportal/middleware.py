"""A Content-Security-Policy header on every response, the admin's pages included.

Alert text comes from customers' tenants and may be hostile. Templates escape it; this
header is the second wall: no inline script, no script or style from anywhere but the
portal itself, no framing, forms post only to the portal. Django 5.2 has no built-in
CSP, hence this small middleware.
"""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        # The overview chart is inline SVG in the page; images come only from us.
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware:
    """Sets the policy unless a view set its own (none does today)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", POLICY)
        return response


#: Where partnerportal/urls.py mounts the admin.
ADMIN_PREFIX = "/admin/"
#: Admin list lookups that hand the database a pattern of the visitor's choosing.
PATTERN_LOOKUPS = ("regex", "iregex")
#: The admin's search: each word is an OR over every search field (joins included),
#: so thousands of words make one query that runs for minutes.
ADMIN_SEARCH_MAX_CHARS = 200
ADMIN_SEARCH_MAX_WORDS = 8


class QueryGuardMiddleware:
    """Answers 400 to query strings no page can mean, before any view runs them:

    * a NUL character anywhere: PostgreSQL cannot hold one in text, so a filter
      carrying it would fail in the database (a 500), e.g. the admin's list filters;
    * `?field__regex=` (and `__iregex`) on the admin: it lets staff filter a list by
      any lookup on the model's own fields, and a pattern is either a 500 (when the
      database cannot compile it) or an unbounded scan of every alert. The search
      box and the filters cover what staff need;
    * an admin search longer than ADMIN_SEARCH_MAX_CHARS or words.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        for key, values in request.GET.lists():
            if "\x00" in key or any("\x00" in value for value in values):
                return HttpResponseBadRequest("A parameter holds a NUL character.")
        if not request.path.startswith(ADMIN_PREFIX):
            return self.get_response(request)
        if any(
            key.rsplit("__", 1)[-1].lower() in PATTERN_LOOKUPS for key in request.GET
        ):
            return HttpResponseBadRequest(
                "Pattern lookups are not offered here; use the search box or the "
                "filters."
            )
        search = request.GET.get("q", "")
        if (
            len(search) > ADMIN_SEARCH_MAX_CHARS
            or len(search.split()) > ADMIN_SEARCH_MAX_WORDS
        ):
            return HttpResponseBadRequest(
                f"Search for at most {ADMIN_SEARCH_MAX_WORDS} words "
                f"({ADMIN_SEARCH_MAX_CHARS} characters) at a time."
            )
        return self.get_response(request)

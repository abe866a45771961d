"""A Content-Security-Policy header on every response, the admin's pages included.

Alert text comes from customers' tenants and may be hostile. Templates escape it; this
header is the second wall: no inline script, no script or style from anywhere but the
portal itself, no framing, forms post only to the portal. Django 5.2 has no built-in
CSP, hence this small middleware.
"""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

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

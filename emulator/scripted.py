"""A customer's admin going through the emulator's consent pages, as a script.

The demo onboards its customers this way, and tests use it where a browser is not the
point: the same pages, forms and redirects a person clicks through.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import requests

_FLOW = re.compile(r'name="flow" value="([^"]+)"')


class ConsentScriptError(RuntimeError):
    """The consent pages did not answer as a person would see them answer."""


def follow_consent_link(
    session: requests.Session,
    url: str,
    *,
    upn: str,
    password: str,
    action: str = "accept",
    timeout: float = 10,
) -> str:
    """Opens `url`, signs in as the admin, presses Accept or Cancel.

    Returns the URL Microsoft (the emulator) sends the browser back to, without
    following it, so the caller decides how the callback is delivered.
    """
    if action not in ("accept", "cancel"):
        raise ValueError("action is 'accept' or 'cancel'")
    page = session.get(url, timeout=timeout, allow_redirects=False)
    _expect(page, 200, "the sign-in page")
    parts = urlsplit(url)
    segment = parts.path.split("/")[1]
    login = f"{parts.scheme}://{parts.netloc}/{segment}/login"
    consent_page = session.post(
        login,
        data={"flow": _flow(page), "login": upn, "passwd": password},
        timeout=timeout,
        allow_redirects=False,
    )
    _expect(consent_page, 200, "the consent page")
    answer = session.post(
        login,
        data={"flow": _flow(consent_page), "action": action},
        timeout=timeout,
        allow_redirects=False,
    )
    _expect(answer, 302, "the redirect back to the application")
    return answer.headers["Location"]


def _flow(response: requests.Response) -> str:
    match = _FLOW.search(response.text)
    if match is None:
        raise ConsentScriptError(f"no sign-in flow on the page: {response.url}")
    return match[1]


def _expect(response: requests.Response, status: int, what: str) -> None:
    if response.status_code != status:
        raise ConsentScriptError(
            f"{what} answered {response.status_code} instead of {status}: "
            f"{response.text[:300]}"
        )

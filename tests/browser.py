"""Real Chromium for browser tests: Debian's build, never a downloaded one."""

import base64
import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

requires_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian chromium is missing at /usr/bin/chromium (.ci/run installs it)",
)


def spki_hash(cert_path: str) -> str:
    """Chromium's pin for one server key (--ignore-certificate-errors-spki-list)."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@contextlib.contextmanager
def chromium(trusted_server_cert: str | None = None) -> Iterator:
    """A headless Chromium that trusts exactly the given server key, if any.

    TLS stays verified: pinning the emulator's key is narrower than trusting its CA,
    and nothing else is ignored.
    """
    from playwright.sync_api import sync_playwright

    args = list(ARGS)
    if trusted_server_cert:
        args.append(
            f"--ignore-certificate-errors-spki-list={spki_hash(trusted_server_cert)}"
        )
    # Playwright's sync API keeps an event loop in the test's thread; the ORM calls a
    # test makes between page steps are still plain synchronous calls. Only for the
    # block, so no subprocess (e.g. `check --deploy`) inherits the switch.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=args
            )
            try:
                yield browser
            finally:
                browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def screenshot(page, name: str) -> Path:
    """Saves a full-page screenshot under test-artifacts/screenshots/."""
    folder = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path

"""Demo data, made through the product's own services and the emulator's own pages.

Run by `manage.py demo` once web, worker and the emulator are up. Customers:
three onboarded and syncing, one whose consent link waits for a person to follow it,
one whose consent was revoked, one that Microsoft throttles.
"""

import json
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from emulator.scripted import follow_consent_link
from emulator.testing import load_description
from tenants import services
from tenants.models import Customer, Tenant

ANALYST_USERNAME = "analyst"
ANALYST_PASSWORD = "analyst-portal-2026"  # noqa: S105  (printed demo login)
ONBOARDED = 3  # tenants 0..2 sync; 3 waits; 4 is revoked; 5 is throttled


class Command(BaseCommand):
    help = "Create the demo's customers through the consent flow (needs the demo up)."

    def add_arguments(self, parser):
        parser.add_argument("--state-dir", default=".emulator")
        parser.add_argument("--portal-url", default="http://127.0.0.1:8000")
        parser.add_argument(
            "--summary",
            type=Path,
            default=None,
            help="also write the logins and the waiting consent link here (JSON)",
        )

    def handle(
        self, *args, state_dir: str, portal_url: str, summary: Path | None, **options
    ) -> None:
        emulator = load_description(state_dir)
        tenants = emulator["tenants"]
        if len(tenants) < ONBOARDED + 3:
            raise CommandError("the demo needs an emulator with at least 6 tenants")
        actor = get_user_model().objects.get(username="demo")
        session = requests.Session()
        session.verify = emulator["ca_path"]
        session.trust_env = False
        control = _Controls(session, emulator)
        # Microsoft only sends people back to registered addresses: the consent
        # callback and the staff sign-in callback of this portal.
        for path in ("/consent/callback", "/accounts/microsoft/callback"):
            control.post("app/redirect-uris", {"uri": f"{portal_url}{path}"})

        customers = [
            self.customer(actor, tenant) for tenant in tenants[: ONBOARDED + 3]
        ]
        for index in (0, 1, 2, 4, 5):
            self.onboard(session, portal_url, actor, customers[index], tenants[index])
        for index in (0, 1, 2, 4, 5):
            self.wait_verified(tenants[index]["id"])
        for index in (0, 1, 2):
            tenant = Tenant.objects.get(tenant_id=tenants[index]["id"])
            services.set_tenant_details(
                actor=actor,
                tenant=tenant,
                mcas_url=f"{emulator['base_url']}/mcas/"
                f"{tenants[index]['mcas_portal_name']}",
            )
            services.request_reverification(actor=actor, tenant=tenant)

        # Revoked: the customer removed our app; the next check notices (the demo
        # is ready once it has).
        control.post(f"tenants/{tenants[4]['id']}/revoke")
        services.request_reverification(
            actor=actor, tenant=Tenant.objects.get(tenant_id=tenants[4]["id"])
        )
        self.wait_for(
            tenants[4]["id"],
            lambda state: state == Tenant.State.REVOKED,
            "marked revoked",
        )
        # Throttled: Microsoft answers this tenant's API calls with 429 for a while.
        control.post(
            "faults/api",
            {
                "tenant": tenants[5]["id"],
                "profile": {"rates": {"429": 1.0}, "retry_after": 300},
            },
        )

        analyst = self.analyst(customers[0])
        ready = {
            "analyst": {
                "username": analyst.username,
                "password": ANALYST_PASSWORD,
                "customer": customers[0].name,
            },
            "waiting": None,
            "ca_path": emulator["ca_path"],
        }
        lines = [
            "\nDemo data ready.",
            f"  second staff member (sees only {customers[0].name}): "
            f"{analyst.username} / {ANALYST_PASSWORD}",
        ]
        # A restarted demo whose waiting customer was onboarded meanwhile has none.
        if not Tenant.objects.filter(tenant_id=tenants[ONBOARDED]["id"]).exists():
            _, waiting_url = services.create_consent_link(
                actor=actor, customer=customers[ONBOARDED]
            )
            admin = tenants[ONBOARDED]["admins"][0]
            ready["waiting"] = {
                "customer": customers[ONBOARDED].name,
                "url": waiting_url,
                "upn": admin["upn"],
                "password": admin["password"],
            }
            lines.append(
                f"  {customers[ONBOARDED].name} has a consent link waiting: "
                f"{waiting_url}"
            )
        if summary is not None:
            summary.write_text(json.dumps(ready, indent=2))
            summary.chmod(0o600)
        self.stdout.write(self.style.SUCCESS("\n".join(lines)))

    def customer(self, actor, tenant: dict) -> Customer:
        existing = Customer.objects.filter(name=tenant["name"]).first()
        if existing:
            return existing
        return services.add_customer(
            actor=actor,
            name=tenant["name"],
            contact_email=f"it@{tenant['domain']}",
            expected_tenant=tenant["id"],
        )

    def onboard(self, session, portal_url: str, actor, customer, tenant: dict) -> None:
        """The customer's admin follows the link and Microsoft sends them back to us."""
        if Tenant.objects.filter(tenant_id=tenant["id"]).exists():
            return
        _, url = services.create_consent_link(actor=actor, customer=customer)
        admin = tenant["admins"][0]
        location = follow_consent_link(
            session, url, upn=admin["upn"], password=admin["password"]
        )
        callback = urlsplit(location)
        response = session.get(
            f"{portal_url}{callback.path}?{callback.query}",
            timeout=30,
            allow_redirects=False,
        )
        if response.status_code != 302:
            raise CommandError(
                f"the portal refused the consent callback for {customer.name}: "
                f"{response.status_code}"
            )

    def wait_verified(self, tenant_id: str) -> None:
        self.wait_for(
            tenant_id, lambda state: state != Tenant.State.CONSENTED, "verified"
        )

    def wait_for(self, tenant_id: str, done, what: str, timeout: float = 90) -> None:
        """Until `done(the tenant's state)`: the worker's checks run meanwhile."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done(Tenant.objects.get(tenant_id=tenant_id).state):
                return
            time.sleep(0.5)
        raise CommandError(f"tenant {tenant_id} was not {what} in {timeout:.0f} s")

    def analyst(self, customer: Customer):
        user, created = get_user_model().objects.get_or_create(
            username=ANALYST_USERNAME, defaults={"is_staff": False}
        )
        if created:
            user.set_password(ANALYST_PASSWORD)
            user.save()
        customer.staff.add(user)
        return user


class _Controls:
    """The emulator's scenario controls (the demo plays Microsoft's side too)."""

    def __init__(self, session: requests.Session, emulator: dict) -> None:
        self.session = session
        self.base = f"{emulator['base_url']}/_emulator"
        self.headers = {"Authorization": f"Bearer {emulator['control_token']}"}

    def post(self, path: str, body: dict | None = None) -> dict:
        response = self.session.post(
            f"{self.base}/{path}", json=body or {}, headers=self.headers, timeout=10
        )
        response.raise_for_status()
        return response.json()

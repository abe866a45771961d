"""factory-boy factories for the dashboard's rows (until sync fills them for real)."""

import uuid
from datetime import timedelta

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from alerts.models import Alert, AlertStatus, Incident, Severity
from sync.models import SyncState
from tenants.models import Capability, Customer, Tenant


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"analyst{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@mssp.example")
    password = factory.django.Password("pw-analyst-12345")


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Customer {n}")

    @factory.post_generation
    def staff(self, create, extracted, **kwargs):
        if create and extracted:
            self.staff.add(*extracted)


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant

    customer = factory.SubFactory(CustomerFactory)
    tenant_id = factory.LazyFunction(uuid.uuid4)
    display_name = factory.Sequence(lambda n: f"tenant-{n}.example")
    state = Tenant.State.VERIFIED


class CapabilityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Capability

    tenant = factory.SubFactory(TenantFactory)
    source = "mde_alerts"
    status = Capability.Status.OK
    checked_at = factory.LazyFunction(timezone.now)


class SyncStateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SyncState

    tenant = factory.SubFactory(TenantFactory)
    source = "mde_alerts"
    last_success_at = factory.LazyFunction(timezone.now)


class IncidentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Incident

    tenant = factory.SubFactory(TenantFactory)
    source = Incident.Source.XDR
    provider_id = factory.Sequence(lambda n: str(1000 + n))
    title = factory.Sequence(lambda n: f"Multi-stage incident {n}")
    severity = Severity.HIGH
    status = "active"
    updated_at_source = factory.LazyFunction(timezone.now)
    raw = factory.LazyFunction(dict)


class AlertFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Alert

    tenant = factory.SubFactory(TenantFactory)
    source = Alert.Source.MDE
    provider_id = factory.Sequence(lambda n: f"da{n:016d}_1")
    title = factory.Sequence(lambda n: f"Suspicious PowerShell command line {n}")
    description = "A process ran an encoded command."
    severity = Severity.MEDIUM
    status = AlertStatus.NEW
    category = "Execution"
    created_at_source = factory.LazyFunction(
        lambda: timezone.now() - timedelta(hours=2)
    )
    updated_at_source = factory.LazyFunction(
        lambda: timezone.now() - timedelta(minutes=5)
    )
    evidence = factory.LazyFunction(
        lambda: [{"type": "device", "name": "ws-001.contoso.example", "detail": ""}]
    )
    entities_text = "ws-001.contoso.example alice 10.0.0.5"
    portal_url = factory.LazyAttribute(
        lambda a: (
            f"https://security.microsoft.com/alerts/{a.provider_id}"
            f"?tid={a.tenant.tenant_id}"
        )
    )
    raw = factory.LazyAttribute(lambda a: {"id": a.provider_id, "title": a.title})

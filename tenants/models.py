"""Customers of the MSSP and the Microsoft Entra tenants they consented for."""

import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.contrib.postgres.functions import RandomUUID
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models import Func, Q

from tenants import search


class CustomerQuerySet(models.QuerySet):
    def visible_to(self, user) -> "CustomerQuerySet":
        """Customers this staff member may see: all for superusers, else assigned."""
        if not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_superuser:
            return self
        return self.filter(
            Q(staff=user) | Q(staff_groups__in=user.groups.all())
        ).distinct()


class Customer(models.Model):
    """A customer organisation of the MSSP."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200, unique=True)
    contact_email = models.EmailField(blank=True)
    expected_tenant = models.CharField(
        max_length=255,
        blank=True,
        help_text="Tenant ID (GUID) or primary domain, when known before consent.",
    )
    staff = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="customers"
    )
    staff_groups = models.ManyToManyField(Group, blank=True, related_name="customers")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = CustomerQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Tenant(models.Model):
    """A customer's Microsoft Entra tenant that consented to the partner app."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        CONSENTED = "consented", "Consented, checking access"
        VERIFIED = "verified", "Verified"
        REVOKED = "revoked", "Consent revoked"
        FAILING = "failing", "Failing"

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    customer = models.ForeignKey(
        Customer, on_delete=models.PROTECT, related_name="tenants"
    )
    tenant_id = models.UUIDField(unique=True, help_text="Microsoft Entra tenant ID.")
    display_name = models.CharField(max_length=200, blank=True)
    primary_domain = models.CharField(max_length=255, blank=True)
    region = models.CharField(
        max_length=8, blank=True, help_text="Defender API geography (us, eu, uk, ...)."
    )
    mcas_url = models.URLField(
        "Cloud Apps API URL",
        blank=True,
        help_text="https://<tenant>.<region>.portal.cloudappsecurity.com, from the "
        "customer's Defender portal (Settings, Cloud Apps, About).",
    )
    state = models.CharField(max_length=16, choices=State, default=State.PENDING)
    last_error = models.TextField(blank=True)
    consented_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["customer__name", "display_name"]

    def __str__(self) -> str:
        return self.display_name or str(self.tenant_id)


class ConsentLink(models.Model):
    """An admin-consent link sent to a customer; its state is stored only hashed."""

    class Outcome(models.TextChoices):
        WAITING = "waiting", "Waiting for the customer"
        CONSENTED = "consented", "Consented"
        REFUSED = "refused", "Refused by the customer's admin"
        FAILED = "failed", "Microsoft reported an error"
        REJECTED = "rejected", "Rejected: the callback did not match"

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="consent_links"
    )
    state_hash = models.CharField(max_length=64, unique=True, editable=False)
    pinned_tenant = models.UUIDField(
        null=True, blank=True, help_text="Only this tenant may consent through it."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome, default=Outcome.WAITING)
    outcome_detail = models.TextField(blank=True)
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Consent link for {self.customer} ({self.get_outcome_display()})"

    @property
    def is_open(self) -> bool:
        from django.utils import timezone

        return (
            self.used_at is None
            and self.withdrawn_at is None
            and self.expires_at > timezone.now()
        )


class Capability(models.Model):
    """What the portal proved it can read from one source of one tenant."""

    class Source(models.TextChoices):
        MDE_ALERTS = "mde_alerts", "Defender for Endpoint alerts"
        XDR_INCIDENTS = "xdr_incidents", "Defender XDR incidents"
        GRAPH_ALERTS = "graph_alerts", "Graph security alerts"
        GRAPH_INCIDENTS = "graph_incidents", "Graph security incidents"
        MCAS_ALERTS = "mcas_alerts", "Defender for Cloud Apps alerts"

    class Status(models.TextChoices):
        OK = "ok", "Connected"
        MISSING_PERMISSION = "missing_permission", "Missing permission"
        NOT_LICENSED = "not_licensed", "Not licensed or not provisioned"
        NOT_CONFIGURED = "not_configured", "Not configured"
        ERROR = "error", "Error"

    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="capabilities"
    )
    source = models.CharField(max_length=32, choices=Source)
    status = models.CharField(max_length=32, choices=Status)
    detail = models.TextField(blank=True)
    granted_roles = models.JSONField(default=list, blank=True)
    missing_roles = models.JSONField(default=list, blank=True)
    checked_at = models.DateTimeField()

    class Meta:
        ordering = ["tenant", "source"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "source"], name="capability_unique_tenant_source"
            )
        ]

    def __str__(self) -> str:
        return f"{self.tenant}: {self.get_source_display()} {self.get_status_display()}"


class AuditEvent(models.Model):
    """Who did what to which customer or tenant, and when; never edited."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Empty for the system and for anonymous visitors.",
    )
    action = models.CharField(max_length=64)
    customer = models.ForeignKey(
        Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    detail = models.TextField(blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.action}"


class Alarm(models.Model):
    """A problem that concerns every tenant at once, e.g. our partner credential."""

    class Kind(models.TextChoices):
        PARTNER_CREDENTIAL = "partner_credential", "Partner app credential"

    kind = models.CharField(max_length=32, choices=Kind, unique=True)
    message = models.TextField()
    raised_at = models.DateTimeField()
    cleared_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.message}"

    @property
    def is_active(self) -> bool:
        return self.cleared_at is None


# --- Sync -----------------------------------------------------------------------------


class SyncState(models.Model):
    """Where the sync of one source of one tenant stands: cursor, lease, backoff.

    The cursor is the newest source update time seen in the data itself, never the
    worker's clock; each run re-reads a small overlap window before it.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="syncs")
    source = models.CharField(max_length=32, choices=Capability.Source)
    cursor = models.DateTimeField(null=True, blank=True)
    backfill_done = models.BooleanField(default=False)
    next_due_at = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    throttled_until = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    # Where an unfinished pass resumes, per source (newest-first paging of XDR
    # incidents; the resolution cursor of Cloud Apps alerts).
    paging = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["tenant", "source"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "source"], name="syncstate_unique_tenant_source"
            )
        ]
        indexes = [models.Index(fields=["next_due_at"], name="syncstate_due")]

    def __str__(self) -> str:
        return f"{self.tenant}: {self.get_source_display()}"


class SyncRun(models.Model):
    """One run of a sync, for ops: what it fetched, how long, and how it ended."""

    class Outcome(models.TextChoices):
        RUNNING = "running", "Running"
        OK = "ok", "Finished"
        MORE = "more", "Finished a batch; more pages remain"
        THROTTLED = "throttled", "Throttled"
        FAILED = "failed", "Failed"

    sync = models.ForeignKey(SyncState, on_delete=models.CASCADE, related_name="runs")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome, default=Outcome.RUNNING)
    pages = models.PositiveIntegerField(default=0)
    fetched = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["sync", "-started_at"], name="syncrun_recent")]

    def __str__(self) -> str:
        return f"{self.sync} at {self.started_at:%Y-%m-%d %H:%M:%S}: {self.outcome}"

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


# --- Alerts and incidents -------------------------------------------------------------


class Severity(models.TextChoices):
    """Normalised across sources; ordered by `SEVERITY_RANK`."""

    HIGH = "high", "High"
    MEDIUM = "medium", "Medium"
    LOW = "low", "Low"
    INFORMATIONAL = "informational", "Informational"
    UNKNOWN = "unknown", "Unknown"


SEVERITY_RANK = {"high": 4, "medium": 3, "low": 2, "informational": 1, "unknown": 0}


class AlertStatus(models.TextChoices):
    NEW = "new", "New"
    IN_PROGRESS = "in_progress", "In progress"
    RESOLVED = "resolved", "Resolved"
    UNKNOWN = "unknown", "Unknown"


class Incident(models.Model):
    """An incident from Defender XDR or Graph, as last synced."""

    class Source(models.TextChoices):
        XDR = "xdr", "Defender XDR"
        GRAPH = "graph", "Graph security"

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="incidents"
    )
    source = models.CharField(max_length=16, choices=Source)
    provider_id = models.CharField(max_length=128)
    title = models.TextField(blank=True)
    severity = models.CharField(
        max_length=16, choices=Severity, default=Severity.UNKNOWN
    )
    status = models.CharField(max_length=32, blank=True)
    classification = models.CharField(max_length=64, blank=True)
    determination = models.CharField(max_length=64, blank=True)
    assigned_to = models.CharField(max_length=255, blank=True)
    created_at_source = models.DateTimeField(null=True, blank=True)
    updated_at_source = models.DateTimeField()
    portal_url = models.URLField(max_length=500, blank=True)
    raw = models.JSONField()
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_synced_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "source", "provider_id"],
                name="incident_unique_tenant_source_provider_id",
            )
        ]

    def __str__(self) -> str:
        return self.title or f"Incident {self.provider_id}"


class SearchDocument(Func):
    """The expression migration 0007 generated `Alert.search_vector` with, in the
    database (to_tsvector's parser, which also splits a hash at what reads as a
    number such as `82e6`). Since 0011 the words come from `tenants.search`."""

    template = (
        "to_tsvector('simple'::regconfig, "
        "regexp_replace(%(expressions)s, '[^[:alnum:]]+', ' ', 'g'))"
    )
    arg_joiner = " || ' ' || "
    output_field = SearchVectorField()


class Alert(models.Model):
    """One alert from one source, normalised for the queue, with its raw payload.

    Unique per (tenant, source, provider id); a newer source update time wins and an
    older copy never overwrites a newer one. The same alert seen through two sources
    (an MDE alert is also a Graph alert) is linked through `duplicate_of`.
    """

    class Source(models.TextChoices):
        MDE = "mde", "Defender for Endpoint"
        XDR = "xdr", "Defender XDR"
        GRAPH = "graph", "Graph security"
        MCAS = "mcas", "Defender for Cloud Apps"

    # The database makes the codes of the alerts the sync COPYs in (faster there).
    code = models.UUIDField(
        default=uuid.uuid4, db_default=RandomUUID(), unique=True, editable=False
    )
    # No index of its own: the unique constraint and `alert_tenant` lead with it.
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="alerts", db_index=False
    )
    source = models.CharField(max_length=16, choices=Source)
    provider_id = models.CharField(max_length=128)
    title = models.TextField(blank=True)
    description = models.TextField(blank=True)
    severity = models.CharField(
        max_length=16, choices=Severity, default=Severity.UNKNOWN
    )
    status = models.CharField(
        max_length=16, choices=AlertStatus, default=AlertStatus.UNKNOWN
    )
    category = models.CharField(max_length=128, blank=True)
    classification = models.CharField(max_length=64, blank=True)
    determination = models.CharField(max_length=64, blank=True)
    assigned_to = models.CharField(max_length=255, blank=True)
    created_at_source = models.DateTimeField(null=True, blank=True)
    updated_at_source = models.DateTimeField()
    first_activity_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    incident_provider_id = models.CharField(max_length=128, blank=True)
    incident = models.ForeignKey(
        Incident,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="alerts",
        db_index=False,  # indexed where set: `alert_incident_fk`
    )
    devices = models.JSONField(default=list, blank=True)
    users = models.JSONField(default=list, blank=True)
    evidence = models.JSONField(
        default=list,
        blank=True,
        help_text="Normalised evidence rows (type, name, ...).",
    )
    evidence_summary = models.CharField(max_length=500, blank=True)
    # Host names, user names, file hashes, IPs and URLs, for free-text search.
    entities_text = models.TextField(blank=True)
    portal_url = models.URLField(max_length=500, blank=True)
    duplicate_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,  # indexed where set: `alert_duplicate_fk`
    )
    raw = models.JSONField()
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_synced_at = models.DateTimeField(auto_now=True)
    # The words of title, description and entities with their positions
    # (tenants.search), written with them: by the sync (document_bytes) and by
    # save() (document).
    search_vector = SearchVectorField(null=True, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "source", "provider_id"],
                name="alert_unique_tenant_source_provider_id",
            )
        ]
        indexes = [
            GinIndex(
                fields=["search_vector"],
                condition=Q(duplicate_of__isnull=True),
                name="alert_queue_search",
            ),
            # A staff member's severity counts: their tenants' rows of one severity,
            # not every row of that severity filtered by tenant (a severity rare in
            # their scope read the whole severity).
            models.Index(
                fields=["tenant", "severity"],
                include=["status"],
                condition=Q(duplicate_of__isnull=True),
                name="alert_queue_tenant_severity",
            ),
            models.Index(fields=["-updated_at_source", "-id"], name="alert_recent"),
            models.Index(fields=["tenant", "-updated_at_source"], name="alert_tenant"),
            models.Index(
                fields=["tenant", "incident_provider_id"], name="alert_incident_id"
            ),
            # Most alerts have no incident row or are primaries: an index of the
            # links alone costs a new alert nothing (and serves the same lookups).
            models.Index(
                fields=["incident"],
                condition=Q(incident__isnull=False),
                name="alert_incident_fk",
            ),
            models.Index(
                fields=["duplicate_of"],
                condition=Q(duplicate_of__isnull=False),
                name="alert_duplicate_fk",
            ),
        ]

    def __str__(self) -> str:
        return self.title or f"Alert {self.provider_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.search_vector = search.document(
            *(getattr(self, name) for name in SEARCHED_FIELDS)
        )
        fields = kwargs.get("update_fields")
        if fields is not None and set(fields) & set(SEARCHED_FIELDS):
            kwargs["update_fields"] = {*fields, "search_vector"}
        super().save(*args, **kwargs)


#: The alert fields whose words are searched, in the order of their positions.
SEARCHED_FIELDS = ("title", "description", "entities_text")


class AlertChange(models.Model):
    """What changed in an alert and when, as seen by sync or triage."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="changes")
    seen_at = models.DateTimeField(auto_now_add=True)
    updated_at_source = models.DateTimeField(null=True, blank=True)
    changes = models.JSONField(help_text='{"field": [old, new], ...}')

    class Meta:
        ordering = ["-seen_at"]

    def __str__(self) -> str:
        return f"{self.alert_id} changed at {self.seen_at:%Y-%m-%d %H:%M:%S}"


class TriageAction(models.Model):
    """A staff change to an alert, written back to the source by a task."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        APPLIED = "applied", "Applied in Defender"
        CONFLICT = "conflict", "Not applied: the alert changed in Defender"
        FAILED = "failed", "Failed"

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="triage")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_at = models.DateTimeField(auto_now_add=True)
    # The source update time staff saw; a newer one in Defender is a conflict.
    based_on_updated_at = models.DateTimeField()
    changes = models.JSONField(help_text='{"status": "resolved", ...}')
    comment = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status, default=Status.QUEUED)
    result_detail = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at"]

    def __str__(self) -> str:
        return f"Triage of {self.alert_id}: {self.get_status_display()}"

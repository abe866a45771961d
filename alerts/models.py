"""Alerts and incidents as last synced, what changed in them, and staff triage."""

import uuid
from typing import Any

from django.conf import settings
from django.contrib.postgres.functions import RandomUUID
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models import Q

from alerts import search
from tenants.models import Tenant


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
    """One real incident of a tenant, however many APIs it was synced through.

    Defender XDR's `incidentId` and Graph's incident `id` are the same number, so the
    row is unique per (tenant, provider id). Its fields are those of the newest copy
    (`source` says which API sent it); `raw` and `seen_in` keep each API's own newest
    payload and update time, so one API's sync never wipes what the other brought.
    """

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
    raw = models.JSONField(help_text='{"xdr": payload, "graph": payload}')
    seen_in = models.JSONField(
        default=dict,
        blank=True,
        help_text='Each source\'s newest update time: {"xdr": "2026-...", ...}',
    )
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_synced_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "tenants_incident"
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "provider_id"],
                name="incident_unique_tenant_provider_id",
            )
        ]

    def __str__(self) -> str:
        return self.title or f"Incident {self.provider_id}"

    @property
    def seen_in_labels(self) -> list[str]:
        """The names of the APIs this incident was synced through."""
        labels = dict(self.Source.choices)
        return [labels.get(source, source) for source in sorted(self.seen_in)]


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
    # (alerts.search), written with them: by the sync (document_bytes) and by
    # save() (document).
    search_vector = SearchVectorField(null=True, editable=False)

    class Meta:
        db_table = "tenants_alert"
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
        db_table = "tenants_alertchange"
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
        db_table = "tenants_triageaction"
        ordering = ["-requested_at"]

    def __str__(self) -> str:
        return f"Triage of {self.alert_id}: {self.get_status_display()}"

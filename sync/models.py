"""Where each tenant's sync of each source stands, and the runs that moved it."""

from django.db import models

from tenants.microsoft import sources
from tenants.models import Tenant


class SyncState(models.Model):
    """Where the sync of one source of one tenant stands: cursor, lease, backoff.

    The cursor is the newest source update time seen in the data itself, never the
    worker's clock; each run re-reads a small overlap window before it.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="syncs")
    source = models.CharField(max_length=32, choices=sources.choices)
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
        db_table = "tenants_syncstate"
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
        db_table = "tenants_syncrun"
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["sync", "-started_at"], name="syncrun_recent")]

    def __str__(self) -> str:
        return f"{self.sync} at {self.started_at:%Y-%m-%d %H:%M:%S}: {self.outcome}"

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

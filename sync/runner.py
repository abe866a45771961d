"""The sync runner: keeps each verified tenant's alerts and incidents in Postgres.

``sync_source(sync_state_id=...)`` runs one sync of one (tenant, source):

1. claim a short lease with a conditional UPDATE (0 rows: another run has it; return);
2. ask for the changes since the cursor minus an overlap window (the first sync
   reaches back SYNC_BACKFILL_DAYS), page by page, at most SYNC_MAX_PAGES_PER_RUN;
3. per page, in one transaction: COPY in the alerts we don't have yet and upsert the
   others (a newer source update time wins, an older copy never overwrites a newer
   one: the WHERE of the ON CONFLICT says so), write
   AlertChange rows, link duplicates and incidents, advance the cursor to the newest
   update time seen *in the data* and renew the lease (lost lease: roll back, stop);
4. record the run (SyncRun) and the outcome on the SyncState; classify failures.

Each source's entry in the registry (``tenants.microsoft.sources``) says how it is
paged (``Source.paging`` names one of ``PAGING_STRATEGIES`` below), how one page is
listed, its page limit, the payload shape its items are normalised from and the row
time its cursor follows; nothing here branches on a source's name. The strategies:

* ``updated_oldest_first``: MDE alerts come oldest first; Graph alerts and
  incidents are asked for oldest first (``$orderby=lastUpdateDateTime asc``). Each
  next page asks ``ge <newest time seen>`` and skips only the items it already saw at
  exactly that time, so an alert that changes while we page moves *ahead* of us
  instead of shifting one out of the window (what plain ``$skip`` paging does), and
  ``$skip`` stays small.
* ``newest_first_skip``: Defender XDR lists incidents newest first only. A pass pages
  with ``$skip`` (changes move items to the front, so they can only be seen twice,
  never missed) and moves the cursor only when it reached the end, to the newest time
  of its first page; a pass longer than one run resumes from ``SyncState.paging``.
* ``created_then_resolved``: Defender for Cloud Apps has no update time. New alerts
  are paged by their creation time (oldest first); alerts closed since the last run
  are read again through the ``resolutionDate`` filter (its own cursor in
  ``SyncState.paging``). Changes to open Cloud Apps alerts reach us through Graph,
  whose copy is the primary one.

The same alert through two sources (an MDE alert is also a Graph alert with the same
id and an alert of an XDR incident; a Cloud Apps alert appears in Graph and XDR with
its id as ``providerAlertId``) is stored once per source and linked: the copy from the
highest ranked source below is the primary, every other copy points to it through
``Alert.duplicate_of``, and counts use primaries only (alerts.storage).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import redis
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from alerts import normalize, storage
from core import backoff as waits
from core import services as core_services
from sync import selectors, tasks
from sync.models import SyncRun, SyncState
from tenants import microsoft, quotas
from tenants import services as tenant_services
from tenants.microsoft import schemas, sources
from tenants.models import Capability

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 3600


class LeaseLost(Exception):
    """Another run took over this (tenant, source): this run stops without writing."""


# --- results --------------------------------------------------------------------------


@dataclass
class SyncResult:
    """What one call of ``sync_source`` did; ``retry_after`` asks the task to try
    again after that many seconds (Microsoft throttled us)."""

    outcome: str
    created: int = 0
    updated: int = 0
    pages: int = 0
    retry_after: float | None = None
    error: str = ""


@dataclass
class Batch:
    """One page, normalised: rows for Alert and Incident, and the times to page by."""

    alerts: list[dict[str, Any]] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    keys: list[datetime] = field(default_factory=list)
    fetched: int = 0
    skipped: int = 0


def sync_source(*, sync_state_id: int, owner: str | None = None) -> SyncResult:
    """Runs one sync of one (tenant, source), if nobody else is running it."""
    owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    lease = timedelta(seconds=settings.SYNC_LEASE_SECONDS)
    now = timezone.now()
    claimed = (
        SyncState.objects.filter(pk=sync_state_id)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(
            lease_owner=owner,
            lease_until=now + lease,
            last_attempt_at=now,
            next_due_at=now + lease,
        )
    )
    if not claimed:
        return SyncResult("busy")
    state = SyncState.objects.select_related("tenant").get(pk=sync_state_id)
    eligible = SyncState.objects.filter(pk=state.pk).filter(selectors.eligible())
    if not eligible.exists() or sources.get(state.source).unmet_needs(
        state.tenant.facts
    ):
        _release(state, owner, next_due_at=None)
        return SyncResult("skipped")
    run = SyncRun.objects.create(sync=state, started_at=now)
    runner = _Runner(state, run, owner)
    try:
        result = runner.run()
    except LeaseLost:
        result = SyncResult("lease_lost", error="Another run took over this sync.")
        _finish_run(run, SyncRun.Outcome.FAILED, runner, result.error)
        return result
    except BaseException as exc:
        # An unexpected error (or the soft time limit): record it and free the lease
        # so the next run does not wait for it to expire, then let the task decide.
        if isinstance(exc, SystemExit | KeyboardInterrupt):
            message = "The worker was stopped during this run; the next run goes on."
        else:
            message = f"Unexpected error: {type(exc).__name__}: {exc}"[:1000]
        try:
            _finish_run(run, SyncRun.Outcome.FAILED, runner, message)
            _record_failure(state, owner, message, backoff=True)
        except Exception:
            logger.exception("could not record a failed sync run")
        raise
    return result


class _Runner:
    """The paging loop of one run; knows its state, run and lease owner."""

    def __init__(self, state: SyncState, run: SyncRun, owner: str) -> None:
        self.state = state
        self.tenant = state.tenant
        self.run_row = run
        self.owner = owner
        self.client = microsoft.get_client()
        self.tenant_id = str(self.tenant.tenant_id)
        self.source = sources.get(state.source)
        self.page_size = max(1, min(settings.SYNC_PAGE_SIZE, self.source.page_limit))
        self.pages = 0
        self.fetched = 0
        self.created = 0
        self.updated = 0
        self.progress = False
        self.portal = settings.MS_SECURITY_PORTAL_URL

    # -- the loop ------------------------------------------------------------------
    def run(self) -> SyncResult:
        try:
            more = self._pages()
        except schemas.Throttled as exc:
            return self._throttled(exc.retry_after, exc.message)
        except schemas.ConsentRevoked as exc:
            tenant_services.mark_tenant_revoked(tenant=self.tenant, reason=exc.message)
            return self._failed(exc.message, backoff=False)
        except schemas.CredentialBroken as exc:
            core_services.raise_partner_credential_alarm(message=exc.message)
            return self._failed(exc.message, backoff=True)
        except (schemas.NotLicensed, schemas.AccessDenied) as exc:
            status = (
                Capability.Status.NOT_LICENSED
                if isinstance(exc, schemas.NotLicensed)
                else Capability.Status.MISSING_PERMISSION
            )
            tenant_services.mark_capability_lost(
                tenant=self.tenant, source=self.state.source, status=status,
                detail=exc.message,
            )  # fmt: skip
            return self._failed(exc.message, backoff=True)
        except (schemas.TenantNotFound, schemas.BlockedByPolicy) as exc:
            tenant_services.mark_tenant_unverifiable(
                tenant=self.tenant, reason=exc.message
            )
            return self._failed(exc.message, backoff=True)
        except schemas.MicrosoftError as exc:
            # Unavailable, an unexpected refusal, a foreign link: try again later.
            return self._failed(str(exc), backoff=True)
        except redis.RedisError as exc:
            return self._failed(
                f"The portal's Redis is unreachable ({type(exc).__name__}); the sync "
                "will try again.",
                backoff=True,
            )
        return self._succeeded(more)

    def _pages(self) -> bool:
        """Fetches and saves pages; True when more remain after this run."""
        return getattr(self, PAGING_STRATEGIES[self.source.paging])()

    def _window_start(self, cursor: datetime | None) -> datetime:
        if cursor is None:
            # The first sync reaches back a fixed period. This is the only time the
            # worker's clock chooses a bound; cursors come from the data.
            return timezone.now() - timedelta(days=settings.SYNC_BACKFILL_DAYS)
        return cursor - timedelta(seconds=settings.SYNC_OVERLAP_SECONDS)

    def _take_quota(self) -> None:
        wait = quotas.reserve_api_call(self.tenant_id, self.state.source)
        if wait > 0:
            raise _QuotaWait(wait)

    def _oldest_first_pass(self) -> bool:
        """Page by the cursor's time, oldest first (MDE, Graph alerts and incidents).

        The next page is fetched (its quota taken first) in a thread while this one
        is saved, so waiting on Microsoft and on Postgres overlap. One page at most
        is ahead; its errors and quota stop surface only after this page is saved, as
        without the thread; a page fetched ahead of a failed save is dropped."""
        since = self._window_start(self.state.cursor)
        skip = 0
        with _PageAhead() as ahead:
            ahead.submit(self._quota_and_request, since=since, skip=skip)
            for number in range(1, settings.SYNC_MAX_PAGES_PER_RUN + 1):
                page = ahead.result()
                if page is None:
                    return True  # quota: this run stops, the next goes on
                self._count_page(page)
                batch = self._normalise(page.items)
                newest = max(batch.keys, default=None)
                more = page.has_more and bool(page.items)
                if more:
                    if newest is None:
                        # A full page without one usable item: step over it.
                        skip += len(page.items)
                    else:
                        ties = sum(1 for key in batch.keys if key == newest)
                        if newest == since:
                            skip += ties
                        else:
                            since, skip = newest, ties
                    if number < settings.SYNC_MAX_PAGES_PER_RUN:
                        ahead.submit(self._quota_and_request, since=since, skip=skip)
                self._save(batch, cursor=newest)
                if not more:
                    return False
        return True

    def _newest_first_pass(self) -> bool:
        """XDR incidents: newest first with $skip; the cursor moves when a pass ends."""
        paging = self.state.paging or {}
        if paging.get("since"):
            since = normalize.parse_time(paging["since"])
            skip = int(paging.get("skip", 0))
            top = normalize.parse_time(paging.get("top"))
        else:
            since, skip, top = self._window_start(self.state.cursor), 0, None
        for _ in range(settings.SYNC_MAX_PAGES_PER_RUN):
            if not self._quota_or_stop():
                return True
            page = self._fetch(since=since, skip=skip)
            batch = self._normalise(page.items)
            newest = max(batch.keys, default=None)
            if newest is not None and (top is None or newest > top):
                top = newest
            if page.has_more and page.items:
                skip += len(page.items)
                self._save(
                    batch,
                    paging={
                        "since": since.isoformat(),
                        "skip": skip,
                        "top": top.isoformat() if top else None,
                    },
                )
                continue
            self._save(batch, cursor=top, paging={})
            return False
        return True

    def _created_then_resolved(self) -> bool:
        """New items by creation time (the cursor), then items closed since."""
        more = self._oldest_first_pass()
        if more:
            return True
        paging = self.state.paging or {}
        resolved_cursor = normalize.parse_time(paging.get("resolved_cursor"))
        since = self._window_start(resolved_cursor or self.state.cursor)
        skip = 0
        newest = resolved_cursor
        for _ in range(settings.SYNC_MAX_PAGES_PER_RUN):
            if not self._quota_or_stop():
                return True
            page = self._request(since=None, resolved_since=since, skip=skip)
            self._count_page(page)
            batch = self._normalise(page.items)
            for row in batch.alerts:
                resolved = row["resolved_at"]
                if resolved is not None and (newest is None or resolved > newest):
                    newest = resolved
            more = page.has_more and bool(page.items)
            skip += len(page.items)
            cursor_paging = (
                {} if not newest else {"resolved_cursor": newest.isoformat()}
            )
            # The resolved cursor moves only when the pass ends (skip paging).
            self._save(batch, paging=cursor_paging if not more else None)
            if not more:
                return False
        return True

    def _quota_or_stop(self) -> bool:
        try:
            self._take_quota()
        except _QuotaWait as wait:
            self.quota_wait = wait.seconds
            return False
        return True

    # -- fetching ------------------------------------------------------------------
    def _count_page(self, page: schemas.Page) -> None:
        self.pages += 1
        self.fetched += len(page.items)

    def _fetch(self, *, since: datetime, skip: int) -> schemas.Page:
        page = self._request(since=since, skip=skip)
        self._count_page(page)
        return page

    def _quota_and_request(self, *, since: datetime, skip: int) -> schemas.Page | None:
        """The page, or None when the quota says wait (``quota_wait`` is set).
        Runs in the page-ahead thread: HTTP and Redis only, no database."""
        if not self._quota_or_stop():
            return None
        return self._request(since=since, skip=skip)

    def _request(
        self,
        *,
        since: datetime | None,
        skip: int,
        resolved_since: datetime | None = None,
    ) -> schemas.Page:
        return self.source.list_page(
            self.client,
            sources.PageRequest(
                facts=self.tenant.facts,
                since=since,
                skip=skip,
                top=self.page_size,
                expand=settings.SYNC_GRAPH_INCIDENTS_EXPAND_ALERTS,
                resolved_since=resolved_since,
            ),
        )

    def _normalise(self, items: list[dict[str, Any]]) -> Batch:
        source = self.source
        make = normalize.NORMALISERS[source.payload]
        batch = Batch(fetched=len(items))
        for item in items:
            try:
                incident, alerts = make(
                    item, tenant_id=self.tenant_id, portal=self.portal
                )
            except normalize.Unusable as exc:
                batch.skipped += 1
                logger.warning("skipping an item of %s: %s", self.state, exc)
                continue
            if incident is not None:
                batch.incidents.append(dict(incident, source=source.row_source))
            batch.alerts.extend(dict(a, source=source.row_source) for a in alerts)
            # An incident pages by its own time; a lone alert by its row's.
            keyed = incident if incident is not None else alerts[0]
            batch.keys.append(
                keyed.get(source.cursor_field) or keyed["updated_at_source"]
            )
        return batch

    # -- saving --------------------------------------------------------------------
    def _save(
        self,
        batch: Batch,
        *,
        cursor: datetime | None = None,
        paging: dict | None = None,
    ) -> None:
        """Upserts one page and moves the cursor, in one transaction, if we still
        hold the lease (else LeaseLost and nothing is written)."""
        lease = timedelta(seconds=settings.SYNC_LEASE_SECONDS)
        with transaction.atomic():
            state = SyncState.objects.select_for_update().get(pk=self.state.pk)
            if state.lease_owner != self.owner:
                raise LeaseLost()
            storage.lock_tenant_writes(self.tenant.pk)
            i_created, i_updated, incident_ids = storage.upsert_incidents(
                self.tenant.pk, batch.incidents
            )
            created, updated, written = storage.upsert_alerts(
                self.tenant.pk, batch.alerts
            )
            created, updated = created + i_created, updated + i_updated
            storage.link_alerts(
                self.tenant.pk, written=written, incident_ids=incident_ids
            )
            fields = ["lease_until"]
            state.lease_until = timezone.now() + lease
            if cursor is not None and (state.cursor is None or cursor > state.cursor):
                state.cursor = cursor
                fields.append("cursor")
                self.progress = True
            if paging is not None and paging != state.paging:
                state.paging = paging
                fields.append("paging")
                self.progress = True
            state.save(update_fields=fields)
            self.state.cursor, self.state.paging = state.cursor, state.paging
        self.created += created
        self.updated += updated
        if created or updated:
            self.progress = True

    # -- endings -------------------------------------------------------------------
    def _succeeded(self, more: bool) -> SyncResult:
        now = timezone.now()
        wait = getattr(self, "quota_wait", None)
        interval = timedelta(seconds=settings.SYNC_INTERVAL_SECONDS)
        again = more and self.progress and wait is None
        if wait is not None:
            next_due = now + timedelta(seconds=wait)
        elif again:
            next_due = now
        else:
            next_due = now + interval
        outcome = SyncRun.Outcome.MORE if more else SyncRun.Outcome.OK
        if wait is not None:
            outcome = SyncRun.Outcome.THROTTLED
        fields: dict[str, Any] = {
            "lease_owner": "",
            "lease_until": None,
            "next_due_at": next_due,
            "throttled_until": now + timedelta(seconds=wait) if wait else None,
            "last_success_at": now,
            "last_error": "",
            "consecutive_failures": 0,
        }
        if not more:
            fields["backfill_done"] = True
        with transaction.atomic():
            updated = SyncState.objects.filter(
                pk=self.state.pk, lease_owner=self.owner
            ).update(**fields)
            # A check that met a passing failure is settled by this success.
            Capability.objects.filter(
                tenant=self.tenant,
                source=self.state.source,
                status=Capability.Status.ERROR,
            ).update(status=Capability.Status.OK, detail="", checked_at=now)
            _finish_run(self.run_row, outcome, self)
            if updated and again:
                tasks.sync_source.delay_on_commit(self.state.pk)
        return SyncResult(outcome, self.created, self.updated, self.pages, error="")

    def _throttled(self, retry_after: float, message: str) -> SyncResult:
        now = timezone.now()
        retry_after = max(1.0, float(retry_after))
        until = now + timedelta(seconds=retry_after)
        interval = settings.SYNC_INTERVAL_SECONDS
        with transaction.atomic():
            SyncState.objects.filter(pk=self.state.pk, lease_owner=self.owner).update(
                lease_owner="",
                lease_until=None,
                throttled_until=until,
                # The task retries at `until`; beat is the fallback after that.
                next_due_at=until + timedelta(seconds=interval / 2),
                last_error=message,
                last_error_at=now,
            )
            _finish_run(self.run_row, SyncRun.Outcome.THROTTLED, self, message)
        return SyncResult(
            SyncRun.Outcome.THROTTLED,
            self.created,
            self.updated,
            self.pages,
            retry_after=retry_after,
            error=message,
        )

    def _failed(self, message: str, *, backoff: bool) -> SyncResult:
        _finish_run(self.run_row, SyncRun.Outcome.FAILED, self, message)
        _record_failure(self.state, self.owner, message, backoff=backoff)
        return SyncResult(
            SyncRun.Outcome.FAILED,
            self.created,
            self.updated,
            self.pages,
            error=message,
        )


#: ``Source.paging`` -> the ``_Runner`` method that pages that way.
PAGING_STRATEGIES = {
    "updated_oldest_first": "_oldest_first_pass",
    "newest_first_skip": "_newest_first_pass",
    "created_then_resolved": "_created_then_resolved",
}


class _PageAhead:
    """Runs one page fetch at a time in a thread of its own (bounded: one ahead)."""

    def __enter__(self) -> _PageAhead:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-ahead")
        self._future: Future | None = None
        return self

    def submit(self, fetch, **kwargs: Any) -> None:
        self._future = self._pool.submit(fetch, **kwargs)

    def result(self) -> Any:
        """The submitted fetch's page; its exception is raised here, in the run."""
        future, self._future = self._future, None
        return future.result()

    def __exit__(self, kind, exc, traceback) -> None:
        future = self._future
        in_flight = future is not None and not future.cancel()
        if in_flight and (kind is None or issubclass(kind, Exception)):
            # Bounded by the client's timeouts: let it end, so the client is never
            # used by two threads; its page and its error are dropped.
            wait([future])
        self._pool.shutdown(wait=False)


class _QuotaWait(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


def _finish_run(run: SyncRun, outcome: str, runner: _Runner, error: str = "") -> None:
    run.finished_at = timezone.now()
    run.outcome = outcome
    run.pages = runner.pages
    run.fetched = runner.fetched
    run.created = runner.created
    run.updated = runner.updated
    run.error = error[:2000]
    run.save(
        update_fields=[
            "finished_at", "outcome", "pages", "fetched", "created", "updated", "error",
        ]
    )  # fmt: skip


def _record_failure(state: SyncState, owner: str, message: str, *, backoff: bool):
    """Shows the failure on the SyncState, frees the lease, and backs off
    exponentially (with jitter) so a failing tenant costs little and others go on."""
    now = timezone.now()
    failures = (
        SyncState.objects.filter(pk=state.pk)
        .values_list("consecutive_failures", flat=True)
        .first()
        or 0
    ) + 1
    delay = waits.backoff_seconds(
        failures if backoff else 1,
        base=settings.SYNC_INTERVAL_SECONDS,
        cap=MAX_BACKOFF_SECONDS,
    )
    SyncState.objects.filter(pk=state.pk, lease_owner=owner).update(
        lease_owner="",
        lease_until=None,
        next_due_at=now + timedelta(seconds=delay),
        consecutive_failures=failures,
        last_error=message[:2000],
        last_error_at=now,
    )


def _release(state: SyncState, owner: str, *, next_due_at: datetime | None) -> None:
    SyncState.objects.filter(pk=state.pk, lease_owner=owner).update(
        lease_owner="", lease_until=None, next_due_at=next_due_at
    )

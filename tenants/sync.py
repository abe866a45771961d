"""Sync services: keep each verified tenant's alerts and incidents in Postgres.

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

Paging by update time, per source:

* MDE alerts come oldest first; Graph alerts and incidents are asked for oldest first
  (``$orderby=lastUpdateDateTime asc``). Each next page asks ``ge <newest time seen>``
  and skips only the items it already saw at exactly that time, so an alert that
  changes while we page moves *ahead* of us instead of shifting one out of the
  window (what plain ``$skip`` paging does), and ``$skip`` stays small.
* Defender XDR lists incidents newest first only. A pass pages with ``$skip``
  (changes move items to the front, so they can only be seen twice, never missed) and
  moves the cursor only when it reached the end, to the newest time of its first
  page; a pass longer than one run resumes from ``SyncState.paging``.
* Defender for Cloud Apps has no update time. New alerts are paged by their creation
  time (oldest first); alerts closed since the last run are read again through the
  ``resolutionDate`` filter (its own cursor in ``SyncState.paging``). Changes to open
  Cloud Apps alerts reach us through Graph, whose copy is the primary one.

The same alert through two sources (an MDE alert is also a Graph alert with the same
id and an alert of an XDR incident; a Cloud Apps alert appears in Graph and XDR with
its id as ``providerAlertId``) is stored once per source and linked: the copy from the
highest ranked source below is the primary, every other copy points to it through
``Alert.duplicate_of``, and counts use primaries only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import socket
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models import BooleanField, Exists, OuterRef, Q
from django.db.models.expressions import RawSQL
from django.utils import timezone
from psycopg import postgres
from psycopg.adapt import Dumper
from psycopg.pq import Format

from tenants import microsoft, normalize, search, services
from tenants.microsoft import schemas
from tenants.models import (
    SEARCHED_FIELDS,
    Alert,
    AlertChange,
    Capability,
    SyncRun,
    SyncState,
    Tenant,
)

logger = logging.getLogger(__name__)

#: Which copy of one alert is the primary: the highest rank present.
ALERT_SOURCE_RANK = {"mde": 3, "graph": 2, "xdr": 1, "mcas": 0}
#: Fields whose change is recorded as an AlertChange.
TRACKED_FIELDS = (
    "status",
    "severity",
    "classification",
    "determination",
    "assigned_to",
)
#: The most items each API returns per page.
PAGE_LIMITS = {
    "mde_alerts": 10_000,
    "xdr_incidents": 100,
    "graph_alerts": 1000,
    "graph_incidents": 50,
    "mcas_alerts": 100,
}
#: Documented quotas per app per tenant, (window seconds, calls); Graph alerts and
#: incidents share one quota.
QUOTA_API = {
    "mde_alerts": "mde",
    "xdr_incidents": "xdr",
    "graph_alerts": "graph",
    "graph_incidents": "graph",
    "mcas_alerts": "mcas",
}
QUOTAS: dict[str, tuple[tuple[int, int], ...]] = {
    "mde": ((60, 100), (3600, 1500)),
    "xdr": ((60, 50), (3600, 1500)),
    "graph": ((60, 150),),
    "mcas": ((60, 30),),
}
#: Our windows are this much longer than Microsoft's: a call reserved now reaches
#: Microsoft a little later, and must still fall outside its window then.
QUOTA_MARGIN_SECONDS = 2
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


# --- client-side quotas ---------------------------------------------------------------

_QUOTA_SCRIPT = """
local now = tonumber(ARGV[1])
local member = ARGV[2]
local wait = 0
for i, key in ipairs(KEYS) do
    local window = tonumber(ARGV[1 + i * 2])
    local limit = tonumber(ARGV[2 + i * 2])
    redis.call('zremrangebyscore', key, '-inf', now - window)
    local used = redis.call('zcard', key)
    if used >= limit then
        local first = used - limit
        local oldest = redis.call('zrange', key, first, first, 'WITHSCORES')
        local free_at = tonumber(oldest[2]) + window
        if free_at - now > wait then wait = free_at - now end
    end
end
if wait > 0 then return tostring(wait) end
for i, key in ipairs(KEYS) do
    local window = tonumber(ARGV[1 + i * 2])
    redis.call('zadd', key, now, member)
    redis.call('pexpire', key, math.ceil(window * 1000))
end
return '0'
"""

_redis_client: redis.Redis | None = None
_redis_pid: int | None = None


def _redis() -> redis.Redis:
    global _redis_client, _redis_pid
    if _redis_client is None or _redis_pid != os.getpid():
        _redis_client = redis.Redis.from_url(settings.REDIS_URL)
        _redis_pid = os.getpid()
    return _redis_client


def reserve_api_call(tenant_id: str, source: str) -> float:
    """Takes one call from the (tenant, API) quota: 0 when allowed, else the seconds
    until a slot frees (nothing taken). Sliding windows in Redis, shared by every
    worker, at Microsoft's documented limits."""
    api = QUOTA_API[source]
    windows = QUOTAS[api]
    # Quotas are per app per tenant: the app is (sign-in host, client id).
    app = hashlib.sha256(
        f"{settings.MS_LOGIN_URL}|{settings.MS_CLIENT_ID}".encode()
    ).hexdigest()[:12]
    keys = [f"sync:quota:{app}:{api}:{tenant_id}:{seconds}" for seconds, _ in windows]
    args: list[Any] = [f"{time.time():.6f}", uuid.uuid4().hex]
    for seconds, calls in windows:
        args += [seconds + QUOTA_MARGIN_SECONDS, calls]
    client = _redis()
    wait = float(client.eval(_QUOTA_SCRIPT, len(keys), *keys, *args))
    return wait


# --- scheduling -----------------------------------------------------------------------


#: Capability states a source is synced in: connected, or a check that only met a
#: passing failure (throttled, unavailable); its next successful run clears that.
SYNCED_CAPABILITIES = (Capability.Status.OK, Capability.Status.ERROR)


def _eligible() -> Q:
    """Sync states whose tenant is verified and whose source is connected (or its
    last check failed for a passing reason)."""
    connected = Capability.objects.filter(
        tenant=OuterRef("tenant"),
        source=OuterRef("source"),
        status__in=SYNCED_CAPABILITIES,
    )
    return Q(tenant__state=Tenant.State.VERIFIED) & Q(Exists(connected))


def dispatch_due_syncs(*, limit: int | None = None) -> list[int]:
    """Queues one sync task per due (tenant, source); returns their SyncState ids.

    Due: eligible, ``next_due_at`` passed, not throttled, lease free. Picked rows are
    pushed ``SYNC_LEASE_SECONDS`` ahead under ``FOR UPDATE SKIP LOCKED``, so a second
    beat (or the next tick while the queue is long) does not queue them again; a
    queued run that never starts (its worker died) is due again after that.
    """
    from tenants import tasks

    now = timezone.now()
    limit = limit or settings.SYNC_DISPATCH_BATCH
    with transaction.atomic():
        due = (
            SyncState.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(_eligible())
            .filter(next_due_at__lte=now)
            .filter(Q(throttled_until__isnull=True) | Q(throttled_until__lte=now))
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .order_by("next_due_at")
            .values_list("id", flat=True)[:limit]
        )
        ids = list(due)
        if ids:
            SyncState.objects.filter(id__in=ids).update(
                next_due_at=now + timedelta(seconds=settings.SYNC_LEASE_SECONDS)
            )
            for state_id in ids:
                tasks.sync_source.delay_on_commit(state_id)
    return ids


@transaction.atomic
def request_sync(*, actor, sync_state: SyncState) -> None:
    """Staff asked for a sync now: due now, queued now, audited."""
    from tenants import tasks

    SyncState.objects.filter(pk=sync_state.pk).update(
        next_due_at=timezone.now(), throttled_until=None
    )
    services.audit(
        action="sync.requested",
        actor=actor,
        tenant=sync_state.tenant,
        detail=sync_state.get_source_display(),
    )
    tasks.sync_source.delay_on_commit(sync_state.pk)


def refresh_tenant_tokens(*, actor, tenant: Tenant) -> None:
    """Drops the tenant's shared tokens: the next call of any worker asks Entra ID."""
    microsoft.get_client().forget_tenant(str(tenant.tenant_id))
    services.audit(action="sync.tokens_dropped", actor=actor, tenant=tenant)


# --- one run --------------------------------------------------------------------------


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
    if not SyncState.objects.filter(pk=state.pk).filter(_eligible()).exists() or (
        state.source == "mcas_alerts" and not state.tenant.mcas_url
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
        self.page_size = max(1, min(settings.SYNC_PAGE_SIZE, PAGE_LIMITS[state.source]))
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
            services.mark_tenant_revoked(tenant=self.tenant, reason=exc.message)
            return self._failed(exc.message, backoff=False)
        except schemas.CredentialBroken as exc:
            services.raise_partner_credential_alarm(message=exc.message)
            return self._failed(exc.message, backoff=True)
        except (schemas.NotLicensed, schemas.AccessDenied) as exc:
            status = (
                Capability.Status.NOT_LICENSED
                if isinstance(exc, schemas.NotLicensed)
                else Capability.Status.MISSING_PERMISSION
            )
            services.mark_capability_lost(
                tenant=self.tenant, source=self.state.source, status=status,
                detail=exc.message,
            )  # fmt: skip
            return self._failed(exc.message, backoff=True)
        except (schemas.TenantNotFound, schemas.BlockedByPolicy) as exc:
            services.mark_tenant_unverifiable(tenant=self.tenant, reason=exc.message)
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
        source = self.state.source
        if source == "xdr_incidents":
            return self._newest_first_pass()
        if source == "mcas_alerts":
            return self._mcas_passes()
        return self._oldest_first_pass()

    def _window_start(self, cursor: datetime | None) -> datetime:
        if cursor is None:
            # The first sync reaches back a fixed period. This is the only time the
            # worker's clock chooses a bound; cursors come from the data.
            return timezone.now() - timedelta(days=settings.SYNC_BACKFILL_DAYS)
        return cursor - timedelta(seconds=settings.SYNC_OVERLAP_SECONDS)

    def _take_quota(self) -> None:
        wait = reserve_api_call(self.tenant_id, self.state.source)
        if wait > 0:
            raise _QuotaWait(wait)

    def _oldest_first_pass(self) -> bool:
        """MDE alerts, Graph alerts and incidents: page by update time, oldest first.

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

    def _mcas_passes(self) -> bool:
        """Cloud Apps: new alerts by creation time, then alerts closed since."""
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
            page = self.client.list_mcas_alerts(
                self.tenant_id,
                mcas_url=self.tenant.mcas_url,
                since_ms=None,
                resolved_since_ms=int(since.timestamp() * 1000),
                skip=skip,
                limit=self.page_size,
            )
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

    def _request(self, *, since: datetime, skip: int) -> schemas.Page:
        source = self.state.source
        region = self.tenant.region or None
        if source == "mde_alerts":
            page = self.client.list_mde_alerts(
                self.tenant_id,
                since=since,
                top=self.page_size,
                skip=skip,
                region=region,
            )
        elif source == "xdr_incidents":
            page = self.client.list_xdr_incidents(
                self.tenant_id,
                since=since,
                top=self.page_size,
                skip=skip,
                region=region,
            )
        elif source == "graph_alerts":
            page = self.client.list_graph_alerts(
                self.tenant_id,
                since=since,
                top=self.page_size,
                oldest_first=True,
                skip=skip,
            )
        elif source == "graph_incidents":
            page = self.client.list_graph_incidents(
                self.tenant_id,
                since=since,
                top=self.page_size,
                oldest_first=True,
                skip=skip,
                expand_alerts=settings.SYNC_GRAPH_INCIDENTS_EXPAND_ALERTS,
            )
        else:
            page = self.client.list_mcas_alerts(
                self.tenant_id,
                mcas_url=self.tenant.mcas_url,
                since_ms=int(since.timestamp() * 1000),
                skip=skip,
                limit=self.page_size,
            )
        return page

    def _normalise(self, items: list[dict[str, Any]]) -> Batch:
        source = self.state.source
        batch = Batch(fetched=len(items))
        kwargs = {"tenant_id": self.tenant_id, "portal": self.portal}
        for item in items:
            try:
                if source == "mde_alerts":
                    row = normalize.mde_alert(item, **kwargs)
                    batch.alerts.append(dict(row, source=Alert.Source.MDE))
                    batch.keys.append(row["updated_at_source"])
                elif source == "graph_alerts":
                    row = normalize.graph_alert(item, **kwargs)
                    batch.alerts.append(dict(row, source=Alert.Source.GRAPH))
                    batch.keys.append(row["updated_at_source"])
                elif source == "mcas_alerts":
                    row = normalize.mcas_alert(item, **kwargs)
                    batch.alerts.append(dict(row, source=Alert.Source.MCAS))
                    # Paged by creation time: the only time this API filters on.
                    batch.keys.append(
                        row["created_at_source"] or row["updated_at_source"]
                    )
                else:
                    maker = (
                        normalize.xdr_incident
                        if source == "xdr_incidents"
                        else normalize.graph_incident
                    )
                    incident, alerts = maker(item, **kwargs)
                    kind = "xdr" if source == "xdr_incidents" else "graph"
                    batch.incidents.append(dict(incident, source=kind))
                    batch.alerts.extend(dict(a, source=kind) for a in alerts)
                    batch.keys.append(incident["updated_at_source"])
            except normalize.Unusable as exc:
                batch.skipped += 1
                logger.warning("skipping an item of %s: %s", self.state, exc)
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
            lock_tenant_writes(self.tenant.pk)
            i_created, i_updated, incident_ids = upsert_incidents(
                self.tenant.pk, batch.incidents
            )
            created, updated, written = upsert_alerts(self.tenant.pk, batch.alerts)
            created, updated = created + i_created, updated + i_updated
            link_alerts(self.tenant.pk, written=written, incident_ids=incident_ids)
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
                from tenants import tasks

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
    delay = settings.SYNC_INTERVAL_SECONDS * (
        2 ** min(failures - 1, 10) if backoff else 1
    )
    delay = min(delay, MAX_BACKOFF_SECONDS) * random.uniform(0.8, 1.2)  # noqa: S311
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


# --- upserts --------------------------------------------------------------------------

_ALERT_COLUMNS = (
    ("source", "varchar(16)"),
    ("provider_id", "varchar(128)"),
    ("title", "text"),
    ("description", "text"),
    ("severity", "varchar(16)"),
    ("status", "varchar(16)"),
    ("category", "varchar(128)"),
    ("classification", "varchar(64)"),
    ("determination", "varchar(64)"),
    ("assigned_to", "varchar(255)"),
    ("created_at_source", "timestamptz"),
    ("updated_at_source", "timestamptz"),
    ("first_activity_at", "timestamptz"),
    ("last_activity_at", "timestamptz"),
    ("resolved_at", "timestamptz"),
    ("incident_provider_id", "varchar(128)"),
    ("devices", "jsonb"),
    ("users", "jsonb"),
    ("evidence", "jsonb"),
    ("evidence_summary", "varchar(500)"),
    ("entities_text", "text"),
    ("portal_url", "varchar(500)"),
    ("raw", "jsonb"),
    ("search_vector", "tsvector"),
)
_INCIDENT_COLUMNS = (
    ("source", "varchar(16)"),
    ("provider_id", "varchar(128)"),
    ("title", "text"),
    ("severity", "varchar(16)"),
    ("status", "varchar(32)"),
    ("classification", "varchar(64)"),
    ("determination", "varchar(64)"),
    ("assigned_to", "varchar(255)"),
    ("created_at_source", "timestamptz"),
    ("updated_at_source", "timestamptz"),
    ("portal_url", "varchar(500)"),
    ("raw", "jsonb"),
)
_JSON_COLUMNS = {"devices", "users", "evidence", "raw"}


#: First key of the advisory lock that serialises one tenant's page writes.
TENANT_WRITE_LOCK = 0x53594E43  # "SYNC"


def lock_tenant_writes(tenant_pk: int) -> None:
    """Waits for, and holds until the transaction ends, the right to write pages of
    this tenant. The sources of one tenant sync in parallel and write copies of the
    same alerts: linking those copies must see the other runs' committed rows, or two
    runs each find their copy alone and both stay primaries; in a fixed order the
    cross-updates of incident and duplicate links also cannot deadlock."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)", [TENANT_WRITE_LOCK, tenant_pk]
        )


def _newest_per_key(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (source, provider id), the newest; sorted, so concurrent upserts
    lock rows in the same order (no deadlocks)."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["source"], row["provider_id"])
        if (
            key not in best
            or row["updated_at_source"] >= best[key]["updated_at_source"]
        ):
            best[key] = row
    return [best[key] for key in sorted(best)]


def _stage(cursor, table: str, columns, rows: list[dict[str, Any]]) -> None:
    """Rows into a temporary table with COPY (much faster than INSERT ... VALUES)."""
    definition = ", ".join(f"{name} {kind}" for name, kind in columns)
    cursor.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {table} ({definition}) ON COMMIT DELETE ROWS"
    )
    cursor.execute(f"TRUNCATE {table}")
    names = [name for name, _ in columns]
    _copy_in(cursor, table, columns, (_values(row, names) for row in rows))


# COPY in PostgreSQL's binary form: Python escapes no text and formats no times, and
# PostgreSQL parses no text but the JSON. In bench/ingest.py that took about a fifth
# off the sync's CPU (PostgreSQL about 140 to 102 µs an alert, the workers about 102
# to 90). Each value goes out as its column's type: psycopg's dumpers for numbers,
# text and times, and these for what we make ready ourselves.


class _Ready(Dumper):
    """A value already in its type's binary form, written as it is."""

    format = Format.BINARY

    def dump(self, obj: bytes) -> bytes:
        return obj


class _TsvectorBytes(_Ready):
    """A search vector from `search.document_bytes`."""

    oid = postgres.types["tsvector"].oid


class _UuidBytes(_Ready):
    """A uuid's 16 bytes, as PostgreSQL's uuid_send writes them."""

    oid = postgres.types["uuid"].oid


class _JsonbBytes(Dumper):
    """JSON text (`_json_bytes`) as jsonb's binary form: a version byte, the text."""

    format = Format.BINARY
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: bytes) -> bytes:
        return b"\x01" + obj


def _copy_in(cursor, table: str, columns, rows) -> None:
    """COPYs `rows` (lists of values in the order of `columns`, (name, type) pairs)
    into `table` in binary form: JSON columns take `_json_bytes`, the search vector
    `search.document_bytes`, a code its 16 bytes."""
    for dumper in (_TsvectorBytes, _UuidBytes, _JsonbBytes):
        cursor.adapters.register_dumper(None, dumper)
    # Only our own constant table and column names are formatted in.
    names = ", ".join(name for name, _ in columns)
    with cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([kind.split("(")[0] for _, kind in columns])
        for row in rows:
            copy.write_row(row)


def _values(row: dict[str, Any], names: list[str]) -> list[Any]:
    """The row's values of `names` as `_copy_in` takes them."""
    return [
        _json_bytes(row[name]) if name in _JSON_COLUMNS else row[name] for name in names
    ]


_json_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _json_bytes(value: Any) -> bytes:
    """Compact JSON in UTF-8, for a jsonb column or a JSON parameter. orjson is
    several times faster than ``json``; what it refuses (integers beyond 64 bits,
    lone surrogates) ``json`` writes, as before. orjson writes NaN, which jsonb cannot
    hold, as null."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return _json_encode(value).encode()


def _dumps_json(value: Any) -> str:
    """`_json_bytes` as text, for a query parameter."""
    return _json_bytes(value).decode()


def upsert_alerts(
    tenant_pk: int, rows: list[dict[str, Any]]
) -> tuple[int, int, list[Written]]:
    """Inserts new alerts and updates known ones where the incoming copy is newer.

    An older copy never overwrites a newer one, and a copy of the same time only when
    its payload differs (so re-reading the overlap window changes nothing). Writes an
    AlertChange for every tracked field that changed. Returns (created, updated, the
    rows written).

    Holds the tenant's write lock (``lock_tenant_writes``) to its transaction's end:
    no other writer can add this tenant's alerts meanwhile, so the alerts not stored
    yet are COPY'd straight into the table (a backfill's case, and the costly one),
    and only the known ones go through the upsert.
    """
    rows = [
        dict(
            row,
            search_vector=search.document_bytes(*(row[f] for f in SEARCHED_FIELDS)),
        )
        for row in _newest_per_key(rows)
    ]
    if not rows:
        return 0, 0, []
    with transaction.atomic():
        lock_tenant_writes(tenant_pk)
        known = _stored_alert_keys(tenant_pk, rows)
        written = _insert_alerts(
            tenant_pk, [r for r in rows if (r["source"], r["provider_id"]) not in known]
        )
        again, updated, changed = _update_alerts(
            tenant_pk, [r for r in rows if (r["source"], r["provider_id"]) in known]
        )
    return len(written) + again, updated, written + changed


# A page's worth of values (keys, ids) as one JSON text parameter, `= ANY` of this
# array: psycopg binds on the client here and writes a list parameter out value by
# value in Python, 2,000 of them on every page, where one string is escaped in C.
# An array, not a join with the JSON's elements or IN (SELECT ...): the planner
# guesses those at 100 rows and may read all of a tenant's alerts instead of one
# index lookup a value.
_JSON_ARRAY = "ARRAY(SELECT json_array_elements_text(%s::json))"


def _stored_alert_keys(tenant_pk: int, rows: list[dict[str, Any]]) -> set[tuple]:
    """The (source, provider id) of `rows` this tenant already has."""
    wanted = {(r["source"], r["provider_id"]) for r in rows}
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT source, provider_id FROM tenants_alert
            WHERE tenant_id = %s AND source = ANY(%s)
              AND provider_id = ANY({_JSON_ARRAY})
            """,  # noqa: S608 - a constant of this module
            [
                tenant_pk,
                sorted({source for source, _ in wanted}),
                _dumps_json(sorted({pid for _, pid in wanted})),
            ],
        )
        return wanted.intersection(cursor.fetchall())


def _insert_alerts(tenant_pk: int, rows: list[dict[str, Any]]) -> list[Written]:
    """New alerts, COPY'd in with ids and codes taken beforehand (a COPY returns
    none); first seen and synced at the transaction's time, as now()."""
    if not rows:
        return []
    names = [name for name, _ in _ALERT_COLUMNS]
    with connection.cursor() as cursor:
        raw_cursor = cursor.cursor
        # The codes are made here, not by the column's default: a COPY that must
        # evaluate a volatile default (gen_random_uuid()) stores its rows one by one
        # instead of a page of them at a time. The sequence is looked up once:
        # OFFSET 0 keeps the subquery from being merged into the outer query, where
        # the lookup ran for every row (2.5 µs).
        raw_cursor.execute(
            """
            SELECT now(), array_agg(nextval(sequence)),
                   array_agg(uuid_send(gen_random_uuid()))
            FROM (SELECT pg_get_serial_sequence('tenants_alert', 'id')::regclass
                  AS sequence OFFSET 0) AS table_sequence,
                 generate_series(1, %s)
            """,
            [len(rows)],
        )
        now, ids, codes = raw_cursor.fetchone()
        _copy_in(
            raw_cursor,
            "tenants_alert",
            [
                ("id", "int8"),
                ("code", "uuid"),
                ("tenant_id", "int8"),
                *_ALERT_COLUMNS,
                ("first_seen_at", "timestamptz"),
                ("last_synced_at", "timestamptz"),
            ],
            (
                [pk, code, tenant_pk, *_values(row, names), now, now]
                for pk, code, row in zip(ids, codes, rows, strict=True)
            ),
        )
    return [
        Written(pk, row["source"], row["provider_id"], _origin(row["raw"]))
        for pk, row in zip(ids, rows, strict=True)
    ]


def _update_alerts(
    tenant_pk: int, rows: list[dict[str, Any]]
) -> tuple[int, int, list[Written]]:
    """Known alerts: each row where the incoming copy is newer (see upsert_alerts),
    with an AlertChange per changed tracked field. (Created, updated, rows written.)"""
    if not rows:
        return 0, 0, []
    names = [name for name, _ in _ALERT_COLUMNS]
    updates = ", ".join(
        f"{name} = EXCLUDED.{name}"
        for name in names
        if name not in ("source", "provider_id")
    )
    tracked = ", ".join(f"a.{name}" for name in TRACKED_FIELDS)
    returned = ", ".join(f"up.{name}" for name in TRACKED_FIELDS)
    old_fields = ", ".join(f"old.{name} AS old_{name}" for name in TRACKED_FIELDS)
    with connection.cursor() as cursor:
        raw_cursor = cursor.cursor
        _stage(raw_cursor, "sync_alert_stage", _ALERT_COLUMNS, rows)
        # Only our own constant column names are formatted in; values are parameters.
        # ON CONFLICT, not UPDATE: a known alert deleted meanwhile is inserted again.
        raw_cursor.execute(
            f"""
            WITH old AS (
                SELECT a.id, {tracked}
                FROM tenants_alert a
                JOIN sync_alert_stage s
                  ON a.tenant_id = %(tenant)s
                 AND a.source = s.source AND a.provider_id = s.provider_id
            ), up AS (
                INSERT INTO tenants_alert
                    (code, tenant_id, {", ".join(names)}, first_seen_at, last_synced_at)
                SELECT gen_random_uuid(), %(tenant)s, {", ".join(names)}, now(), now()
                FROM sync_alert_stage ORDER BY source, provider_id
                ON CONFLICT (tenant_id, source, provider_id) DO UPDATE
                SET {updates}, last_synced_at = EXCLUDED.last_synced_at
                WHERE EXCLUDED.updated_at_source > tenants_alert.updated_at_source
                   OR (EXCLUDED.updated_at_source = tenants_alert.updated_at_source
                       AND EXCLUDED.raw IS DISTINCT FROM tenants_alert.raw)
                RETURNING id, (xmax = 0) AS inserted, updated_at_source,
                          source, provider_id, {", ".join(TRACKED_FIELDS)}
            )
            SELECT up.id, up.inserted, up.updated_at_source, up.source,
                   up.provider_id, {returned}, {old_fields}
            FROM up LEFT JOIN old ON old.id = up.id
            """,  # noqa: S608
            {"tenant": tenant_pk},
        )
        result = raw_cursor.fetchall()
    origins = {(row["source"], row["provider_id"]): _origin(row["raw"]) for row in rows}
    created = updated = 0
    changes = []
    written = []
    n = len(TRACKED_FIELDS)
    for record in result:
        alert_id, inserted, updated_at, source, provider_id = record[:5]
        written.append(
            Written(alert_id, source, provider_id, origins.get((source, provider_id)))
        )
        if inserted:
            created += 1
            continue
        updated += 1
        new, old = record[5 : 5 + n], record[5 + n : 5 + 2 * n]
        diff = {
            name: [before, after]
            for name, before, after in zip(TRACKED_FIELDS, old, new, strict=True)
            if before != after
        }
        if diff:
            changes.append(
                AlertChange(
                    alert_id=alert_id, updated_at_source=updated_at, changes=diff
                )
            )
    if changes:
        AlertChange.objects.bulk_create(changes)
    return created, updated, written


@dataclass(frozen=True)
class Written:
    """An alert row an upsert wrote, and the producing product's id it names."""

    id: int
    source: str
    provider_id: str
    origin: str | None


def _origin(raw: Any) -> str | None:
    value = raw.get("providerAlertId") if isinstance(raw, dict) else None
    return str(value) if value else None


def upsert_incidents(
    tenant_pk: int, rows: list[dict[str, Any]]
) -> tuple[int, int, list[int]]:
    """Like ``upsert_alerts`` for incidents (no change rows): (created, updated, ids of
    this batch's incidents, written or not, to link alerts to)."""
    rows = _newest_per_key(rows)
    if not rows:
        return 0, 0, []
    names = [name for name, _ in _INCIDENT_COLUMNS]
    updates = ", ".join(
        f"{name} = EXCLUDED.{name}"
        for name in names
        if name not in ("source", "provider_id")
    )
    with connection.cursor() as cursor:
        raw_cursor = cursor.cursor
        _stage(raw_cursor, "sync_incident_stage", _INCIDENT_COLUMNS, rows)
        raw_cursor.execute(
            f"""
            INSERT INTO tenants_incident
                (code, tenant_id, {", ".join(names)}, first_seen_at, last_synced_at)
            SELECT gen_random_uuid(), %(tenant)s, {", ".join(names)}, now(), now()
            FROM sync_incident_stage ORDER BY source, provider_id
            ON CONFLICT (tenant_id, source, provider_id) DO UPDATE
            SET {updates}, last_synced_at = EXCLUDED.last_synced_at
            WHERE EXCLUDED.updated_at_source > tenants_incident.updated_at_source
               OR (EXCLUDED.updated_at_source = tenants_incident.updated_at_source
                   AND EXCLUDED.raw IS DISTINCT FROM tenants_incident.raw)
            RETURNING (xmax = 0)
            """,  # noqa: S608
            {"tenant": tenant_pk},
        )
        written = [row[0] for row in raw_cursor.fetchall()]
        raw_cursor.execute(
            """
            SELECT i.id FROM tenants_incident i JOIN sync_incident_stage s
              ON i.tenant_id = %(tenant)s AND i.source = s.source
             AND i.provider_id = s.provider_id
            """,
            {"tenant": tenant_pk},
        )
        ids = [row[0] for row in raw_cursor.fetchall()]
    created = sum(1 for inserted in written if inserted)
    return created, len(written) - created, ids


def link_alerts(
    tenant_pk: int, *, written: list[Written], incident_ids: list[int]
) -> None:
    """Points alerts at their incident (an XDR one before a Graph one) and marks
    every copy of one alert but the primary as its duplicate."""
    alert_ids = [w.id for w in written]
    with connection.cursor() as cursor:
        if alert_ids:
            cursor.execute(
                f"""
                UPDATE tenants_alert a SET incident_id = m.incident_id
                FROM (
                    SELECT DISTINCT ON (a2.id) a2.id AS alert_id, i.id AS incident_id
                    FROM tenants_alert a2
                    JOIN tenants_incident i
                      ON i.tenant_id = a2.tenant_id AND i.source IN ('xdr', 'graph')
                     AND i.provider_id = a2.incident_provider_id
                    WHERE a2.id = ANY({_JSON_ARRAY}::bigint[])
                      AND a2.incident_provider_id <> ''
                    ORDER BY a2.id, (i.source = 'xdr') DESC
                ) m
                WHERE a.id = m.alert_id AND a.incident_id IS DISTINCT FROM m.incident_id
                """,  # noqa: S608 - a constant of this module
                [_dumps_json(alert_ids)],
            )
        if incident_ids:
            cursor.execute(
                """
                UPDATE tenants_alert a SET incident_id = i.id
                FROM tenants_incident i
                WHERE i.id = ANY(%s) AND a.tenant_id = i.tenant_id
                  AND a.incident_provider_id = i.provider_id
                  AND a.incident_id IS DISTINCT FROM i.id
                  AND (a.incident_id IS NULL OR i.source = 'xdr')
                """,
                [incident_ids],
            )
    if written:
        _link_duplicates(tenant_pk, written)


def _link_duplicates(tenant_pk: int, written: list[Written]) -> None:
    """Finds every copy of the written alerts in the tenant and points all but the
    highest ranked one at it. Reads ``raw`` only when Cloud Apps copies are involved
    (their link goes through Graph's / XDR's ``providerAlertId``)."""
    keys = {w.provider_id for w in written if w.source != "mcas"}
    origins = {w.origin for w in written if w.source != "mcas" and w.origin}
    mcas_ids = {w.provider_id for w in written if w.source == "mcas"}
    if not origins and not mcas_ids and not _copies_elsewhere(tenant_pk, written, keys):
        # No other source holds any of these alerts: each is alone in its group and
        # a primary, as an alert is from its first write until a copy appears (the
        # upserts never set duplicate_of; a deleted primary leaves NULL behind).
        return
    group_filter = Q(source__in=("mde", "graph", "xdr")) & Q(
        RawSQL(  # noqa: S611 - a constant of this module; the keys are a parameter
            f"provider_id = ANY({_JSON_ARRAY})",
            [_dumps_json(sorted(keys))],
            output_field=BooleanField(),
        )
    )
    if origins:
        group_filter |= Q(source="mcas", provider_id__in=origins)
    if mcas_ids:
        # The written Cloud Apps copies are members too: without them a new one
        # whose Graph copy is already stored counts as "alone" and stays a primary.
        group_filter |= Q(source="mcas", provider_id__in=mcas_ids) | Q(
            source__in=("graph", "xdr"), raw__providerAlertId__in=list(mcas_ids)
        )
    members = list(
        Alert.objects.filter(tenant_id=tenant_pk)
        .filter(group_filter)
        .values_list("id", "source", "provider_id", "duplicate_of_id")
    )
    if len(members) == len(written) and all(m[3] is None for m in members):
        return  # every copy is alone and a primary already (e.g. new MDE alerts)
    # Key of a copy: the Defender alert id; a Cloud Apps copy joins the group of the
    # Graph / XDR copy that names it as providerAlertId.
    mcas_group: dict[str, str] = {}
    if any(source == "mcas" for _, source, _, _ in members):
        known = {(w.source, w.provider_id): w.origin for w in written}
        unknown = [
            row_id
            for row_id, source, pid, _ in members
            if source in ("graph", "xdr") and (source, pid) not in known
        ]
        for source, pid, origin in Alert.objects.filter(id__in=unknown).values_list(
            "source", "provider_id", "raw__providerAlertId"
        ):
            known[(source, pid)] = str(origin) if origin else None
        for _, source, pid, _ in members:
            origin = known.get((source, pid))
            if source != "mcas" and origin:
                mcas_group.setdefault(origin, pid)
    groups: dict[str, list[tuple[int, str, int | None]]] = {}
    for row_id, source, pid, dup in members:
        key = mcas_group.get(pid, f"mcas:{pid}") if source == "mcas" else pid
        groups.setdefault(key, []).append((row_id, source, dup))
    fixes: list[Alert] = []
    for copies in groups.values():
        if len(copies) == 1 and copies[0][2] is None:
            continue
        primary = max(copies, key=lambda c: (ALERT_SOURCE_RANK[c[1]], -c[0]))[0]
        for row_id, _, dup in copies:
            wanted = None if row_id == primary else primary
            if dup != wanted:
                fixes.append(Alert(id=row_id, duplicate_of_id=wanted))
    if fixes:
        Alert.objects.bulk_update(fixes, ["duplicate_of"])


def _copies_elsewhere(tenant_pk: int, written: list[Written], keys: set[str]) -> bool:
    """Whether a source other than the written rows' one holds a copy of any of
    `keys` (True when the written rows are of several sources): index probes only,
    where reading every member back (the written rows included) cost a backfill
    about a tenth of its database time."""
    sources = {w.source for w in written}
    if len(sources) != 1:
        return True  # copies may be among the written rows: not decided here
    others = sorted({"mde", "graph", "xdr"} - sources)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT EXISTS (
                SELECT 1 FROM tenants_alert
                WHERE tenant_id = %s AND source = ANY(%s)
                  AND provider_id = ANY({_JSON_ARRAY}))
            """,  # noqa: S608 - a constant of this module
            [tenant_pk, others, _dumps_json(sorted(keys))],
        )
        return cursor.fetchone()[0]


# --- checks for tests and benchmarks --------------------------------------------------


def stored_versions(tenant: Tenant, source: str, *, incidents: bool = False):
    """{provider id: update time} of what we hold for one tenant and source."""
    from tenants.models import Incident

    model = Incident if incidents else Alert
    return dict(
        model.objects.filter(tenant=tenant, source=source).values_list(
            "provider_id", "updated_at_source"
        )
    )

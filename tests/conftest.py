"""Shared fixtures: real Postgres (pytest-django), real Redis, real Celery workers."""

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent
SHARED_DIR = PROJECT_DIR.parent / "shared"
ARTIFACTS_DIR = PROJECT_DIR / "test-artifacts"
# This test run's own Celery queue: workers of another run on the same Redis (a second
# checkout, a demo) never take our tasks, nor we theirs.
TEST_QUEUE = f"test-{uuid.uuid4().hex[:10]}"


def pytest_configure(config) -> None:
    from partnerportal.celery import app

    app.conf.task_default_queue = TEST_QUEUE


def pytest_unconfigure(config) -> None:
    """Drops what is left in this run's queue (e.g. canaries no worker answered)."""
    import redis
    from django.conf import settings

    with contextlib.suppress(redis.RedisError):
        redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2).delete(TEST_QUEUE)


@pytest.fixture(autouse=True)
def _forget_shared_values() -> Iterator[None]:
    """The queue shares some results for a few seconds through Redis (counts, menus,
    alarms; core.shared), keyed by scope: one test's must not answer
    the next test's requests."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
    with contextlib.suppress(redis.RedisError):
        for key in client.scan_iter(match="portal:*:shared:*", count=1000):
            client.delete(key)
    yield


class WorkerProcess:
    """A real `celery worker` process consuming from the real Redis broker."""

    def __init__(
        self,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.hostname = f"test-{uuid.uuid4().hex[:8]}@%h"
        env = dict(
            os.environ,
            **(env or {}),
            CELERY_QUEUE=TEST_QUEUE,
            DJANGO_SETTINGS_MODULE="tests.settings_worker",
        )
        self.log_path = ARTIFACTS_DIR / f"worker-{uuid.uuid4().hex[:8]}.log"
        ARTIFACTS_DIR.mkdir(exist_ok=True)
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "partnerportal",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                "2",
                "--pool",
                "prefork",
                "--without-gossip",
                "--without-mingle",
                "-n",
                self.hostname,
                *(extra_args or []),
            ],
            cwd=PROJECT_DIR,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Its own process group: the pool's children and an embedded beat (-B)
            # are forked, and outlive a worker killed or stopped on its own.
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        from partnerportal.celery import app

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"worker exited with {self.process.returncode}: "
                    f"{self.log_path.read_text()[-2000:]}"
                )
            replies = app.control.ping(timeout=0.5)
            name = self.hostname.replace("%h", "")
            if any(next(iter(reply)).startswith(name) for reply in replies):
                return
        raise RuntimeError(f"worker not ready in {timeout} s: {self.log_path}")

    def stop(self) -> None:
        """Stops the worker as its supervisor would (SIGTERM, then SIGKILL after 20 s),
        then kills whatever of its process group is left (its beat, orphaned pool
        processes), so no process of a test keeps polling the test database."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._log.close()


@pytest.fixture
def celery_worker_process(transactional_db) -> Iterator[WorkerProcess]:
    """A running worker for this test; stopped (and waited for) afterwards."""
    worker = WorkerProcess()
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def emulator(tmp_path_factory) -> Iterator:
    """The Microsoft cloud emulator over real HTTPS on a loopback port."""
    from emulator.testing import run_emulator

    with run_emulator(tmp_path_factory.mktemp("emulator"), tenants=3) as running:
        yield running


@pytest.fixture
def portal_on_emulator(settings, emulator) -> dict[str, str]:
    """Points this process's settings at the emulator; returns the same as env vars.

    Worker processes started by a test take the returned variables.
    """
    from demo.emulation import emulator_environment
    from tenants import microsoft

    env = emulator_environment(emulator.description)
    env["TENANT_VERIFY_RETRY_SECONDS"] = "1"
    for name, value in env.items():
        if name in ("MS_EMULATOR",):
            setattr(settings, name, True)
        elif name == "TENANT_VERIFY_RETRY_SECONDS":
            setattr(settings, name, int(value))
        else:
            setattr(settings, name, value)
    microsoft.reset_client()
    yield env
    microsoft.reset_client()


@pytest.fixture(scope="session")
def collected_static(tmp_path_factory) -> Path:
    """A STATIC_ROOT that collectstatic filled with the production settings, as the
    image's build does: production pages take their static names from its manifest
    and fail without one."""
    from tests.partnerportal.test_settings import PRODUCTION, run_django

    root = tmp_path_factory.mktemp("staticfiles")
    result = run_django(
        {**PRODUCTION, "STATIC_ROOT": str(root)}, "collectstatic", "--noinput"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return root


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED_DIR.is_dir():
        pytest.skip(f"../shared is absent ({SHARED_DIR}): real payloads are not here")
    return SHARED_DIR

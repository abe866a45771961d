"""`make demo`, stopped with Ctrl-C and started again, shows the same living portal.

The demo runs as `make demo` runs it (emulator, web, worker, beat, customers made
through the consent flow) on the test database, free ports and this run's own queue;
both runs share one run folder, as two `make demo` in one clone do.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from demo.embedded import free_port
from tenants.models import Tenant
from tests.conftest import PROJECT_DIR, TEST_QUEUE

pytestmark = pytest.mark.integration

BANNER_END = "Press Ctrl-C to stop everything."


def start_demo(run_dir: Path, log_name: str) -> tuple[subprocess.Popen, Path]:
    log_path = run_dir / log_name
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable, "manage.py", "demo",
                "--port", str(free_port()), "--emulator-port", str(free_port()),
                "--run-dir", str(run_dir),
            ],
            cwd=PROJECT_DIR,
            env=dict(
                os.environ,
                DJANGO_SETTINGS_MODULE="tests.settings_worker",
                CELERY_QUEUE=TEST_QUEUE,
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    return process, log_path


def wait_for_banner(process: subprocess.Popen, log_path: Path) -> str:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        output = log_path.read_text(errors="replace")
        if BANNER_END in output:
            time.sleep(2)  # anything printed after the banner would show by now
            return log_path.read_text(errors="replace")
        if process.poll() is not None:
            raise AssertionError(f"the demo exited early:\n{output[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"no banner from the demo in 240 s:\n{output[-3000:]}")


def stop_with_ctrl_c(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


def tenant_states() -> dict[str, str]:
    return dict(Tenant.objects.values_list("customer__name", "state"))


def assert_banner_is_last_and_alone(output: str, run_dir: Path) -> None:
    assert output.rstrip().endswith(BANNER_END), output[-2000:]
    banner = output[output.rindex("Partner portal: ") :]
    assert "sign in as demo / demo-portal-2026" in banner
    assert "http://127.0.0.1:" in banner
    assert "/adminconsent?" in banner  # the waiting customer's consent link
    assert str(run_dir / ".embedded" / "logs") in banner
    # The services' output is in their log files, not on the newcomer's screen.
    for celery_line in ("celery@", "] Task ", "succeeded in", "beat: Starting"):
        assert celery_line not in output, output[-2000:]
    assert (run_dir / ".embedded" / "logs" / "worker.log").stat().st_size > 0


def test_a_restarted_demo_shows_the_same_verified_customers(transactional_db, tmp_path):
    process, log_path = start_demo(tmp_path, "first.log")
    try:
        first_output = wait_for_banner(process, log_path)
    finally:
        first_code = stop_with_ctrl_c(process)
    assert first_code == 0, log_path.read_text()[-3000:]
    assert_banner_is_last_and_alone(first_output, tmp_path)
    before = tenant_states()
    verified = {name for name, state in before.items() if state == "verified"}
    assert len(verified) == 4  # three syncing and the throttled one

    process, log_path = start_demo(tmp_path, "second.log")
    try:
        second_output = wait_for_banner(process, log_path)
        assert "kept its world from the last run" in second_output
        assert_banner_is_last_and_alone(second_output, tmp_path)
        # Starting, the demo asked for every syncing tenant's access to be checked
        # again, and beat syncs them all: a tenant whose consent the emulator forgot
        # reads revoked within seconds.
        hold_until = time.monotonic() + 20
        while time.monotonic() < hold_until:
            assert tenant_states() == before
            time.sleep(1)
    finally:
        assert stop_with_ctrl_c(process) == 0, log_path.read_text()[-3000:]

"""`make demo`: the whole product on one machine, in the foreground.

Starts the Microsoft cloud emulator, migrates, creates the demo staff account, runs the
web server, a Celery worker and beat, creates the demo customers through the consent
flow, and keeps everything running until Ctrl-C, which stops it all in order.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from demo.emulation import emulator_environment

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo-portal-2026"  # noqa: S105  (a printed demo login, never production)
DEMO_TENANTS = 6


class Command(BaseCommand):
    help = "Run the emulator, web, worker and beat in the foreground for a demo."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--emulator-port", type=int, default=8443)
        parser.add_argument(
            "--no-seed", action="store_true", help="start empty: no demo customers"
        )
        parser.add_argument(
            "--run-dir",
            type=Path,
            default=None,
            help="where the emulator's state and beat's schedule go (default: here)",
        )

    def handle(
        self, *args, port: int, emulator_port: int, no_seed: bool, run_dir, **options
    ):
        run_dir = (run_dir or Path(settings.BASE_DIR)).resolve()
        python = sys.executable
        env = dict(os.environ, DEBUG="true", PYTHONUNBUFFERED="1")
        env.setdefault("PORTAL_BASE_URL", f"http://127.0.0.1:{port}")
        processes: list[tuple[str, subprocess.Popen]] = []
        signal.signal(signal.SIGTERM, _interrupt)
        # Ctrl-C stops everything even when a parent shell started us ignoring it.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            env.update(self.start_emulator(run_dir, emulator_port, processes))
            self.stdout.write("Migrating the database…")
            self.run_step([python, "manage.py", "migrate", "--noinput", "-v", "0"], env)
            self.create_demo_staff()
            web = [python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
            celery = [python, "-m", "celery", "-A", "partnerportal"]
            (run_dir / ".embedded").mkdir(parents=True, exist_ok=True)
            schedule = str(run_dir / ".embedded" / "celerybeat-schedule")
            self.spawn(processes, "web", web, env)
            self.spawn(processes, "worker", [*celery, "worker", "-l", "INFO"], env)
            self.spawn(
                processes, "beat", [*celery, "beat", "-l", "INFO", "-s", schedule], env
            )
            self.wait_for_web(port, processes)
            if not no_seed:
                self.run_step(
                    [
                        python, "manage.py", "seed_demo",
                        "--state-dir", str(run_dir / ".emulator"),
                        "--portal-url", f"http://127.0.0.1:{port}",
                    ],
                    env,
                )  # fmt: skip
            self.stdout.write(
                self.style.SUCCESS(
                    f"\nPartner portal: http://127.0.0.1:{port}/\n"
                    f"  sign in as {DEMO_USERNAME} / {DEMO_PASSWORD}\n"
                    f"  Django admin: http://127.0.0.1:{port}/admin/\n"
                    f"  health: http://127.0.0.1:{port}/healthz\n"
                    "Press Ctrl-C to stop everything.\n"
                )
            )
            self.watch(processes)
        except KeyboardInterrupt:
            self.stdout.write("\nStopping…")
        finally:
            self.stop(processes)

    def start_emulator(self, run_dir: Path, port: int, processes) -> dict[str, str]:
        """Starts the emulator and returns the settings that point the portal at it."""
        state_dir = run_dir / ".emulator"
        info_path = state_dir / "emulator.json"
        info_path.unlink(missing_ok=True)
        command = [
            sys.executable, "-m", "emulator", "serve",
            "--port", str(port), "--state-dir", str(state_dir),
            "--tenants", str(DEMO_TENANTS), "--alerts-per-minute", "2",
        ]  # fmt: skip
        self.spawn(processes, "emulator", command, dict(os.environ))
        deadline = time.monotonic() + 30
        while not info_path.is_file():
            self.check_alive(processes)
            if time.monotonic() > deadline:
                raise CommandError("The emulator did not start in 30 s.")
            time.sleep(0.1)
        return emulator_environment(json.loads(info_path.read_text()))

    def create_demo_staff(self) -> None:
        user, _ = get_user_model().objects.get_or_create(
            username=DEMO_USERNAME, defaults={"is_staff": True, "is_superuser": True}
        )
        user.set_password(DEMO_PASSWORD)
        user.save()

    def run_step(self, command: list[str], env: dict[str, str]) -> None:
        subprocess.run(command, cwd=settings.BASE_DIR, env=env, check=True)

    def spawn(self, processes, name: str, command: list[str], env) -> None:
        # Own sessions: Ctrl-C reaches only this command, which then stops the parts
        # in order instead of racing their own shutdown.
        process = subprocess.Popen(
            command, cwd=settings.BASE_DIR, env=env, start_new_session=True
        )
        processes.append((name, process))

    def wait_for_web(self, port: int, processes, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive(processes)
            try:
                with urllib.request.urlopen(  # noqa: S310  (our own loopback URL)
                    f"http://127.0.0.1:{port}/accounts/login/", timeout=2
                ):
                    return
            except OSError:
                time.sleep(0.3)
        raise CommandError(f"The web server did not answer on port {port}.")

    def watch(self, processes) -> None:
        while True:
            self.check_alive(processes)
            time.sleep(0.5)

    def check_alive(self, processes) -> None:
        for name, process in processes:
            if process.poll() is not None:
                raise CommandError(
                    f"{name} stopped unexpectedly (exit code {process.returncode})."
                )

    def stop(self, processes) -> None:
        for _, process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in reversed(processes):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{name} did not stop in 15 s; killing it.")
                process.kill()


def _interrupt(signum, frame) -> None:
    """SIGTERM stops the demo the way Ctrl-C does: every part, in order."""
    raise KeyboardInterrupt

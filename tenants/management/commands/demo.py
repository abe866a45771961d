"""`make demo`: the whole product on one machine, in the foreground.

Starts the Microsoft cloud emulator, migrates, creates the demo staff account, then runs
the web server, a Celery worker and beat until Ctrl-C, which stops them all.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from partnerportal.emulation import emulator_environment

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo-portal-2026"  # noqa: S105  (a printed demo login, never production)


class Command(BaseCommand):
    help = "Run the emulator, web, worker and beat in the foreground for a demo."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--emulator-port", type=int, default=8443)

    def handle(self, *args, port: int, emulator_port: int, **options) -> None:
        base_dir = Path(settings.BASE_DIR)
        env = dict(os.environ, DEBUG="true", PYTHONUNBUFFERED="1")
        processes: list[tuple[str, subprocess.Popen]] = []
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            if (base_dir / "emulator" / "__main__.py").is_file():
                env.update(self.start_emulator(base_dir, emulator_port, processes))
            self.stdout.write("Migrating the database…")
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                cwd=base_dir,
                env=env,
                check=True,
            )
            self.create_demo_staff()
            python = sys.executable
            self.spawn(
                processes,
                "web",
                [
                    python,
                    "manage.py",
                    "runserver",
                    f"127.0.0.1:{port}",
                    "--noreload",
                ],
                base_dir,
                env,
            )
            self.spawn(
                processes,
                "worker",
                [
                    python,
                    "-m",
                    "celery",
                    "-A",
                    "partnerportal",
                    "worker",
                    "--loglevel",
                    "INFO",
                    "--concurrency",
                    "2",
                ],
                base_dir,
                env,
            )
            self.spawn(
                processes,
                "beat",
                [
                    python,
                    "-m",
                    "celery",
                    "-A",
                    "partnerportal",
                    "beat",
                    "--loglevel",
                    "INFO",
                    "--schedule",
                    str(base_dir / ".embedded" / "celerybeat-schedule"),
                ],
                base_dir,
                env,
            )
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

    def start_emulator(self, base_dir: Path, port: int, processes) -> dict[str, str]:
        """Starts the emulator and returns the settings that point the portal at it."""
        state_dir = base_dir / ".emulator"
        info_path = state_dir / "emulator.json"
        info_path.unlink(missing_ok=True)
        self.spawn(
            processes,
            "emulator",
            [
                sys.executable,
                "-m",
                "emulator",
                "serve",
                "--port",
                str(port),
                "--state-dir",
                str(state_dir),
            ],
            base_dir,
            dict(os.environ),
        )
        deadline = time.monotonic() + 30
        while not info_path.is_file():
            if processes[-1][1].poll() is not None or time.monotonic() > deadline:
                raise CommandError("The emulator did not start; see its output above.")
            time.sleep(0.1)
        info = json.loads(info_path.read_text())
        return emulator_environment(info)

    def create_demo_staff(self) -> None:
        user_model = get_user_model()
        user, _ = user_model.objects.get_or_create(
            username=DEMO_USERNAME, defaults={"is_staff": True, "is_superuser": True}
        )
        user.set_password(DEMO_PASSWORD)
        user.save()

    def spawn(self, processes, name: str, command: list[str], cwd: Path, env) -> None:
        # Own sessions: Ctrl-C reaches only this command, which then stops the parts
        # in order instead of racing their own shutdown.
        processes.append(
            (
                name,
                subprocess.Popen(command, cwd=cwd, env=env, start_new_session=True),
            )
        )

    def watch(self, processes) -> None:
        while True:
            for name, process in processes:
                if process.poll() is not None:
                    raise CommandError(
                        f"{name} stopped unexpectedly (exit code {process.returncode})."
                    )
            time.sleep(0.5)

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

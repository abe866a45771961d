"""`make demo`: the whole product on one machine, in the foreground.

Starts the Microsoft cloud emulator, migrates, creates the demo staff account, runs the
web server, a Celery worker and beat, creates the demo customers through the consent
flow, and keeps everything running until Ctrl-C, which stops it all in order.

The services write their output to log files under `<run-dir>/.embedded/logs/`; the
terminal shows a few progress lines and then the banner (logins, URLs, the waiting
consent link), which stays last on screen. After it, only what needs a person is
printed: a service that stopped, with its log file, before everything stops.

The emulator keeps its world (tenants, consent, secrets, alerts) in
`<run-dir>/.emulator/world.json`, so a second `make demo` shows the same customers,
still verified; `--fresh` starts a new world and empties the database with it.
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
from tenants.models import Tenant

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
            help="where the emulator's state, beat's schedule and the logs go "
            "(default: here)",
        )
        parser.add_argument(
            "--fresh",
            action="store_true",
            help="start anew: a new emulator world and an emptied database",
        )

    def handle(
        self,
        *args,
        port: int,
        emulator_port: int,
        no_seed: bool,
        run_dir,
        fresh: bool,
        **options,
    ):
        run_dir = (run_dir or Path(settings.BASE_DIR)).resolve()
        self.log_dir = run_dir / ".embedded" / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        python = sys.executable
        env = dict(os.environ, DEBUG="true", PYTHONUNBUFFERED="1")
        env.setdefault("PORTAL_BASE_URL", f"http://127.0.0.1:{port}")
        processes: list[tuple[str, subprocess.Popen]] = []
        signal.signal(signal.SIGTERM, _interrupt)
        # Ctrl-C stops everything even when a parent shell started us ignoring it.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            self.stdout.write("Starting the Microsoft cloud emulator…")
            emulator = self.start_emulator(run_dir, emulator_port, processes, fresh)
            env.update(emulator_environment(emulator))
            self.stdout.write("Migrating the database…")
            self.run_step(
                "migrate",
                [python, "manage.py", "migrate", "--noinput", "-v", "1"],
                env,
            )
            if fresh:
                self.run_step("flush", [python, "manage.py", "flush", "--noinput"], env)
            remembered = Tenant.objects.count()
            self.create_demo_staff()
            web = [python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
            celery = [python, "-m", "celery", "-A", "partnerportal"]
            (run_dir / ".embedded").mkdir(parents=True, exist_ok=True)
            schedule = str(run_dir / ".embedded" / "celerybeat-schedule")
            self.stdout.write("Starting web, worker and beat…")
            self.spawn(processes, "web", web, env)
            self.spawn(processes, "worker", [*celery, "worker", "-l", "INFO"], env)
            self.spawn(
                processes, "beat", [*celery, "beat", "-l", "INFO", "-s", schedule], env
            )
            self.wait_for_web(port, processes)
            ready = None
            if not no_seed:
                self.stdout.write(
                    "Creating the demo customers through the consent flow "
                    "(about a minute the first time)…"
                )
                summary = run_dir / ".embedded" / "demo-data.json"
                summary.unlink(missing_ok=True)
                self.run_step(
                    "seed_demo",
                    [
                        python, "manage.py", "seed_demo",
                        "--state-dir", str(run_dir / ".emulator"),
                        "--portal-url", f"http://127.0.0.1:{port}",
                        "--summary", str(summary),
                    ],
                    env,
                )  # fmt: skip
                ready = json.loads(summary.read_text())
            self.stdout.write(self.banner(port, emulator, ready, remembered))
            self.stdout.flush()
            self.watch(processes)
        except KeyboardInterrupt:
            self.stdout.write("\nStopping…")
        finally:
            # A CommandError (a service stopped, naming its log) is printed by
            # Django after this, as the last line, once everything has stopped.
            self.stop(processes)

    def banner(
        self, port: int, emulator: dict, ready: dict | None, remembered: int
    ) -> str:
        """What the newcomer needs, in one screen: printed last, so it stays."""
        url = f"http://127.0.0.1:{port}"
        world = emulator.get("world") or {}
        lines = [
            "",
            f"Partner portal: {url}/",
            f"  sign in as {DEMO_USERNAME} / {DEMO_PASSWORD}",
        ]
        if ready:
            analyst = ready["analyst"]
            lines.append(
                f"  or as {analyst['username']} / {analyst['password']} "
                f"(a staff member who sees only {analyst['customer']})"
            )
        lines += [
            f"  Django admin: {url}/admin/   health: {url}/healthz",
        ]
        waiting = ready and ready["waiting"]
        if waiting:
            lines += [
                f"  {waiting['customer']} has a consent link waiting. Play its admin: "
                "open",
                f"    {waiting['url']}",
                f"  and sign in as {waiting['upn']} / {waiting['password']} (your "
                "browser will warn about the emulator's own certificate authority,",
                f"  {ready['ca_path']}: trust it or continue).",
            ]
        elif ready:
            lines.append("  Every demo customer is onboarded; add one to try the flow.")
        if world.get("restored"):
            lines.append(
                f"Microsoft (emulated) at {emulator['base_url']} kept its world "
                f"from the last run: {world['path']}"
            )
        else:
            lines.append(
                f"Microsoft (emulated) at {emulator['base_url']} started a new world, "
                f"saved in {world.get('path', 'its state folder')}"
            )
            if remembered:
                lines.append(
                    f"  but the database remembers {remembered} tenants of an earlier "
                    "one: they will read revoked. `make demo DEMO_ARGS=--fresh` "
                    "resets both."
                )
        lines += [
            "  a restart shows the same customers; --fresh starts anew",
            f"Logs of emulator, web, worker and beat: {self.log_dir}/",
            "Press Ctrl-C to stop everything.",
            "",
        ]
        return self.style.SUCCESS("\n".join(lines))

    def start_emulator(self, run_dir: Path, port: int, processes, fresh: bool) -> dict:
        """Starts the emulator and returns its description (`emulator.json`)."""
        state_dir = run_dir / ".emulator"
        info_path = state_dir / "emulator.json"
        info_path.unlink(missing_ok=True)
        command = [
            sys.executable, "-m", "emulator", "serve",
            "--port", str(port), "--state-dir", str(state_dir),
            "--tenants", str(DEMO_TENANTS), "--alerts-per-minute", "2",
            *(["--fresh"] if fresh else []),
        ]  # fmt: skip
        self.spawn(processes, "emulator", command, dict(os.environ))
        deadline = time.monotonic() + 30
        while not info_path.is_file():
            self.check_alive(processes)
            if time.monotonic() > deadline:
                raise CommandError("The emulator did not start in 30 s.")
            time.sleep(0.1)
        return json.loads(info_path.read_text())

    def create_demo_staff(self) -> None:
        user, _ = get_user_model().objects.get_or_create(
            username=DEMO_USERNAME, defaults={"is_staff": True, "is_superuser": True}
        )
        user.set_password(DEMO_PASSWORD)
        user.save()

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def run_step(self, name: str, command: list[str], env: dict[str, str]) -> None:
        """Runs one set-up step to the end, its output in its log file."""
        with self.log_path(name).open("w") as log:
            result = subprocess.run(
                command,
                cwd=settings.BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode != 0:
            tail = self.log_path(name).read_text(errors="replace").splitlines()[-15:]
            raise CommandError(
                f"{name} failed (exit code {result.returncode}); its last lines:\n"
                + "\n".join(f"  {line}" for line in tail)
                + f"\nIts log: {self.log_path(name)}"
            )

    def spawn(self, processes, name: str, command: list[str], env) -> None:
        # Own sessions: Ctrl-C reaches only this command, which then stops the parts
        # in order instead of racing their own shutdown. Output goes to a log file:
        # the terminal keeps the banner.
        with self.log_path(name).open("w") as log:
            process = subprocess.Popen(
                command,
                cwd=settings.BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
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
                    f"{name} stopped unexpectedly (exit code {process.returncode}); "
                    f"its log: {self.log_path(name)}"
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

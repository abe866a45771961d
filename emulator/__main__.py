"""`python -m emulator serve [...]`: run the Microsoft cloud emulator over HTTPS."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

try:
    from emulator import app as emulator_app
    from emulator.server import EmulatorServer
except ModuleNotFoundError as missing:
    # Its libraries are the `emulator` extra, which a production install leaves out.
    if missing.name not in ("werkzeug", "cheroot"):
        raise
    sys.exit(
        f"The emulator needs {missing.name}: install the portal with its emulator "
        "extra (pip install '.[emulator]')."
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m emulator")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the emulator over HTTPS")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8443, help="0 picks a free port")
    serve.add_argument("--state-dir", default=".emulator")
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument("--tenants", type=int, default=3)
    serve.add_argument("--alerts-per-minute", type=float, default=1.0)
    serve.add_argument(
        "--redirect-uri",
        action="append",
        default=[],
        help="register another consent/sign-in redirect URI (repeatable)",
    )
    serve.add_argument(
        "--consented", action="store_true", help="start with every tenant consented"
    )
    serve.add_argument("--threads", type=int, default=64)
    serve.add_argument(
        "--fresh",
        action="store_true",
        help="start a new world, replacing the one saved in the state folder",
    )
    serve.add_argument(
        "--save-every",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="also save the world this often while serving (0: only when stopping)",
    )
    return parser


def serve(args: argparse.Namespace) -> int:
    from emulator import persistence, tls

    saved, notes = _saved_world(args, persistence)
    tls_files = tls.ensure_server_tls(args.state_dir)
    server = EmulatorServer(
        args.host,
        args.port,
        tls_files.cert_path,
        tls_files.key_path,
        threads=args.threads,
    )
    options = {
        "seed": args.seed,
        "tenants": args.tenants,
        "alerts_per_minute": args.alerts_per_minute,
        "redirect_uris": tuple(args.redirect_uri),
        "base_url": server.base_url,
        "consented": args.consented,
    }
    try:
        application, world, files = emulator_app.create_app(
            args.state_dir, saved=saved, **options
        )
    except persistence.UnreadableWorld as exc:
        saved, notes = None, _set_aside(args, persistence, exc)
        application, world, files = emulator_app.create_app(args.state_dir, **options)
    server.set_app(application)
    world_path = persistence.save(world, args.state_dir)
    description = emulator_app.describe_world(world, files, server.base_url)
    description["world"] = {"path": str(world_path.resolve()), "restored": bool(saved)}
    json_path = emulator_app.write_description(files, description)

    stopping = threading.Event()

    def _stop(signum, frame):
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.stop, daemon=True).start()

    def _save_periodically():
        while not stopping.wait(args.save_every):
            try:
                persistence.save(world, args.state_dir)
            except OSError as exc:
                print(f"Could not save the world: {exc}", file=sys.stderr, flush=True)

    if args.save_every > 0:
        threading.Thread(target=_save_periodically, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    lines = [
        f"Emulator listening on {server.base_url}",
        f"  CA certificate:  {description['ca_path']}",
        f"  client id:       {description['client_id']}",
        f"  client secret:   {description['client_secret']}",
        f"  certificate:     {description['cert_path']}",
        f"  private key:     {description['key_path']}",
        f"  thumbprint:      {description['cert_thumbprint']}",
        f"  control token:   {description['control_token']}",
        f"  home tenant:     {world.home_tenant.id}  {world.home_tenant.name}",
    ]
    lines += [f"  tenant:          {t.id}  {t.name}" for t in world.tenants.values()]
    lines.append(f"  details (JSON):  {json_path.resolve()}")
    lines.append(f"  saved world:     {world_path.resolve()}")
    lines += notes
    print("\n".join(lines), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()
    stopping.set()
    # Under the world's lock: a periodic save still writing finishes first.
    persistence.save(world, args.state_dir)
    print(f"Emulator stopped; world saved to {world_path.resolve()}", flush=True)
    return 0


def _saved_world(args: argparse.Namespace, persistence) -> tuple[dict | None, list]:
    """The world saved in the state folder (None: start a new one) and what to say."""
    path = persistence.world_path(args.state_dir)
    if args.fresh:
        return None, [f"  new world (--fresh); it replaces {path}"]
    try:
        saved = persistence.read(args.state_dir)
    except persistence.UnreadableWorld as exc:
        return None, _set_aside(args, persistence, exc)
    if saved is None:
        return None, ["  new world"]
    return saved, [
        f"  world reloaded from {path} (seed {saved['seed']}, "
        f"{len(saved['tenants'])} tenants); --fresh starts a new one"
    ]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return 2


def _set_aside(args: argparse.Namespace, persistence, error: Exception) -> list[str]:
    """Keeps an unreadable saved world for a look, says so; the start-up note."""
    kept = persistence.set_aside(args.state_dir)
    print(
        f"The saved world could not be loaded: {error}.\n"
        f"It was moved to {kept}; starting a new world.",
        file=sys.stderr,
        flush=True,
    )
    return [f"  new world (the saved one was unreadable; see {kept})"]


if __name__ == "__main__":
    sys.exit(main())

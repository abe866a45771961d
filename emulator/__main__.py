"""`python -m emulator serve [...]`: run the Microsoft cloud emulator over HTTPS."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from emulator import app as emulator_app
from emulator.server import EmulatorServer


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
    return parser


def serve(args: argparse.Namespace) -> int:
    from emulator import tls

    tls_files = tls.ensure_server_tls(args.state_dir)
    server = EmulatorServer(
        args.host,
        args.port,
        tls_files.cert_path,
        tls_files.key_path,
        threads=args.threads,
    )
    application, world, files = emulator_app.create_app(
        args.state_dir,
        seed=args.seed,
        tenants=args.tenants,
        alerts_per_minute=args.alerts_per_minute,
        redirect_uris=tuple(args.redirect_uri),
        base_url=server.base_url,
        consented=args.consented,
    )
    server.set_app(application)
    description = emulator_app.describe_world(world, files, server.base_url)
    json_path = emulator_app.write_description(files, description)

    stopping = threading.Event()

    def _stop(signum, frame):
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.stop, daemon=True).start()

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
    print("\n".join(lines), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()
    print("Emulator stopped.", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""Queue latency at 10,000 and at 1,000,000 alerts over 1,000 tenants, in one run.

Not a test: `DATABASE_URL=postgres://... python bench/dashboard.py`. It creates its own
databases (`bench_dashboard_small` and `bench_dashboard` on the DATABASE_URL server;
dropped at the end unless --keep), seeds customers, tenants and alerts with
INSERT ... SELECT generate_series (the large one is a copy of the small one, grown),
starts gunicorn on loopback as the Dockerfile does (3 sync workers) for each, and
measures the queue page over real HTTP with 8 concurrent clients, signed in as a
superuser (every tenant) and as a staff member assigned to 50 customers: the default
view, and a filtered view with free-text search (the targeted pair), plus a common
word and an IP for the record.

The two sizes are measured in alternating rounds (small, large, large, small, ...)
rather than one after the other, so that a machine whose speed drifts over minutes
(a shared one does) slows both alike and the ratio compares like with like.

Prints p50/p95 per view and size, the 1,000,000 / 10,000 p95 ratio, and the load
average after each view: the machine may be shared, so read the load with the times.

Targets (issue 6): p95 <= 150 ms at 1,000,000 alerts; p95 ratio <= 1.5.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

# bench/ is this script's folder; importing common also makes SIGTERM an exception.
from common import settle, start_child, stop_child  # noqa: E402

DB_NAME = "bench_dashboard"  # the large one; the small one is DB_NAME + "_small"
SMALL_DB_NAME = DB_NAME + "_small"
# collectstatic's output for the servers (production settings need its manifest).
STATIC_ROOT = PROJECT_DIR / ".embedded" / "bench-staticfiles"
# Rounds per view and size, alternating between the sizes.
ROUNDS = 4
TENANTS = 1000
TENANTS_PER_CUSTOMER = 2
CLIENTS = 8
# A staff member assigned to this many customers (of 500) is measured too.
STAFF_CUSTOMERS = 50
# (who, path) per view. The first two carry the targets (a superuser, who sees every
# tenant). A host-name prefix is the typical search; a common word ("powershell", in
# 1 of 6 titles) and an IP are reported for the record, as is a scoped staff member.
VIEWS = {
    "default": ("superuser", "/queue"),
    "filtered + search": ("superuser", "/queue?severity=high&status=new&q=ws-012"),
    "common-word search": ("superuser", "/queue?q=powershell"),
    "IP search": ("superuser", "/queue?q=10.17.23.7"),
    "staff default": ("staff", "/queue"),
    "staff filtered": ("staff", "/queue?severity=high&status=new&q=ws-012"),
}
TARGETED = ("default", "filtered + search")
# gunicorn as the Dockerfile and docker-compose.yml run it: 3 sync workers. Each takes
# a connection only when it is free, so 8 clients queue fairly; gthread workers pin
# keep-alive connections to processes, and a process holding 3 of the 8 serves them
# through one GIL while other cores idle (p95 about 2x p50 in this bench).
SERVER_OPTIONS = ("--workers", "3")
P95_TARGET_MS = 150.0
RATIO_TARGET = 1.5

TITLES = [
    "Suspicious PowerShell command line",
    "Ransomware behavior detected in the file system",
    "Suspicious LSASS memory access",
    "Anomalous sign-in from a new country",
    "Malicious URL clicked in an email",
    "Unsanctioned cloud app used",
    "Credential dumping tool detected",
    "Suspicious scheduled task created",
    "Possible lateral movement over SMB",
    "Mass download by a single user",
    "Encoded PowerShell download cradle",
    "Process injection into a system process",
]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def database_url(name: str) -> str:
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path=f"/{name}"))


def sql(conn, statement: str, params=None) -> None:
    conn.execute(statement, params)


def create_database(name: str, *, template: str | None = None) -> None:
    """A fresh database: migrated, or a copy of `template`."""
    import psycopg

    with psycopg.connect(database_url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        copy = f' TEMPLATE "{template}"' if template else ""
        conn.execute(f'CREATE DATABASE "{name}"{copy}')
    if not template:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v", "0"],
            cwd=PROJECT_DIR,
            check=True,
            env=server_env(name),
        )


def drop_databases() -> None:
    import psycopg

    with psycopg.connect(database_url("postgres"), autocommit=True) as conn:
        for name in (SMALL_DB_NAME, DB_NAME):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_env(name: str = SMALL_DB_NAME) -> dict[str, str]:
    return dict(
        os.environ,
        DEBUG="false",
        SECRET_KEY="bench-only-" + "k" * 40,
        ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=database_url(name),
        REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        MS_CLIENT_ID="00000000-0000-0000-0000-000000000001",
        MS_CLIENT_SECRET="bench-not-used",
        PORTAL_BASE_URL="https://127.0.0.1",
        SECURE_SSL_REDIRECT="false",
        LOG_LEVEL="WARNING",
        STATIC_ROOT=str(STATIC_ROOT),
    )


def collect_static() -> None:
    """The production pages name their static files from collectstatic's manifest."""
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=PROJECT_DIR,
        check=True,
        env=server_env(),
    )


def seed_tenants(conn) -> None:
    """Customers, tenants (each with healthy syncs) and one superuser session."""
    customers = TENANTS // TENANTS_PER_CUSTOMER
    sql(
        conn,
        """INSERT INTO tenants_customer (code, name, contact_email, expected_tenant,
               created_at)
           SELECT gen_random_uuid(), 'Customer ' || lpad(i::text, 4, '0'), '', '', now()
           FROM generate_series(1, %s) AS i""",
        [customers],
    )
    sql(
        conn,
        """INSERT INTO tenants_tenant (code, customer_id, tenant_id, display_name,
               primary_domain, region, mcas_url, state, last_error, created_at,
               updated_at, verified_at)
           SELECT gen_random_uuid(), c.id, gen_random_uuid(),
                  'tenant-' || c.id || '-' || k || '.example', '', 'eu', '',
                  'verified', '', now(), now(), now()
           FROM tenants_customer c, generate_series(1, %s) AS k""",
        [TENANTS_PER_CUSTOMER],
    )
    sql(
        conn,
        """INSERT INTO tenants_syncstate (tenant_id, source, backfill_done,
               lease_owner, consecutive_failures, last_error, last_success_at, paging)
           SELECT t.id, s, true, '', 0, '', now(), '{}'::jsonb
           FROM tenants_tenant t, unnest(array['mde_alerts', 'graph_alerts']) AS s""",
    )


def seed_alerts(conn, first: int, last: int) -> None:
    """Alerts first..last spread over every tenant and the last 90 days."""
    titles = "ARRAY[" + ", ".join(f"'{t}'" for t in TITLES) + "]"
    # Only this module's constants are formatted into the statement.
    sql(
        conn,
        f"""INSERT INTO tenants_alert (code, tenant_id, source, provider_id, title,
               description, severity, status, category, classification, determination,
               assigned_to, created_at_source, updated_at_source, incident_provider_id,
               devices, users, evidence, evidence_summary, entities_text, portal_url,
               raw, first_seen_at, last_synced_at)
           SELECT gen_random_uuid(), t.id,
                  (ARRAY['mde', 'graph', 'xdr', 'mcas'])[1 + i %% 4],
                  'da' || i, ({titles})[1 + (i * 7) %% {len(TITLES)}] || ' #' || i,
                  'Detected on a device of the customer; see the evidence.',
                  CASE WHEN i %% 10 = 0 THEN 'high' WHEN i %% 10 < 4 THEN 'medium'
                       WHEN i %% 10 < 7 THEN 'low' WHEN i %% 10 < 9 THEN
                       'informational' ELSE 'unknown' END,
                  CASE WHEN i %% 5 < 2 THEN 'new' WHEN i %% 5 = 2 THEN 'in_progress'
                       ELSE 'resolved' END,
                  (ARRAY['Execution', 'CredentialAccess', 'Ransomware',
                         'InitialAccess'])[1 + i %% 4],
                  '', '', CASE WHEN i %% 3 = 0 THEN 'analyst@mssp.example' ELSE '' END,
                  now() - make_interval(secs => (%(last)s - i) * %(step)s)
                      - interval '1 minute',
                  now() - make_interval(secs => (%(last)s - i) * %(step)s),
                  '', '[]'::jsonb, '[]'::jsonb, '[]'::jsonb, '',
                  'ws-' || lpad((i %% 20000)::text, 5, '0') || '.corp' || t.id
                      || '.example user' || (i %% 5000) || ' 10.' || (i %% 250) || '.'
                      || (i %% 199) || '.7 ' || md5(i::text),
                  'https://security.microsoft.com/alerts/da' || i,
                  jsonb_build_object('id', 'da' || i), now(), now()
           FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i
           JOIN tenants_tenant t ON t.id = (SELECT min(id) FROM tenants_tenant)
                                            + (i %% {TENANTS})""",  # noqa: S608
        # Spread over the last 90 days, the newest alert now.
        {"first": first, "last": last, "step": 90 * 86400 / last},
    )


def alert_indexes(conn) -> dict[str, str]:
    """name -> CREATE INDEX statement of the alert table's indexes, as the migrations
    left them, except those that back a constraint."""
    rows = conn.execute(
        """SELECT indexname, indexdef FROM pg_indexes
           WHERE tablename = 'tenants_alert' AND indexname NOT IN (
               SELECT conname FROM pg_constraint
               WHERE conrelid = 'tenants_alert'::regclass)"""
    ).fetchall()
    return dict(rows)


def bulk_load(conn, first: int, last: int) -> None:
    """Drop the alert indexes, insert, build them again (faster than row by row)."""
    indexes = alert_indexes(conn)
    for name in indexes:
        sql(conn, f'DROP INDEX IF EXISTS "{name}"')
    started = time.monotonic()
    seed_alerts(conn, first, last)
    # Their search words, as the sync writes them: by the rule of migration 0011.
    backfill = importlib.import_module(
        "tenants.migrations.0011_alert_search_words_from_the_portal"
    ).BACKFILL
    sql(conn, backfill + " WHERE search_vector IS NULL")
    log(f"  inserted {last - first + 1:,} alerts in {time.monotonic() - started:.0f} s")
    started = time.monotonic()
    for definition in indexes.values():
        sql(conn, definition)
    sql(conn, "VACUUM (ANALYZE) tenants_alert")
    sql(conn, "ANALYZE")  # customers, tenants, staff: autovacuum's job, done now
    # The seed's dirty pages written out and autovacuum gone, so that the timing
    # that follows does not share the machine with the seed's aftermath.
    settle(conn.cursor())
    log(f"  indexes, VACUUM ANALYZE, CHECKPOINT in {time.monotonic() - started:.0f} s")


def session_cookies() -> dict[str, str]:
    """Signed-in sessions, made in the bench database directly: a superuser's, and a
    staff member's assigned to STAFF_CUSTOMERS customers."""
    os.environ.update(server_env())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "partnerportal.settings")
    import django

    django.setup()
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        get_user_model,
    )
    from django.contrib.auth import SESSION_KEY as USER_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from tenants.models import Customer

    users = get_user_model().objects
    # (Made once; a run with --reuse signs the same users in again.)
    staff = users.filter(username="analyst").first() or users.create_user(
        "analyst", "analyst@mssp.example", is_staff=True
    )
    # Every seventh customer: the seed ties severity to the tenant's number, and a
    # stride of 7 gives this staff member alerts of every severity, spread over time.
    customers = list(Customer.objects.order_by("id"))
    staff.customers.set(customers[::7][:STAFF_CUSTOMERS])
    cookies = {}
    for who, user in (
        (
            "superuser",
            users.filter(username="bench").first()
            or users.create_superuser("bench", "bench@mssp.example"),
        ),
        ("staff", staff),
    ):
        store = SessionStore()
        store[USER_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        cookies[who] = store.session_key
    return cookies


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, name: str) -> subprocess.Popen:
    """gunicorn on `port`, serving the database `name`."""
    process = start_child(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "partnerportal.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            *SERVER_OPTIONS,
            "--log-level",
            "warning",
        ],
        cwd=PROJECT_DIR,
        env=server_env(name),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process
        except OSError:
            time.sleep(0.2)
    stop_child(process, first=signal.SIGKILL)
    raise RuntimeError("gunicorn did not start")


def measure(base: str, cookie: str, path: str, requests_total: int) -> list[float]:
    """Times in ms of `requests_total` requests of `path`, CLIENTS at a time."""
    import requests

    local = threading.local()

    def one(_: int) -> float:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.trust_env = False
            session.headers["Cookie"] = f"sessionid={cookie}"
            session.headers["X-Forwarded-Proto"] = "https"
        started = time.perf_counter()
        response = session.get(base + path, timeout=30)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200 or b'id="queue-table"' not in response.content:
            raise RuntimeError(f"{path}: HTTP {response.status_code}")
        return elapsed

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(one, range(requests_total)))


def run_views(
    bases: dict[int, str], cookies: dict[str, str], requests_total: int
) -> dict[int, dict[str, dict]]:
    """Per size and view: p50, p95, n and the load after the view. Each view is
    warmed up on every server (connections, caches), then measured in ROUNDS rounds
    that alternate between the sizes, the order flipped each round."""
    sizes = list(bases)
    results: dict[int, dict[str, dict]] = {size: {} for size in sizes}
    for name, (who, path) in VIEWS.items():
        times: dict[int, list[float]] = {size: [] for size in sizes}
        for size in sizes:
            measure(bases[size], cookies[who], path, CLIENTS * 5)
        for round_ in range(ROUNDS):
            for size in sizes if round_ % 2 == 0 else reversed(sizes):
                times[size] += measure(
                    bases[size], cookies[who], path, requests_total // ROUNDS
                )
        load = os.getloadavg()[0]
        for size in sizes:
            ordered = sorted(times[size])
            results[size][name] = {
                "p50": statistics.median(ordered),
                "p95": ordered[int(len(ordered) * 0.95) - 1],
                "n": len(ordered),
                "load": load,
            }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="measure the databases a run with --keep left (same sizes), unseeded",
    )
    args = parser.parse_args()
    if "DATABASE_URL" not in os.environ:
        sys.exit("Set DATABASE_URL (postgres://...): the bench makes its own database.")

    import psycopg

    log(
        f"databases {SMALL_DB_NAME} and {DB_NAME} on "
        f"{urlsplit(os.environ['DATABASE_URL']).hostname}"
    )
    servers: list[subprocess.Popen] = []
    try:
        if args.reuse:
            cookies = session_cookies()
            # The large database's sessions: its own rows, the same keys.
            with (
                psycopg.connect(database_url(SMALL_DB_NAME)) as small,
                psycopg.connect(database_url(DB_NAME), autocommit=True) as large,
            ):
                rows = small.execute(
                    "SELECT session_key, session_data, expire_date FROM django_session"
                    " WHERE session_key = ANY(%s)",
                    [list(cookies.values())],
                ).fetchall()
                with large.cursor().copy(
                    "COPY django_session (session_key, session_data, expire_date)"
                    " FROM STDIN"
                ) as copy:
                    for row in rows:
                        copy.write_row(row)
        else:
            create_database(SMALL_DB_NAME)
            with psycopg.connect(database_url(SMALL_DB_NAME), autocommit=True) as conn:
                seed_tenants(conn)
                cookies = session_cookies()
                log(f"seeding {args.small:,} alerts over {TENANTS:,} tenants")
                bulk_load(conn, 1, args.small)
            # The large database starts as a copy of the small one (the same users,
            # sessions, customers and tenants), then grows.
            from django.db import connections

            connections.close_all()
            create_database(DB_NAME, template=SMALL_DB_NAME)
            with psycopg.connect(database_url(DB_NAME), autocommit=True) as conn:
                log(f"seeding up to {args.large:,} alerts in {DB_NAME}")
                bulk_load(conn, args.small + 1, args.large)
        collect_static()
        bases = {}
        for size, name in ((args.small, SMALL_DB_NAME), (args.large, DB_NAME)):
            port = free_port()
            servers.append(start_server(port, name))
            bases[size] = f"http://127.0.0.1:{port}"
        log(
            f"measuring {args.requests} requests per view and size, {CLIENTS} "
            f"clients, in {ROUNDS} alternating rounds"
        )
        results = run_views(bases, cookies, args.requests)
    finally:
        for server in servers:
            stop_child(server)
        if not args.keep:
            drop_databases()

    large, small = results[args.large], results[args.small]
    extra = [n for n in VIEWS if n not in TARGETED]
    print()
    print(f"Queue page, {CLIENTS} concurrent clients, real HTTP (gunicorn, loopback)")
    print(f"{os.cpu_count()} CPUs; load is the 1-minute load average after each view")
    print(
        f"{'alerts':>10}  {'view':<18} {'p50 ms':>8} {'p95 ms':>8} {'n':>5} {'load':>5}"
    )
    for size, views in results.items():
        for name, r in views.items():
            print(
                f"{size:>10,}  {name:<18} {r['p50']:>8.1f} {r['p95']:>8.1f} "
                f"{r['n']:>5} {r['load']:>5.1f}"
            )
    ok = True
    print()
    for name in TARGETED:
        big, base_ = large[name], small[name]
        ratio = big["p95"] / base_["p95"]
        verdict = (
            "ok" if big["p95"] <= P95_TARGET_MS and ratio <= RATIO_TARGET else "MISS"
        )
        ok &= verdict == "ok"
        print(
            f"{name:<18} p95 at {args.large:,}: {big['p95']:.1f} ms "
            f"(target {P95_TARGET_MS:.0f}); ratio {ratio:.2f} "
            f"(target {RATIO_TARGET}) -> {verdict}"
        )
    for name in extra:
        ratio = large[name]["p95"] / small[name]["p95"]
        print(
            f"{name:<18} p95 at {args.large:,}: {large[name]['p95']:.1f} ms "
            f"(no target); ratio {ratio:.2f}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

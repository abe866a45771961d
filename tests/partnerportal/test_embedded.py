"""The embedded runner starts private Postgres and Redis when none is configured."""

import os
import subprocess
import sys

from tests.conftest import PROJECT_DIR

PROBE = """
import os, psycopg, redis, environ
cfg = environ.Env.db_url_config(os.environ["DATABASE_URL"])
conn = psycopg.connect(dbname=cfg["NAME"], user=cfg["USER"], **cfg.get("OPTIONS", {}))
print("pg", conn.execute("select 41 + 1").fetchone()[0])
print("redis", redis.Redis.from_url(os.environ["REDIS_URL"]).ping())
"""


def test_embedded_servers_start_and_stop_when_no_urls_are_set():
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "demo.embedded",
            "run",
            "--",
            sys.executable,
            "-c",
            PROBE,
        ],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pg 42" in result.stdout
    assert "redis True" in result.stdout
    assert "Started a private PostgreSQL" in result.stdout
    assert "Started a private Redis" in result.stdout

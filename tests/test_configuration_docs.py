"""The configuration a user reads (.env.example, docker-compose.yml, README) matches
what the code reads and runs."""

import re

import yaml

from tenants.microsoft import sources
from tests.conftest import PROJECT_DIR

SETTINGS = (PROJECT_DIR / "partnerportal" / "settings.py").read_text()
ENV_EXAMPLE = (PROJECT_DIR / ".env.example").read_text()
README = (PROJECT_DIR / "README.md").read_text()
COMPOSE = yaml.safe_load((PROJECT_DIR / "docker-compose.yml").read_text())
# Set by the test runner only, never by a deployment.
TEST_ONLY = {"DATABASE_TEST_NAME"}


def variables_read_by_settings() -> set[str]:
    pattern = r'(?:env\.\w+|env_bool|required)\(\s*"([A-Z][A-Z0-9_]+)"'
    return set(re.findall(pattern, SETTINGS)) - TEST_ONLY


def variables_documented() -> set[str]:
    return set(re.findall(r"^([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE, flags=re.MULTILINE))


def test_every_variable_the_settings_read_is_in_env_example():
    missing = variables_read_by_settings() - variables_documented()
    assert not missing, f"not in .env.example: {sorted(missing)}"


def test_env_example_lists_no_variable_the_settings_ignore():
    stale = variables_documented() - variables_read_by_settings()
    assert not stale, f".env.example lists unused variables: {sorted(stale)}"


def test_compose_runs_the_parts_the_readme_names_with_the_same_settings():
    services = COMPOSE["services"]
    assert {"postgres", "redis", "web", "worker", "beat", "emulator"} <= set(services)
    for name in ("web", "worker", "beat", "migrate"):
        service = services[name]
        assert service["env_file"] == ".env"
        assert set(service["environment"]) == {"DATABASE_URL", "REDIS_URL"}
    commands = {
        name: " ".join(services[name]["command"])
        for name in services
        if "command" in services[name]
    }
    assert commands["web"].startswith("gunicorn partnerportal.wsgi")
    assert commands["worker"].startswith("celery -A partnerportal worker")
    assert commands["beat"].startswith("celery -A partnerportal beat")
    assert commands["emulator"].startswith("python -m emulator serve")
    assert "docker compose up" in README
    assert "celery -A partnerportal worker" in README or "--scale worker" in README
    for service in services.values():
        assert "healthcheck" in service or "restart" in service


def test_the_readme_shows_the_two_commands():
    assert "make demo" in README
    assert "make test" in README
    makefile = (PROJECT_DIR / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, flags=re.MULTILINE)
    assert re.search(r"^test:", makefile, flags=re.MULTILINE)


def permissions_the_readme_asks_for() -> set[str]:
    """The backticked names in the README's table of the partner app's permissions."""
    section = README.split("**API permissions", 1)[1].split("**Certificates", 1)[0]
    rows = [line for line in section.splitlines() if line.strip().startswith("|")]
    return {name for row in rows[2:] for name in re.findall(r"`([^`]+)`", row)}


def test_the_readme_asks_for_the_least_the_registry_uses():
    # A read role per source for the sync; a write role only where triage writes back.
    reads = {source.read_roles[0] for source in sources.SOURCES.values()}
    writes = {
        source.write_roles[0]
        for source in sources.SOURCES.values()
        if source.write_back is not None
    }

    assert permissions_the_readme_asks_for() == reads | writes

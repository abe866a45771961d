"""The emulator's libraries stay out of production: `pyproject.toml` lists them in the
`emulator` extra only, the portal's image installs without it (the emulator's image
with it), and a production portal (DEBUG=false, so no `demo` app) loads neither them
nor the emulator."""

import ast
import json
import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

import yaml

from tests.conftest import PROJECT_DIR
from tests.partnerportal.test_settings import PRODUCTION
from tests.test_layout import portal_modules

PROJECT = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]
#: Libraries only the emulator (emulator/) uses; the portal needs none of them.
EMULATOR_ONLY = {"werkzeug", "cheroot"}
#: What a production portal must not load.
NOT_IN_PRODUCTION = {"werkzeug", "cheroot", "emulator", "demo"}


def distribution(requirement: str) -> str:
    """A requirement's distribution, normalised: `pyjwt[crypto]>=2.8` -> pyjwt."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
    return re.sub(r"[-_.]+", "-", name).lower()


def production_dependencies() -> set[str]:
    return {distribution(r) for r in PROJECT["dependencies"]}


def emulator_extra() -> set[str]:
    return {
        distribution(r) for r in PROJECT["optional-dependencies"].get("emulator", [])
    }


def with_their_requirements(names: set[str]) -> set[str]:
    """`names` and every distribution they require, as installed here (requirements
    of an extra not asked for are left out)."""
    found, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        try:
            requirements = requires(name) or []
        except PackageNotFoundError:
            continue
        todo += [distribution(r) for r in requirements if "extra ==" not in r]
    return found


def third_party_imports(paths: list[Path]) -> dict[str, set[str]]:
    """Distribution -> the files importing it, for every import in `paths` (at any
    depth: an import inside a function loads the library all the same)."""
    by_module = packages_distributions()
    found: dict[str, set[str]] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top not in by_module:
                    continue
                for dist in by_module[top]:
                    relative = str(path.relative_to(PROJECT_DIR))
                    found.setdefault(distribution(dist), set()).add(relative)
    return found


def test_production_dependencies_name_no_emulator_only_library():
    named = production_dependencies() & EMULATOR_ONLY
    assert not named, f"emulator-only libraries in [project] dependencies: {named}"
    assert emulator_extra() >= EMULATOR_ONLY


def test_the_emulator_extra_gives_the_emulator_all_it_imports():
    """`pip install '.[emulator]'` (the emulator's image) is enough to run it."""
    installed = with_their_requirements(production_dependencies() | emulator_extra())
    installed.add(PROJECT["name"])  # the portal's own packages (editable install)
    imported = third_party_imports(sorted((PROJECT_DIR / "emulator").rglob("*.py")))
    missing = {dist: files for dist, files in imported.items() if dist not in installed}
    assert not missing, f"the emulator imports libraries nothing installs: {missing}"


def test_no_portal_module_imports_a_library_of_the_emulator_extra():
    paths = [
        path
        for module, path in portal_modules().items()
        if module.split(".")[0] != "demo"
    ]
    only_emulator = emulator_extra() - production_dependencies()
    imported = third_party_imports(paths)
    wrong = {dist: files for dist, files in imported.items() if dist in only_emulator}
    assert not wrong, f"portal modules import emulator-only libraries: {wrong}"


_PROBE = """
import importlib, json, sys
import django
django.setup()
from django.conf import settings
from django.core.management import call_command
assert not settings.DEBUG and "demo" not in settings.INSTALLED_APPS
for module in json.loads(sys.argv[1]):
    importlib.import_module(module)
from partnerportal.celery import app
app.loader.import_default_modules()  # what a worker loads: every app's tasks
call_command("check", deploy=True)
loaded = sorted(name for name in sys.modules if name.split(".")[0] in {unwanted})
print(json.dumps(loaded))
"""


def modules_loaded_by_production(extra: tuple[str, ...] = ()) -> list[str]:
    """What of NOT_IN_PRODUCTION a fresh production interpreter has loaded after
    importing every module of the portal but demo's (and `extra`), the WSGI
    application, a worker's task modules and `check --deploy`."""
    modules = [module for module in portal_modules() if module.split(".")[0] != "demo"]
    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION}
    for name in ("MS_EMULATOR", "MS_CLIENT_CERT_PATH", "DJANGO_ALLOW_ASYNC_UNSAFE"):
        env.pop(name, None)
    env.update(PRODUCTION, DJANGO_SETTINGS_MODULE="partnerportal.settings")
    probe = _PROBE.replace("{unwanted}", repr(NOT_IN_PRODUCTION))
    done = subprocess.run(
        [sys.executable, "-c", probe, json.dumps([*modules, *extra])],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_production_portal_loads_neither_the_emulator_nor_its_libraries():
    assert modules_loaded_by_production() == []


def test_the_production_probe_sees_the_emulator_when_something_loads_it():
    """The check above can fail: a module that imports the emulator is reported."""
    loaded = modules_loaded_by_production(extra=("emulator.testing",))
    assert "emulator" in loaded
    assert "werkzeug" in loaded


def dockerfile_stages() -> dict[str, list[str]]:
    """Stage name -> its instructions (an unnamed stage is named by its position)."""
    stages: dict[str, list[str]] = {}
    lines = (PROJECT_DIR / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    current: list[str] = []
    for line in (line.strip() for line in lines):
        if line.startswith("FROM "):
            words = line.split()
            name = words[3] if len(words) >= 4 and words[2].upper() == "AS" else ""
            current = stages.setdefault(name or f"#{len(stages)}", [])
        if line and not line.startswith("#"):
            current.append(line)
    return stages


def test_the_portal_image_leaves_the_emulator_extra_out_and_the_emulator_has_it():
    stages = dockerfile_stages()
    installs = {
        name: [i for i in body if i.startswith("RUN pip install")]
        for name, body in stages.items()
    }
    assert installs["portal"] == ["RUN pip install ."]
    assert any("'.[emulator]'" in i for i in installs["emulator"])
    *_, last = stages.values()
    assert last == ["FROM portal"], "`docker build .` must build the portal image"

    services = yaml.safe_load((PROJECT_DIR / "docker-compose.yml").read_text())
    services = services["services"]
    for name in ("migrate", "web", "worker", "beat"):
        assert services[name]["build"]["target"] == "portal"
    assert services["emulator"]["build"]["target"] == "emulator"
    assert services["emulator"]["image"] != services["web"]["image"]

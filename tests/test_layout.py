"""The layout holds: imports point one way between apps, and every module of the
portal imports on its own in a fresh interpreter.

The apps, lowest first; an app may import the ones before it, never one after it:

    partnerportal (configuration) <- core <- accounts, tenants <- alerts <- sync <- demo

`partnerportal` (settings, the Celery app, URLs) may name any app: it wires them.
`accounts` and `tenants` are siblings; accounts may use the Microsoft client package
(`tenants.microsoft`), which itself imports nothing of ours but core's pure helpers.
"""

import ast
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent
LAYERS = ["core", "accounts", "tenants", "alerts", "sync", "demo"]
RANK = {"core": 0, "accounts": 1, "tenants": 1, "alerts": 2, "sync": 3, "demo": 4}
#: Sibling imports that are allowed (from, to-module prefix).
SIBLINGS = {("accounts", "tenants.microsoft")}
#: What the Microsoft client package may import of ours.
CLIENT_MAY_IMPORT = ("core.validators", "core.backoff", "tenants.microsoft")


def portal_modules() -> dict[str, Path]:
    found = {}
    for app in ["partnerportal", *LAYERS]:
        for path in sorted((PROJECT_DIR / app).rglob("*.py")):
            parts = path.relative_to(PROJECT_DIR).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def module_level_imports(path: Path, module: str) -> set[str]:
    """The modules of ours `module` imports when it is loaded (not inside functions,
    not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(), str(path))
    ours = portal_modules()
    names: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for child in [node, *(ast.walk(node) if isinstance(node, ast.If) else [])]:
            if isinstance(child, ast.Import):
                names.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    package = module if is_package else module.rpartition(".")[0]
                    for _ in range(child.level - 1):
                        package = package.rpartition(".")[0]
                    base = f"{package}.{base}".strip(".")
                # `from app import module` loads app/__init__ and the module;
                # `from module import name` loads the module.
                submodules = {f"{base}.{a.name}" for a in child.names} & set(ours)
                names.update(submodules or {base})
    return {n for n in names if n in ours and n != module}


def app_of(module: str) -> str:
    return module.split(".")[0]


def test_imports_between_apps_point_one_way():
    wrong = []
    for module, path in portal_modules().items():
        app = app_of(module)
        if app == "partnerportal" or ".migrations." in module:
            continue
        for target in module_level_imports(path, module):
            other = app_of(target)
            if other == app:
                continue
            if other == "partnerportal" and target != "partnerportal.celery":
                wrong.append(f"{module} -> {target} (configuration is not a library)")
            elif (
                other in RANK
                and RANK[other] >= RANK[app]
                and not any(app == a and target.startswith(t) for a, t in SIBLINGS)
            ):
                wrong.append(f"{module} -> {target} (points up the layers)")
    assert not wrong, "\n".join(wrong)


def test_the_microsoft_client_imports_no_model_nor_anything_else_of_ours():
    wrong = []
    for module, path in portal_modules().items():
        if not module.startswith("tenants.microsoft"):
            continue
        for target in module_level_imports(path, module):
            if not target.startswith(CLIENT_MAY_IMPORT):
                wrong.append(f"{module} -> {target}")
    assert not wrong, "\n".join(wrong)


def test_a_planted_upward_import_is_caught(tmp_path, monkeypatch):
    """The check above can fail: a core module importing alerts is reported."""
    planted = PROJECT_DIR / "core" / "_planted_for_test.py"
    planted.write_text("from alerts import queue\n")
    try:
        with pytest.raises(AssertionError, match="core._planted_for_test -> alerts"):
            test_imports_between_apps_point_one_way()
    finally:
        planted.unlink()


def _import_alone(module: str) -> tuple[str, str]:
    code = (
        "import django\n"
        "django.setup()\n"
        f"import importlib; importlib.import_module({module!r})\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "partnerportal.settings"},
    )
    return module, "" if done.returncode == 0 else done.stderr[-2000:]


def test_every_module_imports_alone_in_a_fresh_interpreter():
    modules = [
        m
        for m in portal_modules()
        if ".migrations." not in m
        and m not in {"partnerportal.wsgi", "partnerportal.asgi"}
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        failures = [
            f"{m}:\n{err}" for m, err in pool.map(_import_alone, modules) if err
        ]
    assert not failures, "\n\n".join(failures)


#: A module longer than this mixes concerns; split it by what its parts are for.
MAX_MODULE_LINES = 600


def test_no_module_of_the_portal_is_over_the_size_limit():
    long = {
        module: lines
        for module, path in portal_modules().items()
        if ".migrations." not in module
        and (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"

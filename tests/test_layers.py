"""The layering docs/architecture.md states: apps import downward only, nobody imports another module's
private names, and the project package imports apps only where it wires them together."""

import ast
import collections
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
APPS = ("accounts", "billing", "console", "dashboard", "inference", "ratelimits")
PROJECT = "sogni_platform"
WIRING = {"asgi.py", "celery.py", "routing.py", "urls.py"}


def _imports(package: str):
    for path in (ROOT / package).rglob("*.py"):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                yield path, node.module, [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    yield path, alias.name, []


def test_no_import_cycle_between_apps():
    graph = collections.defaultdict(set)
    for app in APPS:
        for _, module, _ in _imports(app):
            top = module.split(".")[0]
            if top in APPS and top != app:
                graph[app].add(top)

    def reaches(start: str, goal: str, seen: set) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph[start])

    cycles = sorted(app for app in APPS if reaches(app, app, set()))
    assert not cycles, f"apps on an import cycle: {cycles} (graph: { {a: sorted(b) for a, b in graph.items()} })"


def test_no_imports_of_private_names_across_modules():
    found = [
        f"{path.relative_to(ROOT)}: {module}.{name}"
        for package in (*APPS, PROJECT, "worker/sogni_worker")
        for path, module, names in _imports(package)
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert not found, found


def test_project_package_imports_apps_only_to_wire_them():
    found = sorted(
        {
            str(path.relative_to(ROOT))
            for path, module, _ in _imports(PROJECT)
            if module.split(".")[0] in APPS and path.name not in WIRING
        }
    )
    assert not found, found

"""The package's shape, checked: imports point down the layers and never circle, and importing any module
defines things and does nothing else (docs/architecture.md says why each layer sits where it does)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "pipeline"

# Bottom first: a module may import its own layer and the ones below it.
LAYERS = ["config", "cpus", "errors", "observability", "serde", "kafka", "model", "stages", "worker", "ops", "cli"]
BOTTOM = ("config", "cpus", "errors")
RANK = {**dict.fromkeys(BOTTOM, 0), **{name: i for i, name in enumerate(LAYERS) if name not in BOTTOM}}


def _module(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules ``path`` imports (``from pkg import submodule`` counts as the submodule)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pipeline."))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline"):
            subs = {f"{node.module}.{a.name}" for a in node.names} & modules
            if len(subs) < len(node.names):
                found.add(node.module)
            found.update(subs)
    return found


def third_party() -> list[str]:
    """Top-level packages the project imports that are not its own."""
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return sorted(names - {"pipeline", "__future__"})


def _layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    names = set(modules)
    return {m: {i for i in _imports(p, names) if i in names and i != m} for m, p in modules.items()}


def test_every_module_sits_in_a_known_layer() -> None:
    unknown = {m for m in _graph() if m != "pipeline" and _layer(m) not in RANK}
    assert not unknown, f"modules outside the layers {LAYERS}: {sorted(unknown)}"


def test_imports_point_down_the_layers() -> None:
    upward = [
        f"{m} imports {i}"
        for m, deps in _graph().items()
        if m != "pipeline"
        for i in deps
        if RANK[_layer(i)] > RANK[_layer(m)]
    ]
    assert not upward, "\n".join(sorted(upward))


def test_no_import_circles() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for dep in graph[node]:
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert not cycles, cycles


PROBE = """
import importlib, json, pkgutil, sys, threading, warnings
for name in sys.argv[1:]:  # what the libraries do when imported is theirs: import them first
    try:
        importlib.import_module(name)
    except Exception:
        pass
import prometheus_client
filters, threads = list(warnings.filters), threading.active_count()
collectors = set(prometheus_client.REGISTRY._names_to_collectors)
import pipeline
for info in pkgutil.walk_packages(pipeline.__path__, "pipeline."):
    if info.name.endswith("__main__"):
        continue
    importlib.import_module(info.name)
print(json.dumps({
    "filters_changed": list(warnings.filters) != filters,
    "threads": threading.active_count() - threads,
    "collectors": sorted(set(prometheus_client.REGISTRY._names_to_collectors) - collectors),
    "fastpath_probed": sys.modules["pipeline.serde._fastpath"].entry_points.cache_info().currsize,
}))
"""


def test_importing_a_module_only_defines_things() -> None:
    probe = [sys.executable, "-c", PROBE, *third_party()]
    done = subprocess.run(probe, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"filters_changed": False, "threads": 0, "collectors": [], "fastpath_probed": 0}, seen

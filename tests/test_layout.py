"""The package layout has no import cycles between modules at import time."""

from __future__ import annotations

import ast
import os

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def _modules() -> dict[str, str]:
    mods = {}
    for folder, _, files in os.walk(os.path.join(SRC, "editmetrics")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                mod = os.path.relpath(path, SRC)[:-3].replace(os.sep, ".")
                mods[mod[: -len(".__init__")] if mod.endswith(".__init__") else mod] = path
    return mods


def _graph(mods: dict[str, str]) -> dict[str, set[str]]:
    graph = {}
    for mod, path in mods.items():
        deps = set()
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read())
        for node in tree.body:  # module level only: function-level imports are lazy on purpose
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("editmetrics"):
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("editmetrics")]
            else:
                names = []
            for name in names:
                while name and name not in mods:
                    name = name.rsplit(".", 1)[0] if "." in name else ""
                if name and name != mod:
                    deps.add(name)
        graph[mod] = deps
    return graph


def test_no_relative_imports_and_no_cycles():
    mods = _modules()
    graph = _graph(mods)
    for mod, path in mods.items():
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read())
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level], \
            f"{mod}: relative import (the layout uses absolute imports)"
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in graph[node]:
            assert state.get(dep) != 1, "import cycle: " + " -> ".join(stack[stack.index(dep):] + [dep])
            if dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for mod in graph:
        if mod not in state:
            visit(mod, [mod])


def test_every_editmetrics_import_outside_the_package_resolves():
    """Benchmarks, scripts, plugins and tests import editmetrics names inside
    functions too (lazy imports), where no test run reaches them: a renamed
    function must not leave a benchmark that dies on its first call
    (bench_ray.py kept importing runner.append_rows after it was replaced)."""
    import importlib

    from helpers import repo_sources

    missing = []
    for path, text in repo_sources(("benchmarks", "scripts", "plugins", "tests")):
        for node in ast.walk(ast.parse(text)):  # every level, functions included
            if not (isinstance(node, ast.ImportFrom) and node.level == 0
                    and (node.module or "").split(".")[0] == "editmetrics"):
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                if alias.name == "*" or hasattr(module, alias.name):
                    continue
                try:
                    importlib.import_module(f"{node.module}.{alias.name}")
                except ImportError:
                    missing.append(f"{path}:{node.lineno} {node.module}.{alias.name}")
    assert not missing, missing

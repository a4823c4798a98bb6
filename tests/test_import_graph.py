"""The ecomrlve package has no import cycles.

Walks every module of the package with `ast` (no import executed), resolves relative and
absolute ``ecomrlve.*`` imports to modules of the package, and fails naming every cycle.
Imports inside functions count too (a deferred import that closes a cycle is still a
cycle: the two modules cannot be understood, or split, one without the other). A module is
not taken to import its parent package implicitly (``a.b`` loading ``a/__init__``), or every
package whose ``__init__`` re-exports a submodule would be a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ecomrlve

ROOT = Path(ecomrlve.__file__).resolve().parent


def _package_dirs() -> dict[str, Path]:
    """ecomrlve and each ecomrlve.<sub> package -> its folder (the sub-packages live in
    top-level source folders, mapped by setuptools package-dir)."""
    import importlib

    out = {"ecomrlve": ROOT}
    for sub in ("envs", "actors", "policies", "scheduler", "catalog_service"):
        mod = importlib.import_module(f"ecomrlve.{sub}")
        out[f"ecomrlve.{sub}"] = Path(mod.__file__).resolve().parent
    return out


def _modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package __init__)."""
    mods: dict[str, tuple[Path, bool]] = {}
    for pkg, folder in _package_dirs().items():
        for f in sorted(folder.rglob("*.py")):
            parts = list(f.relative_to(folder).with_suffix("").parts)
            if pkg == "ecomrlve" and parts and parts[0] in {"envs", "actors", "policies", "scheduler",
                                                              "catalog_service"}:
                continue  # in case a sub-package ever lives below ecomrlve/ itself: counted once
            is_pkg = parts[-1] == "__init__"
            name = ".".join([pkg] + (parts[:-1] if is_pkg else parts))
            mods[name] = (f, is_pkg)
    return mods


def import_graph() -> dict[str, set[str]]:
    mods = _modules()

    def owner(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, (path, is_pkg) in mods.items():
        here = name.split(".") if is_pkg else name.split(".")[:-1]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps.update(owner(a.name) for a in node.names if a.name.split(".")[0] == "ecomrlve")
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[:len(here) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.split(".")[0] != "ecomrlve":
                    continue
                for a in node.names:  # `from pkg import submodule` imports the submodule
                    full = f"{target}.{a.name}"
                    deps.add(full if full in mods else owner(target))
        deps.discard(None)
        deps.discard(name)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a
    path that closes on its first module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(_closed_path(graph, set(comp)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _closed_path(graph: dict[str, set[str]], comp: set[str]) -> list[str]:
    """A cycle through the component's first module: a -> ... -> a (shortest, by BFS)."""
    start = min(comp)
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & comp):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [start] + path[::-1][1:] + [start] if v != start else [start, start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return sorted(comp)


def test_cycle_finder_names_a_cycle():
    """The checker itself: a planted cycle is found and named as a closed path."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_graph_sees_relative_and_deferred_imports():
    graph = import_graph()
    assert len(graph) > 80
    # relative, module level: the driver builds on the actor system and the dispatcher
    assert {"ecomrlve.actors.system", "ecomrlve.actors.dispatch"} <= graph["ecomrlve.actors.driver"]
    # absolute, inside a function: the catalog builds its searcher lazily
    assert "ecomrlve.catalog_service.searchers" in graph["ecomrlve.catalog_service.catalog"]


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)

"""The layering ARCHITECTURE.md promises: no import cycle, capabilities stand alone."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

ROOT = Path(__file__).resolve().parent.parent
CAPABILITIES = ("capture_engine", "connectivity", "snapshot")
SHIPPED = ("handler", *CAPABILITIES, "plumbing")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> Dict[str, Set[str]]:
    """Every shipped module -> the shipped modules it imports, at any depth of its code (an
    import inside a function is still a dependency)."""
    paths = {module_name(p): p for pkg in SHIPPED for p in (ROOT / pkg).rglob("*.py")}
    graph: Dict[str, Set[str]] = {}
    for name, path in paths.items():
        deps: Set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps.add(node.module)
                deps.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {d for d in deps if d in paths and d != name}
    return graph


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    found: List[List[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycle_among_the_shipped_modules() -> None:
    assert cycles(import_graph()) == []


def test_capabilities_import_neither_the_handler_nor_each_other() -> None:
    wrong = []
    for module, deps in import_graph().items():
        top = module.split(".")[0]
        allowed = {top, "plumbing"} if top in CAPABILITIES else (
            {"plumbing"} if top == "plumbing" else set(SHIPPED))
        wrong += [f"{module} -> {dep}" for dep in sorted(deps) if dep.split(".")[0] not in allowed]
    assert wrong == []

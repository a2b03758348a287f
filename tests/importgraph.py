"""The project's import graph, read from the source: every import statement, including those
inside functions and ``TYPE_CHECKING`` blocks (a lazy import is still a dependency)."""
from __future__ import annotations

import ast
from pathlib import Path

#: the project's packages (cli.py, benchmarks/ and tests/ sit on top and may import anything)
PACKAGES = ("extract", "train", "model", "store", "qa", "synth", "common", "infer")


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(root: Path) -> dict[str, Path]:
    return {module_name(root, f): f for pkg in PACKAGES if (root / pkg).is_dir()
            for f in sorted((root / pkg).rglob("*.py"))}


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    """The project module a dotted import name lands in (None: not ours)."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _imported_names(node: ast.AST, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        up = package.split(".")[:len(package.split(".")) - (node.level - 1)]
        base = ".".join(up + ([base] if base else []))
    # ``from pkg import name``: name may be a submodule; otherwise it is an attribute of pkg
    return [f"{base}.{a.name}" for a in node.names] or [base]


def imports_of(mod: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """Project modules that ``mod`` imports, its own parent packages left out (Python imports
    those before ``mod`` anyway, so they are not a dependency it chose)."""
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    parents = {".".join(mod.split(".")[:i]) for i in range(1, mod.count(".") + 1)}
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        for name in _imported_names(node, package):
            target = _resolve(name, mods)
            if target and target != mod and target not in parents:
                found.add(target)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    mods = project_modules(root)
    return {m: imports_of(m, p, mods) for m, p in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return sorted(found)

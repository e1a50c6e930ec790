"""No import circle inside smppengine.

Every ``import`` / ``from ... import`` of an smppengine module is an edge, wherever it is written: at module
level, inside a function (a deferred import hides a circle, it does not remove it: config.py once imported
ingress inside a function for the sender rule), and under ``if TYPE_CHECKING:``. Type-only imports count
because a module written against another's types depends on it as much as one that calls it: the engine <->
metrics/http/dispatcher circle of issue 20 was made of TYPE_CHECKING imports only; the way out is a narrow
Protocol below both (view.py), not hiding the import. Parsed with ``ast``: nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "smppengine"


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for f in PACKAGE.rglob("*.py"):
        parts = list(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = f
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The smppengine modules ``name`` imports (a package's __init__ counts for ``from pkg import x`` only when
    x is not a module of it)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "smppengine")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] != "smppengine":
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                out.add(sub if sub in mods else target)
    return {m for m in out if m in mods and m != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_in_the_package() -> None:
    mods = _modules()
    graph = {name: _imports(name, path, mods) for name, path in mods.items()}
    cycles = _cycles(graph)
    detail = ["  " + " <-> ".join(c) + ": " + "; ".join(f"{a} -> {b}" for a in c for b in sorted(graph[a])
                                                       if b in c) for c in cycles]
    assert not cycles, "import circles:\n" + "\n".join(detail)


def test_the_checker_sees_every_kind_of_import(tmp_path: Path) -> None:
    """A circle made of a function-level import and a TYPE_CHECKING import is found."""
    a = tmp_path / "a.py"
    a.write_text("def f():\n    from smppengine import b\n")
    b = tmp_path / "b.py"
    b.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\n")
    mods = {"smppengine.a": a, "smppengine.b": b}
    graph = {name: _imports(name, path, mods) for name, path in mods.items()}
    assert graph == {"smppengine.a": {"smppengine.b"}, "smppengine.b": {"smppengine.a"}}
    assert _cycles(graph) == [["smppengine.a", "smppengine.b"]]

"""The package's import structure: no private names across modules, no import cycles.

The layer contracts themselves are checked by import-linter (`lint-imports`, pyproject.toml);
these tests read the source with `ast`, so they also see imports inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "hififace"


def _modules() -> dict[str, ast.Module]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = ast.parse(path.read_text(), filename=str(path))
    return modules


def _imports(name: str, tree: ast.Module) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every hififace import of one module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, None, node.lineno) for a in node.names if a.name.startswith("hififace")]
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").startswith("hififace")
        ):
            found += [(node.module, a.name, node.lineno) for a in node.names]
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_module_imports_a_private_name_of_another():
    modules = _modules()
    offences = [
        f"{name}:{line} imports {target}.{imported}"
        for name, tree in modules.items()
        for target, imported, line in _imports(name, tree)
        if target != name
        and (any(_private(part) for part in target.split(".")) or (imported and _private(imported)))
    ]
    assert not offences, offences


def test_the_private_name_check_sees_function_level_imports():
    tree = ast.parse("def f():\n    from hififace.pipeline import _check\n")
    assert _imports("hififace.video", tree) == [("hififace.pipeline", "_check", 2)]


def test_no_import_cycles_between_modules():
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, tree in modules.items():
        for target, imported, _ in _imports(name, tree):
            # `from package import module` imports the module; `from module import name` the module.
            full = f"{target}.{imported}" if imported and f"{target}.{imported}" in modules else target
            if full in modules and full != name:
                graph[name].add(full)
            # Importing a.b.c first runs the package a.b's __init__ (unless we are inside a.b).
            parts = full.split(".")
            for i in range(2, len(parts)):
                parent = ".".join(parts[:i])
                if parent in modules and parent != name and not name.startswith(parent + "."):
                    graph[name].add(parent)

    def cycle_from(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return path + [start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
        return None

    cycles = [cycle for name in sorted(graph) if (cycle := cycle_from(name))]
    assert not cycles, " ; ".join(" -> ".join(c) for c in cycles[:5])

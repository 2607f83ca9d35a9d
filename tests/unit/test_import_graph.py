"""The import graph the architecture promises (docs/architecture.md, Shape).

- `controller/runtime/` knows no kind: no import of a kind package, the composition root
  or the CLI — not even for type checking, not even inside a function.
- No import cycle anywhere in `controller/`: module-level imports, where importing
  `a.b.c` also runs `a/__init__` and `a/b/__init__`. Imports inside functions (the kind
  packages' lazy `setup`, the schema tool's) and under `if TYPE_CHECKING:` are left out:
  they run after every module has loaded, or never.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "controller"
KIND_AND_APP_MODULES = (
    "controller.labworker",
    "controller.pool",
    "controller.quota",
    "controller.events",
    "controller.app",
    "controller.cli",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    is_package = modules()[module].name == "__init__.py"
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports(module: str, *, module_level_only: bool) -> Iterator[str]:
    """Every controller.* module `module` imports (with `from x import y`, y if a module)."""
    tree = ast.parse(modules()[module].read_text(encoding="utf-8"))
    known = modules()

    def visit(nodes: list[ast.stmt]) -> Iterator[str]:
        for node in nodes:
            if module_level_only and isinstance(node, ast.If):
                test = node.test
                if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
                    yield from visit(node.orelse)
                    continue
            if isinstance(node, ast.Import):
                yield from (a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(module, node)
                yield target
                for alias in node.names:
                    if f"{target}.{alias.name}" in known:
                        yield f"{target}.{alias.name}"
            if module_level_only and isinstance(
                node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
            ):
                if isinstance(node, ast.ClassDef):
                    yield from visit(node.body)
                continue
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list) and not isinstance(node, ast.ClassDef):
                    yield from visit([c for c in children if isinstance(c, ast.stmt)])
                elif isinstance(children, list):
                    for handler in children:
                        if isinstance(handler, ast.ExceptHandler):
                            yield from visit(handler.body)

    yield from (name for name in visit(tree.body) if name.startswith("controller"))


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(1, len(parts))]


def test_runtime_imports_no_kind_and_nothing_above_it() -> None:
    offending = []
    for module in modules():
        if not module.startswith("controller.runtime"):
            continue
        for target in imports(module, module_level_only=False):
            if target.startswith(KIND_AND_APP_MODULES):
                offending.append(f"{module} -> {target}")
    assert offending == []


def test_resources_import_no_kind_at_module_level() -> None:
    offending = [
        f"{module} -> {target}"
        for module in modules()
        if module.startswith("controller.resources")
        for target in imports(module, module_level_only=True)
        if target.startswith(KIND_AND_APP_MODULES)
    ]
    assert offending == []


def test_no_import_cycle_in_the_controller_package() -> None:
    known = modules()
    graph: dict[str, set[str]] = {}
    for module in known:
        edges: set[str] = set()
        for target in imports(module, module_level_only=True):
            edges.update(t for t in _with_parents(target) if t in known and t != module)
        # A module's own package runs first, but that is not an edge back into the module.
        graph[module] = {e for e in edges if not module.startswith(e + ".")}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_walker_sees_what_it_must() -> None:
    """The checks above are only as good as the walker: it must see function-level and
    TYPE_CHECKING imports when asked to."""
    found = set(imports("controller.labworker", module_level_only=False))
    assert "controller.labworker.wiring" in found  # the lazy import inside setup()
    assert "controller.runtime.manager" in found  # under TYPE_CHECKING
    top = set(imports("controller.labworker", module_level_only=True))
    assert "controller.labworker.wiring" not in top
    assert "controller.labworker.kind" in top

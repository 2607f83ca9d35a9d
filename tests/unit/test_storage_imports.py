"""The modules of controller/storage import each other without a cycle.

Imports under `if TYPE_CHECKING:` count: a cycle hidden from the interpreter is still two
modules that cannot be understood, tested or changed one without the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import controller.storage

PACKAGE = "controller.storage"
STORAGE_DIR = Path(controller.storage.__file__).parent


def _module_name(path: Path) -> str:
    return PACKAGE if path.stem == "__init__" else f"{PACKAGE}.{path.stem}"


def _storage_imports(path: Path, modules: set[str]) -> set[str]:
    """Every controller.storage module `path` imports, wherever the import statement is."""
    this = _module_name(path)
    package = PACKAGE if path.stem == "__init__" else this.rpartition(".")[0]
    found: set[str] = set()

    def depend_on(name: str) -> None:
        # `import controller.storage.x.y` depends on x: keep the longest known prefix.
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name and name != this:
            found.add(name)

    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                depend_on(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                # `from pkg import mod` depends on mod; `from mod import name` on mod.
                submodule = f"{base}.{alias.name}"
                depend_on(submodule if submodule in modules else base)
    return found


def _import_graph() -> dict[str, set[str]]:
    # The package's __init__ is a node too: it re-exports every module, so a module that
    # imports names from `controller.storage` itself closes a cycle through it.
    paths = sorted(STORAGE_DIR.glob("*.py"))
    modules = {_module_name(p) for p in paths}
    return {_module_name(p): _storage_imports(p, modules) for p in paths}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in visiting:
            return [*visiting[visiting.index(node) :], node]
        if node in done:
            return None
        visiting.append(node)
        for target in sorted(graph.get(node, ())):
            cycle = visit(target)
            if cycle:
                return cycle
        visiting.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        cycle = visit(node)
        if cycle:
            return cycle
    return None


def test_storage_modules_import_each_other_without_a_cycle() -> None:
    graph = _import_graph()
    assert "controller.storage.client" in graph  # the walk really saw the package
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle in controller/storage: " + " -> ".join(cycle or ())


def test_type_checking_imports_are_part_of_the_graph(tmp_path: Path) -> None:
    """The check sees through `if TYPE_CHECKING:` (the way the old client ↔ watch cycle hid)."""
    source = tmp_path / "watch.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from controller.storage.client import EtcdClient\n"
    )
    modules = {"controller.storage.client", "controller.storage.watch"}
    assert _storage_imports(source, modules) == {"controller.storage.client"}
    graph = {
        "controller.storage.client": {"controller.storage.watch"},
        "controller.storage.watch": _storage_imports(source, modules),
    }
    assert _find_cycle(graph) == [
        "controller.storage.client",
        "controller.storage.watch",
        "controller.storage.client",
    ]


def test_watch_does_not_know_the_client() -> None:
    """The watch opens streams through an opener it is given, not through `EtcdClient`."""
    graph = _import_graph()
    assert "controller.storage.client" not in graph["controller.storage.watch"]
    failover = graph["controller.storage.failover"]
    assert not failover & {"controller.storage.client", "controller.storage.watch"}

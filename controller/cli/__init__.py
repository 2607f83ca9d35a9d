"""`labctl`: run the controller, and kubectl-style verbs for every kind stored in etcd.

`controller.cli.parser` holds the parser and the exit codes; each verb group is a module
(read, apply, modify, wait, discovery, contexts, completion, run). See docs/architecture.md,
labctl.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> NoReturn:
    from controller.cli.parser import main as run

    run(argv)


def build_parser() -> argparse.ArgumentParser:
    from controller.cli.parser import build_parser as build

    return build()

"""How a verb module declares its verbs: `add_verb(sub, name, …)` in its `register(sub)`.

Every verb gets `-n/--namespace` and the etcd connection flags (unless it never talks to
etcd); `writes=True` makes `main` run it inside a `labctl <verb>` span whose traceparent
the writes record (controller.cli.common.stamp).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from controller.cli.connection import add_connection_args

Handler = Callable[[argparse.Namespace], int]
Subparsers = Any
"""argparse's `_SubParsersAction` (private, so not named in signatures)."""

TYPES_HELP = "TYPE [NAME...] or TYPE/NAME...; TYPE is any name `labctl api-resources` lists"


def add_verb(
    sub: Subparsers,
    name: str,
    help: str,
    func: Handler,
    *,
    etcd: bool = True,
    namespaced: bool = True,
    writes: bool = False,
    aliases: tuple[str, ...] = (),
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help, description=help, aliases=list(aliases)
    )
    parser.set_defaults(func=func, parser=parser, writes=writes, verb=name)
    if namespaced:
        parser.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    if etcd:
        add_connection_args(parser)
    return parser

"""`labctl config get-contexts | current-context | use-context NAME | view`.

The file is controller.cli.contextfile's (`$LABCTL_CONFIG`); `view` never prints a secret.
"""

from __future__ import annotations

import argparse

import yaml

from controller.cli.contextfile import load_contexts, redacted
from controller.cli.errors import CliError
from controller.cli.printers import format_rows
from controller.cli.verb import Subparsers, add_verb


def register(sub: Subparsers) -> None:
    config = add_verb(
        sub,
        "config",
        "show or choose the contexts of labctl's config file ($LABCTL_CONFIG)",
        lambda args: int(args.parser.print_usage() or 2),
        etcd=False,
        namespaced=False,
    )
    verbs = config.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    verbs._parser_class = type(config)
    for name, help, func in (
        ("get-contexts", "list the contexts; * marks the current one", cmd_get_contexts),
        ("current-context", "print the current context's name", cmd_current_context),
        ("use-context", "make NAME the current context", cmd_use_context),
        ("view", "print the config file, secrets redacted", cmd_view),
    ):
        p = verbs.add_parser(name, help=help, description=help)
        p.set_defaults(func=func, parser=p)
        if name == "use-context":
            p.add_argument("name", metavar="NAME")


def cmd_get_contexts(args: argparse.Namespace) -> int:
    file = load_contexts()
    rows = [["CURRENT", "NAME", "ENDPOINTS", "PREFIX", "NAMESPACE"]]
    for name, ctx in file.contexts.items():
        rows.append(
            [
                "*" if name == file.current else "",
                name,
                ctx.get("endpoints", ""),
                ctx.get("prefix", ""),
                ctx.get("namespace", ""),
            ]
        )
    print("\n".join(format_rows(rows)))
    return 0


def cmd_current_context(args: argparse.Namespace) -> int:
    file = load_contexts()
    if not file.current:
        raise CliError(f"current-context is not set (in {file.path})")
    print(file.current)
    return 0


def cmd_use_context(args: argparse.Namespace) -> int:
    file = load_contexts()
    file.context(args.name)  # must exist
    file.current = args.name
    try:
        file.save()
    except OSError as exc:
        raise CliError(f"{file.path}: cannot write it: {exc.strerror or exc}") from None
    print(f'Switched to context "{args.name}".')
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    file = load_contexts()
    print(yaml.safe_dump(redacted(file.raw), sort_keys=False), end="")
    return 0

"""`labctl`'s command line: the verbs' modules, argument parsing and exit codes.

The verbs know no kind: each resolves its TYPE through `controller.app.kind_registry()` and
writes through `controller.app.repositories()` — the same repositories, with the same
admission plug-ins (quotas), as the controller — so a new kind gets every verb by being
registered. A verb group is one module with a `register(sub)` function, listed once in
VERB_MODULES.

Flags may come anywhere after the verb, as with kubectl (`labctl get lw -n emea w1`).
Exit codes a shell user can rely on: 0 success, 1 the operation failed (not found, invalid
manifest, conflict, refused by a quota, timeout, etcd unreachable, unknown type), 2 bad usage
(and `diff`: 1 means "differences", >1 an error). Errors go to stderr as `error: ...` lines
(one per failed object), never a traceback, whatever the input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from types import ModuleType
from typing import NoReturn

from controller.cli import (
    apply,
    completion,
    contexts,
    discovery,
    history,
    modify,
    read,
    run,
    wait,
)
from controller.cli.errors import CliError
from controller.resources.names import shorten
from controller.runtime.repository import AdmissionRefused, InvalidObject, WriteRefused
from controller.storage import StorageError

VERB_MODULES: tuple[ModuleType, ...] = (
    run,
    apply,
    read,
    modify,
    wait,
    history,
    discovery,
    contexts,
    completion,
)
"""Every verb group, in `labctl --help` order; a new group is one more module here."""


def version() -> str:
    try:
        return metadata.version("lab-resource-controller")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one `error:` line (exit 2) like every other error."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="labctl",
        description="Lab Resource Controller: LabWorkers, pools, quotas and events in etcd.",
    )
    parser.add_argument("--version", action="version", version=f"labctl {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub._parser_class = _Parser  # the verbs' own parsers report errors the same way
    for module in VERB_MODULES:
        module.register(sub)
    return parser


def _verb_index(parser: argparse.ArgumentParser, argv: Sequence[str]) -> int | None:
    for index, arg in enumerate(argv):
        if not arg.startswith("-"):
            return index
    return None


def parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """The verb's arguments, its flags anywhere after it (argparse's intermixed parsing)."""
    index = _verb_index(parser, argv)
    if index is None or index > 0:
        return parser.parse_args(argv)  # --version, --help, or an option before the verb
    choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    verb: argparse.ArgumentParser | None = choices.get(argv[0])
    if verb is None:
        return parser.parse_args(argv)  # argparse names the valid verbs
    nested = any(isinstance(a, argparse._SubParsersAction) for a in verb._actions)
    args = verb.parse_args(argv[1:]) if nested else verb.parse_intermixed_args(argv[1:])
    args.command = argv[0]
    return args


def _run(args: argparse.Namespace) -> int:
    """The verb, inside a `labctl <verb>` span when it writes and tracing is configured."""
    if not args.writes or not _tracing_configured():
        return int(args.func(args))
    from opentelemetry import trace

    from controller.observability.tracing import configure_tracing, get_tracer, shutdown_tracing

    ours = isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    if ours:  # else a host process (a test, a script calling main) installed one already
        configure_tracing("labctl")
    try:
        with get_tracer("controller.cli").start_as_current_span(f"labctl {args.verb}"):
            return int(args.func(args))
    finally:
        if ours:
            shutdown_tracing()


def _tracing_configured() -> bool:
    from controller.observability.otlp_env import exporter_names
    from controller.observability.tracing import SUPPORTED_TRACE_EXPORTERS

    try:
        return bool(exporter_names(os.environ, "TRACES", SUPPORTED_TRACE_EXPORTERS))
    except ValueError as exc:
        raise CliError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> NoReturn:
    parser = build_parser()
    args = parse(parser, list(sys.argv[1:] if argv is None else argv))
    if args.command != "run":
        # kubectl-style verbs speak through their exit code and `error:` lines only.
        from controller.observability import configure_logging

        configure_logging("ERROR", "console", stream=sys.stderr)
    try:
        code = _run(args)
        sys.stdout.flush()
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = exc.code
    except (WriteRefused, AdmissionRefused) as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    except InvalidObject as exc:
        print(f"error: {exc}; the controller ignores it until it is fixed", file=sys.stderr)
        code = 1
    except StorageError as exc:
        print(f"error: etcd: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:  # `labctl get ... | head`: the reader is gone; so is the output
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    except Exception as exc:  # the promise is an `error:` line, never a traceback
        print(
            f"error: unexpected {type(exc).__name__}: {shorten(str(exc), 200)} "
            "(a bug in labctl; please report it)",
            file=sys.stderr,
        )
        code = 1
    sys.exit(code)

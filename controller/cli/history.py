"""`labctl history` and `labctl rollback`: an object's versions from etcd's MVCC store, and
restoring the spec of one of them (controller.runtime.history; docs/architecture.md, History
and retention). Both work for every kind the registry knows.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from controller.app import kind_registry
from controller.cli.common import stamp
from controller.cli.connection import open_session
from controller.cli.errors import CliError, UsageError
from controller.cli.printers import format_rows
from controller.cli.targets import lookup, qualified
from controller.cli.verb import Subparsers, add_verb
from controller.resources import Kind, ObjectKey
from controller.runtime.history import History, RollbackRefused, read_history, rollback
from controller.storage import Conflict, NotFound

_TARGET_HELP = "TYPE NAME or TYPE/NAME; TYPE is any name `labctl api-resources` lists"


def register(sub: Subparsers) -> None:
    history = add_verb(
        sub, "history", "list the versions of an object etcd still holds", cmd_history
    )
    history.add_argument("target", nargs="+", metavar="TYPE", help=_TARGET_HELP)
    history.add_argument(
        "--revision", type=_revision, help="print the version current at this revision (YAML)"
    )
    history.add_argument("-o", "--output", choices=["json", "yaml"])

    back = add_verb(
        sub,
        "rollback",
        "restore the spec an object had at a revision (generation + 1)",
        cmd_rollback,
        writes=True,
    )
    back.add_argument("target", nargs="+", metavar="TYPE", help=_TARGET_HELP)
    back.add_argument("--to-revision", type=_revision, required=True, help="from labctl history")


def _revision(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a revision number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"a revision is at least 1, got {value}")
    return value


def _target(args: argparse.Namespace) -> tuple[Kind[Any], str]:
    parts: list[str] = args.target
    if len(parts) == 1 and "/" in parts[0]:
        type_, _, name = parts[0].partition("/")
    elif len(parts) == 2 and "/" not in parts[0]:
        type_, name = parts
    else:
        raise UsageError(f"{args.command} needs one object: TYPE NAME or TYPE/NAME")
    if not type_ or not name:
        raise UsageError(f"{args.command} needs one object: TYPE NAME or TYPE/NAME")
    return lookup(kind_registry(), type_), name


def cmd_history(args: argparse.Namespace) -> int:
    kind, name = _target(args)
    session = open_session(args)
    key = ObjectKey(session.namespace, name)
    client = session.client
    try:
        found = read_history(client, kind.etcd_key(session.root, key), kind.model)
    except NotFound:
        raise CliError(
            f'{kind.plural} "{key.name}" not found in namespace {key.namespace}'
        ) from None
    finally:
        client.close()
    if args.revision is not None:
        _print_version(kind, found, args.revision)
    elif args.output:
        payload = _history_dict(kind, key, found)
        if args.output == "json":
            sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        else:
            sys.stdout.write(yaml.safe_dump(payload, sort_keys=False, allow_unicode=True))
    else:
        rows = [["REVISION", "VERSION", "TIME", "WRITER", "SUMMARY"]]
        for v in found.versions:
            rows.append([str(v.revision), str(v.version), v.time or "-", v.writer, v.summary])
        print("\n".join(format_rows(rows)))
        print(found.end_text())
    return 0


def _history_dict(kind: Kind[Any], key: ObjectKey, found: History) -> dict[str, Any]:
    return {
        "kind": kind.kind,
        "namespace": key.namespace,
        "name": key.name,
        "versions": [
            {
                "revision": v.revision,
                "version": v.version,
                "time": v.time,
                "writer": v.writer,
                "summary": v.summary,
                **({"invalid": v.invalid} if v.invalid else {}),
            }
            for v in found.versions
        ],
        "end": {"reason": found.end, "revision": found.end_revision, "text": found.end_text()},
    }


def _print_version(kind: Kind[Any], found: History, revision: int) -> None:
    version = found.at(revision)
    if version is None:
        raise CliError(
            f"revision {revision} is older than this object's history: {found.end_text()}"
        )
    if version.object is not None:
        document: Any = version.object.to_dict()
    else:
        print(
            f"warning: revision {version.revision} is not a valid {kind.kind} "
            f"({version.invalid}); shown as stored",
            file=sys.stderr,
        )
        document = version.document
        if document is None:
            sys.stdout.write(version.raw.decode("utf-8", errors="replace") + "\n")
            return
    sys.stdout.write(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))


def cmd_rollback(args: argparse.Namespace) -> int:
    kind, name = _target(args)
    session = open_session(args)
    key = ObjectKey(session.namespace, name)
    client = session.client
    repository = session.repositories.for_kind(kind)
    try:
        result = rollback(repository, key, args.to_revision, finish=stamp)
    except NotFound:
        raise CliError(
            f'{kind.plural} "{key.name}" not found in namespace {key.namespace}'
        ) from None
    except RollbackRefused as exc:
        raise CliError(str(exc)) from None
    except Conflict:
        raise CliError(
            f"{qualified(kind)}/{key.name} changed while rolling back; nothing was written — "
            "check `labctl history` and try again"
        ) from None
    finally:
        client.close()
    obj = result.object
    assert obj is not None
    if result.written:
        print(
            f"{qualified(kind)}/{key.name} rolled back to the spec of revision "
            f"{args.to_revision} (generation {obj.metadata.generation})"
        )
    else:
        print(
            f"{qualified(kind)}/{key.name} unchanged: its spec is that of revision {args.to_revision}"
        )
    return 0

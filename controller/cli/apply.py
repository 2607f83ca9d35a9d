"""`labctl apply -f` (create or update, `--dry-run=client|server`) and `labctl diff -f`.

Every document goes through its kind's one `Repository.apply` — the only create-or-update
there is — after all documents were validated, so an invalid document writes nothing. A
manifest carrying `metadata.resourceVersion` is a precondition: a stale one is a conflict,
never an overwrite. `--dry-run=server` and `diff` run that same `apply` with `dry_run=True`:
the precondition, the limits and the admission checks (quotas) against etcd, no write.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from typing import Any

import yaml

from controller.app import kind_registry
from controller.cli.common import stamp
from controller.cli.connection import default_namespace, open_session
from controller.cli.errors import CliError, UsageError, report
from controller.cli.manifests import read_documents, to_object
from controller.cli.targets import qualified
from controller.cli.verb import Subparsers, add_verb
from controller.resources import Kind, Resource
from controller.runtime.repository import (
    AdmissionRefused,
    InvalidObject,
    TooManyConflicts,
    WriteRefused,
)
from controller.storage import Conflict, StorageError, Unavailable

FILENAME_HELP = "file, directory, or - for stdin (repeatable)"


def register(sub: Subparsers) -> None:
    apply = add_verb(
        sub,
        "apply",
        "create or update objects of any kind from manifests",
        cmd_apply,
        writes=True,
    )
    apply.add_argument("-f", "--filename", action="append", required=True, help=FILENAME_HELP)
    apply.add_argument(
        "--dry-run",
        nargs="?",
        const="client",
        choices=["none", "client", "server"],
        default="none",
        help="client: validate the manifests only; server: also check them against etcd "
        "(precondition, limits, quotas); neither writes",
    )
    diff = add_verb(
        sub,
        "diff",
        "show what `apply -f` would change (exit 0: none, 1: differences, >1: an error)",
        cmd_diff,
    )
    diff.add_argument("-f", "--filename", action="append", required=True, help=FILENAME_HELP)


Document = tuple[str, Kind[Any], Resource]


def _nothing_applied(problems: list[str]) -> str:
    if len(problems) == 1:
        return f"nothing applied: {problems[0]}"
    indented = ("\n".join("  " + line for line in p.splitlines()) for p in problems)
    return f"nothing applied: {len(problems)} problems:\n" + "\n".join(indented)


def load_documents(filenames: list[str], namespace: str | None) -> list[Document]:
    """Every document, validated; CliError listing every problem if any is invalid."""
    registry = kind_registry()
    objects: list[Document] = []
    problems: list[str] = []
    for source in filenames:
        try:
            for origin, doc in read_documents(source):
                try:
                    kind, obj = to_object(registry, origin, doc, namespace)
                except CliError as exc:
                    problems.append(str(exc))
                    continue
                objects.append((origin, kind, obj))
        except CliError as exc:
            problems.append(str(exc))
    if problems:
        raise CliError(_nothing_applied(problems))
    if not objects:
        raise CliError(f"no documents to apply in {', '.join(filenames)}")
    return objects


def _write_error(origin: str, what: str, obj: Resource, exc: StorageError) -> str | None:
    """The `error:` line for a write refused at write time; None for an error that ends
    the whole command (etcd unavailable)."""
    if isinstance(exc, AdmissionRefused):
        # The plug-in's message names the object as kubectl would ('labworkers "x" is
        # forbidden: exceeded quota …'); only a message that does not gets our name.
        message = str(exc)
        named = f'"{obj.metadata.name}"' in message
        return f"{origin}: {message}" if named else f"{origin}: {what} refused: {message}"
    if isinstance(exc, Conflict):
        return (
            f"{origin}: {what}: the object has been modified since resourceVersion "
            f"{obj.metadata.resource_version}, which the manifest names (conflict); get it "
            "again, or drop metadata.resourceVersion to overwrite"
        )
    if isinstance(exc, WriteRefused):
        return f"{origin}: {what} cannot be stored: {exc.detail}"
    if isinstance(exc, InvalidObject):
        return f"{origin}: {what} not applied: {exc}; fix the stored value or remove its key"
    if isinstance(exc, TooManyConflicts):
        return f"{origin}: {what} not applied: {exc}"
    return None


def cmd_apply(args: argparse.Namespace) -> int:
    """A write refused at write time (a quota, a stale resourceVersion) is one `error:` line
    and the other documents are still applied, as kubectl does, with exit code 1."""
    objects = load_documents(args.filename, default_namespace(args))
    if args.dry_run == "client":
        for _, kind, obj in objects:
            print(f"{qualified(kind)}/{obj.metadata.name} validated (dry run)")
        return 0
    dry_run = args.dry_run == "server"
    session = open_session(args)
    failed = False
    for index, (origin, kind, obj) in enumerate(objects):
        what = f"{qualified(kind)}/{obj.metadata.name}"
        repo = session.repositories.for_kind(kind)
        try:
            _, outcome = repo.apply(obj if dry_run else _stamped(repo, obj), dry_run=dry_run)
        except Unavailable as exc:
            left = len(objects) - index - 1
            maybe = (
                "it may or may not have been applied (check with `labctl get`)"
                if exc.maybe_applied
                else "it was not applied"
            )
            raise CliError(
                f"{origin}: {what}: etcd: {exc}; {maybe}; {left} later document(s) not applied"
            ) from None
        except StorageError as exc:
            line = _write_error(origin, what, obj, exc)
            if line is None:
                raise
            report(line)
            failed = True
            continue
        print(f"{what} {outcome}" + (" (server dry run)" if dry_run else ""))
    return 1 if failed else 0


def _stamped(repo: Any, obj: Resource) -> Resource:
    """The manifest with the traceparent of this apply — unless the object is otherwise
    unchanged, so that applying the same manifest twice stays a no-op ("unchanged")."""
    stamped = stamp(obj.model_copy(deep=True))
    if stamped == obj:
        return obj
    try:
        _, outcome = repo.apply(obj, dry_run=True)
    except StorageError:
        return stamped  # the real apply reports it
    if outcome == "unchanged":
        return obj
    return stamped


# -- diff ------------------------------------------------------------------------------------


def _yaml(obj: Resource | None) -> list[str]:
    if obj is None:
        return []
    doc = obj.to_dict()
    doc.get("metadata", {}).pop("resourceVersion", None)
    return yaml.safe_dump(doc, sort_keys=False).splitlines(keepends=True)


def cmd_diff(args: argparse.Namespace) -> int:
    """A unified diff, per object, of what is stored against what `apply` would store."""
    try:
        objects = load_documents(args.filename, default_namespace(args))
        session = open_session(args)
    except CliError as exc:
        raise _DiffError(str(exc)) from None
    differs = False
    failed = False
    for origin, kind, obj in objects:
        what = f"{qualified(kind)}/{obj.metadata.namespace}/{obj.metadata.name}"
        repo = session.repositories.for_kind(kind)
        try:
            current = repo.get(obj.metadata.namespace, obj.metadata.name)
            planned, outcome = repo.apply(obj, dry_run=True)
        except StorageError as exc:
            line = _write_error(origin, what, obj, exc)
            report(line or f"{origin}: {what}: etcd: {exc}")
            failed = True
            continue
        if outcome == "unchanged":
            continue
        if current is None:
            # A new object: its server-set fields (uid, timestamps) are not the user's diff.
            planned.metadata.uid = None
            planned.metadata.creation_timestamp = None
        lines = difflib.unified_diff(
            _yaml(current), _yaml(planned), f"live/{what}", f"merged/{what}"
        )
        sys.stdout.writelines(lines)
        differs = True
    if failed:
        return 2
    return 1 if differs else 0


class _DiffError(UsageError):
    """diff's errors exit >1: its exit code 1 means "differences found" (as kubectl)."""

"""The verbs that change objects in place: `edit`, `patch`, `label`, `annotate`, `scale`,
`delete`.

Each change is one `Repository.update_spec` (a CAS retried on the fresh object, so a
concurrent edit of another field is never lost; generation moves only when what users own
changes — never for labels or annotations) or, for `edit`, one `Repository.apply` with the
resourceVersion the user saw as its precondition: a conflict re-opens the editor on the
fresh object with the user's changes re-applied, as kubectl does.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from controller.app import kind_registry
from controller.cli.apply import FILENAME_HELP, load_documents
from controller.cli.common import check_selector, not_found, stamp, warn_invalid
from controller.cli.connection import Session, default_namespace, open_session
from controller.cli.errors import CliError, UsageError, report
from controller.cli.manifests import to_object
from controller.cli.models import has_replicas
from controller.cli.patching import PatchError, json_patch, merge_patch, merge_patch_between
from controller.cli.targets import Target, qualified, resolve
from controller.cli.verb import TYPES_HELP, Subparsers, add_verb
from controller.resources import Kind, Resource, validation_errors
from controller.resources.names import label_key_error, label_value_error, shorten
from controller.runtime.repository import (
    AdmissionRefused,
    InvalidObject,
    TooManyConflicts,
    WriteRefused,
)
from controller.storage import Conflict, NotFound


def register(sub: Subparsers) -> None:
    edit = add_verb(
        sub, "edit", "edit an object in $EDITOR and write it back (CAS)", cmd_edit, writes=True
    )
    edit.add_argument("resource", nargs="+", metavar="TYPE", help="TYPE NAME or TYPE/NAME")

    patch = add_verb(sub, "patch", "change fields of objects with a patch", cmd_patch, writes=True)
    patch.add_argument("resource", nargs="+", metavar="TYPE", help=TYPES_HELP)
    patch.add_argument("-p", "--patch", required=True, help="the patch, JSON or YAML")
    patch.add_argument(
        "--type",
        choices=["merge", "json"],
        default="merge",
        help="merge (RFC 7386, the default) or json (RFC 6902)",
    )

    for name, what in (("label", "labels"), ("annotate", "annotations")):
        p = add_verb(
            sub,
            name,
            f"set (KEY=VALUE) or remove (KEY-) {what} of objects",
            cmd_label if name == "label" else cmd_annotate,
            writes=True,
        )
        p.add_argument(
            "resource", nargs="+", metavar="ARG", help="TYPE NAME... KEY=VALUE... KEY-..."
        )
        p.add_argument("--overwrite", action="store_true", help="replace existing values")
        p.add_argument("-l", "--selector", help="every object with these labels")
        p.add_argument("--all", action="store_true", help="every object of TYPE in the namespace")

    scale = add_verb(
        sub,
        "scale",
        "set spec.replicas of a pool (or any kind with replicas)",
        cmd_scale,
        writes=True,
    )
    scale.add_argument("target", nargs="+", metavar="TYPE", help="TYPE NAME or TYPE/NAME")
    scale.add_argument("--replicas", type=_replicas, required=True, help="an integer >= 0")

    delete = add_verb(sub, "delete", "delete objects (their controllers finalize them)", cmd_delete)
    delete.add_argument("resource", nargs="*", metavar="TYPE", help=TYPES_HELP)
    delete.add_argument("-f", "--filename", action="append", help=FILENAME_HELP)
    delete.add_argument("-l", "--selector", help="every object of TYPE with these labels")
    delete.add_argument("--all", action="store_true", help="every object of TYPE in the namespace")


# -- choosing objects ------------------------------------------------------------------------


def _chosen(
    session: Session, targets: list[Target], args: argparse.Namespace
) -> list[tuple[Kind[Any], str]]:
    """(kind, name) of every object named, or selected by `-l` / `--all`."""
    selector, every = getattr(args, "selector", None), getattr(args, "all", False)
    named = any(t.names for t in targets)
    if named and (selector or every):
        raise UsageError("give names, or -l / --all, not both")
    if not named and not (selector or every):
        raise UsageError("no objects named: give TYPE NAME..., TYPE/NAME..., -l SELECTOR or --all")
    check_selector(selector)
    chosen: list[tuple[Kind[Any], str]] = []
    for target in targets:
        if target.names:
            chosen += [(target.kind, name) for name in target.names]
        else:
            repo = session.repositories.for_kind(target.kind)
            listed = repo.list(session.namespace, selector, on_invalid=warn_invalid)
            chosen += [(target.kind, obj.metadata.name) for obj in listed]
    return chosen


def _stamping(mutate: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`mutate`, then the traceparent annotation — only if the mutation changed something,
    so a no-op stays a no-op."""

    def wrapped(draft: Any) -> Any:
        before = draft.model_copy(deep=True)
        result = mutate(draft)
        result = draft if result is None else result
        return stamp(result) if result != before else result

    return wrapped


def _bound(mutate: Callable[[Kind[Any], Any], Any], kind: Kind[Any]) -> Callable[[Any], Any]:
    return lambda obj: mutate(kind, obj)


def _update_each(
    session: Session,
    chosen: list[tuple[Kind[Any], str]],
    mutate: Callable[[Kind[Any], Any], Any],
    done: str,
    unchanged: str,
) -> int:
    failed = False
    for kind, name in chosen:
        repo = session.repositories.for_kind(kind)
        what = f"{qualified(kind)}/{name}"
        try:
            result = repo.update_spec(session.namespace, name, _stamping(_bound(mutate, kind)))
        except NotFound:
            report(not_found(kind, name, session.namespace))
        except InvalidObject as exc:
            report(f"{exc}; not changed: fix the stored value first")
        except WriteRefused as exc:
            report(f"{what} not {done}: {exc.detail}")
        except (AdmissionRefused, TooManyConflicts, Conflict, CliError) as exc:
            report(f"{what} not {done}: {exc}")
        else:
            print(f"{what} {done if result.written else unchanged}")
            continue
        failed = True
    return 1 if failed else 0


# -- patch -----------------------------------------------------------------------------------


def _parse_patch(text: str) -> Any:
    try:
        return yaml.safe_load(text)  # YAML is a superset of JSON
    except yaml.YAMLError:
        raise UsageError(f"--patch {shorten(text)}: not valid JSON or YAML") from None


def _validated(kind: Kind[Any], current: Resource, doc: Any) -> Resource:
    if not isinstance(doc, dict):
        raise CliError("the patched document is not an object")
    given = doc.get("metadata")
    meta: dict[str, Any] = given if isinstance(given, dict) else {}
    if (
        meta.get("name") != current.metadata.name
        or meta.get("namespace", current.metadata.namespace) != current.metadata.namespace
    ):
        raise CliError("a patch cannot change metadata.name or metadata.namespace")
    try:
        patched: Resource = kind.model.model_validate(doc)
    except ValidationError as exc:
        raise CliError(f"invalid {kind.kind}: {'; '.join(validation_errors(exc)[:5])}") from None
    if patched.metadata.resource_version != current.metadata.resource_version:
        # A resourceVersion in the patch is a precondition (as the API server's).
        raise Conflict(current.metadata.name, patched.metadata.resource_version or 0, None)
    return patched


def cmd_patch(args: argparse.Namespace) -> int:
    targets = resolve(kind_registry(), args.resource)
    patch = _parse_patch(args.patch)
    if args.type == "merge" and not isinstance(patch, dict):
        raise UsageError('a merge patch is a JSON object, e.g. \'{"spec":{"replicas":3}}\'')
    if args.type == "json" and not isinstance(patch, list):
        raise UsageError(
            'a JSON patch is a list, e.g. \'[{"op":"replace","path":"/spec/replicas","value":3}]\''
        )
    session = open_session(args)
    chosen = _chosen(session, targets, args)

    def mutate(kind: Kind[Any], current: Resource) -> Resource:
        doc = current.to_dict()
        try:
            patched = merge_patch(doc, patch) if args.type == "merge" else json_patch(doc, patch)
        except PatchError as exc:
            raise CliError(str(exc)) from None
        return _validated(kind, current, patched)

    return _update_each(session, chosen, mutate, "patched", "patched (no change)")


# -- label / annotate ------------------------------------------------------------------------


def _split_changes(words: list[str]) -> tuple[list[str], dict[str, str], list[str]]:
    """TYPE/NAME words, KEY=VALUE sets and KEY- removals, in kubectl's syntax."""
    objects: list[str] = []
    sets: dict[str, str] = {}
    removals: list[str] = []
    for word in words:
        if "=" in word:
            key, _, value = word.partition("=")
            sets[key] = value
        elif word.endswith("-") and objects:
            removals.append(word[:-1])
        else:
            objects.append(word)
    return objects, sets, removals


def _change_metadata(args: argparse.Namespace, field: str, verb_past: str) -> int:
    objects, sets, removals = _split_changes(args.resource)
    if not sets and not removals:
        raise UsageError(f"give at least one KEY=VALUE or KEY- to change {field}")
    for key, value in sets.items():
        error = label_key_error(key) or (label_value_error(value) if field == "labels" else None)
        if error is not None:
            raise UsageError(f"{shorten(key)}={shorten(value)}: {error}")
    targets = resolve(kind_registry(), objects)
    session = open_session(args)
    chosen = _chosen(session, targets, args)

    def mutate(kind: Kind[Any], obj: Resource) -> Resource:
        current: dict[str, str] = dict(getattr(obj.metadata, field))
        for key, value in sets.items():
            if key in current and current[key] != value and not args.overwrite:
                raise CliError(
                    f"{key!r} already has a value ({current[key]}), and --overwrite is false"
                )
            current[key] = value
        for key in removals:
            current.pop(key, None)
        setattr(obj.metadata, field, current)
        return obj

    return _update_each(session, chosen, mutate, verb_past, f"not {verb_past}")


def cmd_label(args: argparse.Namespace) -> int:
    return _change_metadata(args, "labels", "labeled")


def cmd_annotate(args: argparse.Namespace) -> int:
    return _change_metadata(args, "annotations", "annotated")


# -- scale -----------------------------------------------------------------------------------


def _replicas(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {shorten(text)}")
    return value


def cmd_scale(args: argparse.Namespace) -> int:
    """Set spec.replicas: one CAS through Repository.update_spec, so generation moves only
    when the count changes and a concurrent edit of the rest of the spec is never lost."""
    targets = resolve(kind_registry(), args.target)
    for target in targets:
        if not has_replicas(target.kind):
            raise CliError(
                f"{target.kind.plural} cannot be scaled: a {target.kind.kind} has no spec.replicas"
            )
    if any(not t.names for t in targets):
        raise UsageError("scale needs the object's name: TYPE NAME or TYPE/NAME")
    session = open_session(args)
    chosen = [(t.kind, name) for t in targets for name in t.names]

    def mutate(kind: Kind[Any], obj: Any) -> Any:
        obj.spec.replicas = args.replicas
        return obj

    return _update_each(session, chosen, mutate, "scaled", "scaled (no change)")


# -- delete ----------------------------------------------------------------------------------


def cmd_delete(args: argparse.Namespace) -> int:
    if args.filename:
        if args.resource or args.selector or args.all:
            raise UsageError("delete -f takes no TYPE, names, -l or --all")
        docs = load_documents(args.filename, default_namespace(args))
        session = open_session(args)
        chosen = [(kind, obj.metadata.name, obj.metadata.namespace) for _, kind, obj in docs]
    else:
        targets = resolve(kind_registry(), args.resource)
        session = open_session(args)
        chosen = [(k, n, session.namespace) for k, n in _chosen(session, targets, args)]
    failed = False
    for kind, name, namespace in chosen:
        repo = session.repositories.for_kind(kind)
        try:
            if repo.get(namespace, name) is None:
                raise NotFound(name)
            repo.mark_for_deletion(namespace, name)
        except NotFound:
            report(not_found(kind, name, namespace))
        except InvalidObject as exc:
            # The key may hold a copy of another object: deleting "it" by name could
            # delete the wrong thing, and the controller would never finalize it anyway.
            report(f"{exc}; not deleted: fix the value, or remove the key with etcdctl")
        except (AdmissionRefused, TooManyConflicts) as exc:
            report(f'{qualified(kind)} "{name}" not deleted: {exc}')
        else:
            print(f'{qualified(kind)} "{name}" deleted')
            continue
        failed = True
    return 1 if failed else 0


# -- edit ------------------------------------------------------------------------------------

EDIT_HEADER = """\
# Please edit the object below. Lines beginning with a '#' will be ignored,
# and an empty file will abort the edit. If an error occurs while saving this file will be
# reopened with the relevant failures.
#
"""


def _editor() -> list[str]:
    text = os.environ.get("LABCTL_EDITOR") or os.environ.get("EDITOR") or "vi"
    return shlex.split(text)


def _strip_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def _run_editor(text: str, name: str) -> str:
    with tempfile.TemporaryDirectory(prefix="labctl-edit-") as tmp:
        path = Path(tmp) / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            done = subprocess.run([*_editor(), str(path)], check=False)
        except OSError as exc:
            raise CliError(
                f"cannot start the editor {_editor()[0]!r}: {exc.strerror or exc}"
            ) from None
        if done.returncode != 0:
            raise CliError(f"the editor exited with status {done.returncode}; nothing changed")
        return path.read_text(encoding="utf-8")


def cmd_edit(args: argparse.Namespace) -> int:
    targets = resolve(kind_registry(), args.resource)
    if len(targets) != 1 or len(targets[0].names) != 1:
        raise UsageError("edit takes one object: TYPE NAME or TYPE/NAME")
    kind, name = targets[0].kind, targets[0].names[0]
    session = open_session(args)
    repo = session.repositories.for_kind(kind)
    current = repo.get(session.namespace, name)
    if current is None:
        raise CliError(not_found(kind, name, session.namespace))
    what = f"{qualified(kind)}/{name}"
    original = current.to_dict()
    body = yaml.safe_dump(original, sort_keys=False)
    notes: list[str] = []
    while True:
        given = EDIT_HEADER + "".join(f"# {line}\n" for line in notes) + body
        edited_body = _strip_comments(_run_editor(given, name))
        if not edited_body.strip() or (not notes and edited_body == _strip_comments(given)):
            print("Edit cancelled, no changes made.")
            return 0
        try:
            edited = yaml.safe_load(edited_body)
            _, obj = to_object(kind_registry(), what, edited, session.namespace)
        except (yaml.YAMLError, CliError) as exc:
            problem = str(exc) if isinstance(exc, CliError) else "not valid YAML"
            if edited_body == _strip_comments(given):  # saved again without fixing it
                raise CliError(f"{what}: edit abandoned: {problem}") from None
            notes = [f"Error: {line}" for line in problem.splitlines()]
            body = edited_body + "\n"
            continue
        if (obj.metadata.name, obj.metadata.namespace) != (name, current.metadata.namespace):
            raise CliError(f"{what}: edit cannot change metadata.name or metadata.namespace")
        if obj.metadata.resource_version is None:
            obj.metadata.resource_version = current.metadata.resource_version
        try:
            _, outcome = repo.apply(stamp(obj))
        except Conflict:
            fresh = repo.get(session.namespace, name)
            if fresh is None:
                raise CliError(f"{what} was deleted while you edited it; nothing written") from None
            changes = merge_patch_between(original, edited)
            if isinstance(changes.get("metadata"), dict):
                changes["metadata"].pop("resourceVersion", None)
            original = fresh.to_dict()
            body = yaml.safe_dump(merge_patch(original, changes), sort_keys=False)
            notes = [
                "Error: the object was changed by someone else while you edited it",
                f"(resourceVersion {obj.metadata.resource_version} is now "
                f"{fresh.metadata.resource_version}). Your changes are re-applied to the",
                "latest version below: review them and save again.",
            ]
            current = fresh
            continue
        print(f"{what} {'edited' if outcome != 'unchanged' else 'unchanged'}")
        return 0

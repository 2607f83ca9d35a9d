"""`labctl`: run the controller, and kubectl-style verbs for every kind stored in etcd.

The verbs know no kind: each resolves its TYPE through `controller.app.kind_registry()`
(names, columns, model, status) and writes through `controller.app.repositories()` — the
same repositories, with the same admission plug-ins (quotas), as the controller — so a new
kind gets `get`, `describe`, `apply`, `delete`, `wait` (and `scale`, if its spec has
replicas) by being registered.

Exit codes a shell user can rely on: 0 success, 1 the operation failed (not found, invalid
or unreadable manifest, an object invalid in etcd, refused by a quota, timeout, etcd
unreachable, unknown resource type), 2 bad usage. Errors go to stderr as `error: ...` lines
(one per failed object, one in all for a command about one object), never a traceback,
whatever the input. A listing (`get` without a name, `wait --all`) skips objects that are
invalid in etcd, exactly as the controller does, with one `warning: ...` line per key, and
still exits 0.
"""

from __future__ import annotations

import argparse
import builtins
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, NoReturn, get_args

from pydantic import BaseModel

import controller.cli_labworker  # noqa: F401 - registers LabWorker's describe layout
from controller import cli_history, config
from controller.app import kind_registry
from controller.app import repositories as app_repositories
from controller.cli_errors import CliError, UsageError
from controller.cli_manifest import read_documents, to_object
from controller.cli_render import describe, format_rows, print_objects
from controller.cli_targets import (
    Target,
    field_matcher,
    parse_field_selector,
    qualified,
    resolve,
)
from controller.events.kind import EVENT
from controller.events.model import Event
from controller.events.query import events_for
from controller.observability import configure_logging
from controller.resources import DEFAULT_NAMESPACE, Kind, Resource, parse_selector
from controller.resources.names import shorten
from controller.resources.selector import SelectorError
from controller.runtime.repository import (
    AdmissionRefused,
    InvalidObject,
    Repository,
    RepositorySet,
    TooManyConflicts,
    WriteRefused,
)
from controller.storage import Conflict, EtcdClient, NotFound, StorageError, Unavailable

__all__ = ["CliError", "UsageError", "build_parser", "main"]

DEFAULT_WAIT_TYPE = "labworkers"
"""What `labctl wait --all` waits for when no TYPE is given (the single-kind labctl's
behaviour, kept for scripts written against it)."""

_warned: set[str] = set()


def _warn_invalid(err: InvalidObject) -> None:
    """A listing skips an invalid object and says so once per key (wait polls the list)."""
    if err.key not in _warned:
        _warned.add(err.key)
        print(f"warning: {err}; skipped (the controller ignores it too)", file=sys.stderr)


def _error(message: str) -> None:
    """One failed object among several: reported, and the command goes on with the rest."""
    print(f"error: {message}", file=sys.stderr)


def _now() -> datetime:
    return datetime.now(UTC)


# -- connection ----------------------------------------------------------------------------

_CLIENT_SETTINGS = [s for s in config.SETTINGS if s.env.startswith("ETCD_")]


def _add_connection_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("etcd connection (each also an environment variable)")
    for s in _CLIENT_SETTINGS:
        group.add_argument(s.flag, dest=s.attr, default=None, help=f"{s.help}; env {s.env}")


@dataclass
class _Session:
    """One command's etcd client and the repositories (with admission) it writes through."""

    client: EtcdClient
    root: str
    repositories: RepositorySet


def _session(args: argparse.Namespace) -> _Session:
    settings = config.load(args)
    client = config.etcd_client(settings)
    root = settings.etcd.prefix
    return _Session(client, root, app_repositories(client, root))


def _namespace(args: argparse.Namespace) -> str:
    return str(args.namespace or DEFAULT_NAMESPACE)


def _not_found(kind: Kind[Any], name: str, namespace: str) -> str:
    return f'{kind.plural} "{name}" not found in namespace {namespace}'


def _check_selector(selector: str | None) -> None:
    if selector:
        try:
            parse_selector(selector)
        except SelectorError as exc:
            raise CliError(f"invalid selector {selector!r}: {exc}") from None


def _no_selectors_with_names(targets: list[Target], args: argparse.Namespace) -> None:
    if any(t.names for t in targets) and (
        getattr(args, "selector", None) or getattr(args, "field_selector", None)
    ):
        raise UsageError("selectors (-l, --field-selector) cannot be combined with names")


def _fetch(
    session: _Session,
    target: Target,
    namespace: str,
    *,
    alone: bool,
) -> tuple[list[Resource], bool]:
    """The named objects of `target`, in order, and whether any was missing or invalid.

    `alone`: the command names just this one object, so its failure is the command's error
    (raised); otherwise each failure is one `error:` line and the rest are still returned."""
    repo = session.repositories.for_kind(target.kind)
    found: list[Resource] = []
    failed = False
    for name in target.names:
        try:
            obj = repo.get(namespace, name)
        except InvalidObject as exc:
            if alone:
                raise
            _error(f"{exc}; the controller ignores it until it is fixed")
            failed = True
            continue
        if obj is None:
            if alone:
                raise CliError(_not_found(target.kind, name, namespace))
            _error(_not_found(target.kind, name, namespace))
            failed = True
            continue
        found.append(obj)
    return found, failed


# -- apply -----------------------------------------------------------------------------------


def _nothing_applied(problems: list[str]) -> str:
    if len(problems) == 1:
        return f"nothing applied: {problems[0]}"
    indented = ("\n".join("  " + line for line in p.splitlines()) for p in problems)
    return f"nothing applied: {len(problems)} problems:\n" + "\n".join(indented)


def cmd_apply(args: argparse.Namespace) -> int:
    """Every document through its kind's `Repository.apply`, after all were validated.

    An invalid document writes nothing at all; a write refused at write time (a quota, a
    stale resourceVersion) is one `error:` line and the other documents are still applied,
    as kubectl does, with exit code 1."""
    registry = kind_registry()
    objects: list[tuple[str, Kind[Any], Resource]] = []
    problems: list[str] = []
    for source in args.filename:
        try:
            for origin, doc in read_documents(source):
                try:
                    kind, obj = to_object(registry, origin, doc, args.namespace)
                except CliError as exc:
                    problems.append(str(exc))
                    continue
                objects.append((origin, kind, obj))
        except CliError as exc:
            problems.append(str(exc))
    if problems:
        raise CliError(_nothing_applied(problems))
    if not objects:
        raise CliError(f"no documents to apply in {', '.join(args.filename)}")
    session = _session(args)
    failed = False
    for index, (origin, kind, obj) in enumerate(objects):
        what = f"{qualified(kind)}/{obj.metadata.name}"
        try:
            _, outcome = session.repositories.for_kind(kind).apply(obj)
        except AdmissionRefused as exc:
            # The plug-in's message names the object as kubectl would ('labworkers "x" is
            # forbidden: exceeded quota …'); only a message that does not gets our name.
            message = str(exc)
            named = f'"{obj.metadata.name}"' in message
            _error(f"{origin}: {message}" if named else f"{origin}: {what} refused: {message}")
        except Conflict:
            _error(
                f"{origin}: {what}: changed since resourceVersion "
                f"{obj.metadata.resource_version}, which the manifest names; get it again, "
                "or drop metadata.resourceVersion to overwrite"
            )
        except WriteRefused as exc:
            _error(f"{origin}: {what} cannot be stored: {exc.detail}")
        except InvalidObject as exc:
            _error(f"{origin}: {what} not applied: {exc}; fix the stored value or remove its key")
        except TooManyConflicts as exc:
            _error(f"{origin}: {what} not applied: {exc}")
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
        else:
            print(f"{what} {outcome}")
            continue
        failed = True
    return 1 if failed else 0


# -- get / describe ----------------------------------------------------------------------------


def cmd_get(args: argparse.Namespace) -> int:
    registry = kind_registry()
    targets = resolve(registry, args.resource)
    _no_selectors_with_names(targets, args)
    requirements = parse_field_selector(args.field_selector) if args.field_selector else []
    matchers = {t.kind.kind: field_matcher(t.kind, requirements) for t in targets}
    _check_selector(args.selector)
    session = _session(args)
    namespace = _namespace(args)
    single = len(targets) == 1 and len(targets[0].names) == 1
    groups: list[tuple[Kind[Any], Sequence[Resource]]] = []
    failed = False
    for target in targets:
        if target.names:
            found, missing = _fetch(session, target, namespace, alone=single)
            failed = failed or missing
        else:
            listed = session.repositories.for_kind(target.kind).list(
                None if args.all_namespaces else namespace,
                args.selector,
                on_invalid=_warn_invalid,
            )
            found = [obj for obj in listed if matchers[target.kind.kind](obj)]
        groups.append((target.kind, found))
    printed = print_objects(
        groups,
        args.output,
        single=single,
        namespaces=bool(args.all_namespaces),
        now=_now(),
        out=sys.stdout,
    )
    if not printed and not failed and args.output in (None, "wide"):
        where = "any namespace" if args.all_namespaces else f"namespace {namespace}"
        print(f"No resources found in {where}.", file=sys.stderr)
    return 1 if failed else 0


def cmd_describe(args: argparse.Namespace) -> int:
    registry = kind_registry()
    targets = resolve(registry, args.resource)
    _no_selectors_with_names(targets, args)
    _check_selector(args.selector)
    session = _session(args)
    namespace = _namespace(args)
    single = len(targets) == 1 and len(targets[0].names) == 1
    failed = False
    pages: list[str] = []
    for target in targets:
        if target.names:
            found, missing = _fetch(session, target, namespace, alone=single)
            failed = failed or missing
        else:
            found = list(
                session.repositories.for_kind(target.kind).list(
                    None if args.all_namespaces else namespace,
                    args.selector,
                    on_invalid=_warn_invalid,
                )
            )
        now = _now()
        for obj in found:
            pages.append(describe(target.kind, obj, _events_of(session, obj), now))
    if pages:
        print("\n\n".join(pages))
    elif not failed:
        where = "any namespace" if args.all_namespaces else f"namespace {namespace}"
        print(f"No resources found in {where}.", file=sys.stderr)
    return 1 if failed else 0


class _EventListing(Repository[Event]):
    """The Events repository describe reads through: an invalid Event in the namespace is one
    `warning:` line, as in every listing, rather than the repository's error log line."""

    def list(
        self,
        namespace: str | None = None,
        selector: str | None = None,
        *,
        on_invalid: Callable[[InvalidObject], object] | None = None,
        page_size: int = 5000,
    ) -> builtins.list[Event]:
        return super().list(
            namespace, selector, on_invalid=on_invalid or _warn_invalid, page_size=page_size
        )


def _events_of(session: _Session, obj: Resource) -> list[Event]:
    """The Events about `obj` — this incarnation (uid) of this kind — oldest first."""
    meta = obj.metadata
    events = _EventListing(session.client, EVENT, session.root)
    return events_for(events, session.root, meta.namespace, meta.name, meta.uid, kind=obj.kind)


# -- delete ----------------------------------------------------------------------------------


def cmd_delete(args: argparse.Namespace) -> int:
    targets = resolve(kind_registry(), args.resource)
    if any(not t.names for t in targets):
        raise UsageError("delete needs the objects' names: TYPE NAME... or TYPE/NAME...")
    session = _session(args)
    namespace = _namespace(args)
    failed = False
    for target in targets:
        repo = session.repositories.for_kind(target.kind)
        for name in target.names:
            try:
                if repo.get(namespace, name) is None:
                    raise NotFound(name)
                repo.mark_for_deletion(namespace, name)
            except NotFound:
                _error(_not_found(target.kind, name, namespace))
            except InvalidObject as exc:
                # The key may hold a copy of another object: deleting "it" by name could
                # delete the wrong thing, and the controller would never finalize it anyway.
                _error(f"{exc}; not deleted: fix the value, or remove the key with etcdctl")
            except (AdmissionRefused, TooManyConflicts) as exc:
                _error(f'{qualified(target.kind)} "{name}" not deleted: {exc}')
            else:
                print(f'{qualified(target.kind)} "{name}" deleted')
                continue
            failed = True
    return 1 if failed else 0


# -- wait ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _WaitFor:
    """`--for=delete`, `--for=phase=X` or `--for=condition=X[=Status]`."""

    what: str
    name: str = ""
    value: str = ""

    def met(self, obj: Resource | None) -> bool:
        if self.what == "delete":
            return obj is None
        if obj is None:
            return False
        status = _status_dict(obj)
        if self.what == "phase":
            return status.get("phase") == self.name
        for condition in status.get("conditions") or ():
            if isinstance(condition, dict) and str(condition.get("type", "")).lower() == self.name:
                return str(condition.get("status", "")).lower() == self.value
        return False

    def state(self, obj: Resource | None) -> str:
        """What an unmet object is at, for the timeout message."""
        if obj is None:
            return "absent"
        if self.what == "delete":
            return "exists"
        status = _status_dict(obj)
        if self.what == "phase":
            return str(status.get("phase") or "none")
        for condition in status.get("conditions") or ():
            if isinstance(condition, dict) and str(condition.get("type", "")).lower() == self.name:
                return f"{condition.get('type')}={condition.get('status')}"
        return "no such condition"


def _status_dict(obj: Resource) -> dict[str, Any]:
    if not obj.status_field:
        return {}
    value = obj.status_value()
    if isinstance(value, BaseModel):
        dumped: dict[str, Any] = value.model_dump(mode="json", by_alias=True, exclude_none=True)
        return dumped
    return value if isinstance(value, dict) else {}


def _submodel(model: type[BaseModel], name: str | None) -> type[BaseModel] | None:
    """The pydantic model of field `name` of `model` (unwrapping `X | None`)."""
    info = model.model_fields.get(name) if name else None
    if info is None:
        return None
    for candidate in (info.annotation, *get_args(info.annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def phase_values(kind: Kind[Any]) -> frozenset[str] | None:
    """The phases a kind's `status.phase` can take (empty: any text); None: it has none."""
    status = _submodel(kind.model, kind.model.status_field)
    info = status.model_fields.get("phase") if status is not None else None
    if info is None:
        return None
    values: set[str] = set()
    for candidate in (info.annotation, *get_args(info.annotation)):
        if isinstance(candidate, type) and issubclass(candidate, Enum):
            values.update(str(member.value) for member in candidate)
    return frozenset(values)


def has_replicas(kind: Kind[Any]) -> bool:
    spec = _submodel(kind.model, "spec")
    return spec is not None and "replicas" in spec.model_fields


def _parse_for(text: str, kinds: list[Kind[Any]]) -> _WaitFor:
    if text == "delete":
        return _WaitFor("delete")
    what, _, rest = text.partition("=")
    if what == "phase" and rest:
        for kind in kinds:
            values = phase_values(kind)
            if values is None:
                raise CliError(
                    f"--for={text}: {kind.plural} have no status.phase; "
                    "use --for=condition=<Type> or --for=delete"
                )
            if values and rest not in values:
                raise CliError(
                    f"--for={text}: not a phase of {kind.plural} "
                    f"(one of {', '.join(sorted(values))})"
                )
        return _WaitFor("phase", rest)
    if what == "condition" and rest:
        name, _, value = rest.partition("=")
        if name:
            return _WaitFor("condition", name.lower(), (value or "True").lower())
    raise UsageError(f"--for={text}: expected delete, phase=<Phase> or condition=<Type>[=<Status>]")


def _parse_duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    try:
        for suffix in ("ms", "s", "m", "h"):
            if text.endswith(suffix):
                seconds = float(text[: -len(suffix)]) * units[suffix]
                break
        else:
            seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also NaN
        raise UsageError(f"--timeout={text}: expected a duration such as 30s, 5m or 1h")
    return seconds


def cmd_wait(args: argparse.Namespace) -> int:
    registry = kind_registry()
    if args.all:
        targets = resolve(registry, args.target or [DEFAULT_WAIT_TYPE])
        if any(t.names for t in targets):
            raise UsageError("--all waits for every object of a TYPE; give no names with it")
    else:
        if not args.target:
            raise CliError("wait needs TYPE/NAME (or TYPE NAME..., or TYPE --all)")
        targets = resolve(registry, args.target)
        if any(not t.names for t in targets):
            raise CliError("wait needs TYPE/NAME (or TYPE NAME..., or TYPE --all)")
    condition = _parse_for(args.condition, [t.kind for t in targets])
    timeout = _parse_duration(args.timeout)
    _check_selector(args.selector)
    session = _session(args)
    namespace = _namespace(args)
    deadline = time.monotonic() + timeout
    seen: dict[str, None] = {}
    while True:
        pending = _pending(session, targets, namespace, condition, args, seen)
        if not pending:
            for line in seen:
                print(f"{line} condition met")
            return 0
        if time.monotonic() >= deadline:
            raise CliError(
                f"timed out waiting for the condition on {len(pending)} object(s): "
                + ", ".join(pending[:10])
                + (f" and {len(pending) - 10} more" if len(pending) > 10 else "")
            )
        time.sleep(0.25)


def _pending(
    session: _Session,
    targets: list[Target],
    namespace: str,
    condition: _WaitFor,
    args: argparse.Namespace,
    seen: dict[str, None],
) -> list[str]:
    """The objects not yet meeting `condition`, as `kind.group/name (state)`; every object
    considered is remembered in `seen` (in order) for the final `condition met` lines."""
    out: list[str] = []
    for target in targets:
        repo = session.repositories.for_kind(target.kind)
        objects: list[tuple[str, Resource | None]]
        if target.names:
            objects = [(name, repo.get(namespace, name)) for name in target.names]
        else:
            objects = [
                (obj.metadata.name, obj)
                for obj in repo.list(namespace, args.selector, on_invalid=_warn_invalid)
            ]
        for name, obj in objects:
            label = f"{qualified(target.kind)}/{name}"
            seen.setdefault(label)
            if not condition.met(obj):
                out.append(f"{label} ({condition.state(obj)})")
    return out


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
    replicas: int = args.replicas
    session = _session(args)
    namespace = _namespace(args)
    failed = False

    def set_replicas(obj: Any) -> None:
        obj.spec.replicas = replicas

    for target in targets:
        repo = session.repositories.for_kind(target.kind)
        for name in target.names:
            try:
                repo.update_spec(namespace, name, set_replicas)
            except NotFound:
                _error(_not_found(target.kind, name, namespace))
            except InvalidObject as exc:
                _error(f"{exc}; not scaled: fix the stored value first")
            except WriteRefused as exc:
                _error(f"{qualified(target.kind)}/{name} not scaled: {exc.detail}")
            except (AdmissionRefused, TooManyConflicts) as exc:
                _error(f"{qualified(target.kind)}/{name} not scaled: {exc}")
            else:
                print(f"{qualified(target.kind)}/{name} scaled")
                continue
            failed = True
    return 1 if failed else 0


# -- api-resources ---------------------------------------------------------------------------


def cmd_api_resources(args: argparse.Namespace) -> int:
    """The kinds this labctl serves and every name they answer to (kubectl api-resources)."""
    rows = [["NAME", "SHORTNAMES", "APIVERSION", "KIND"]]
    for kind in sorted(kind_registry(), key=lambda k: k.plural):
        rows.append([kind.plural, ",".join(kind.short_names), kind.api_version, kind.kind])
    print("\n".join(format_rows(rows)))
    return 0


# -- run -------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from controller.app import run_controller

    return run_controller(config.load(args))


# -- providers -------------------------------------------------------------------------------


def cmd_providers(args: argparse.Namespace) -> int:
    """Installed provider plug-ins and their settings as this environment resolves them;
    a secret's value is never shown, only whether it is set."""
    from controller.labworker import plugins

    installed = plugins.installed()
    if not installed:
        raise CliError(
            f"no provider plug-ins installed (entry point group {plugins.ENTRY_POINT_GROUP})"
        )
    selected = (os.environ.get("LAB_PROVIDER") or "sim").strip().lower()
    for index, (name, plugin) in enumerate(sorted(installed.items())):
        mark = "   (selected: LAB_PROVIDER)" if name == selected else ""
        print(("\n" if index else "") + f"{name}: {plugin.summary}{mark}")
        rows = [["  SETTING", "DEFAULT", "CURRENT", "HELP"]]
        for setting in plugin.settings:
            value = os.environ.get(setting.env) or None
            if setting.secret:
                current = "(set)" if value else "(unset)"
            else:
                current = value if value is not None else "-"
            rows.append(["  " + setting.env, setting.default or "-", current, setting.help])
        print("\n".join(format_rows(rows)))
    return 0


# -- parser ----------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one `error:` line (exit 2) like every other error."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


_TYPES_HELP = "TYPE [NAME...] or TYPE/NAME...; TYPE is any name `labctl api-resources` lists"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="labctl",
        description="Lab Resource Controller: LabWorkers, pools, quotas and events in etcd.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def verb(name: str, help: str, func: Callable[[argparse.Namespace], int]) -> Any:
        p = sub.add_parser(name, help=help)
        p.set_defaults(func=func, parser=p)
        return p

    run = verb("run", "run the controller (settings: flags or environment)", cmd_run)
    config.add_arguments(run)

    apply = verb("apply", "create or update objects of any kind from manifests", cmd_apply)
    apply.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        help="file, directory, or - for stdin (repeatable)",
    )
    apply.add_argument("-n", "--namespace", help="namespace for manifests without one")
    _add_connection_args(apply)

    get = verb("get", "list objects or show some", cmd_get)
    get.add_argument("resource", nargs="*", metavar="TYPE", help=_TYPES_HELP)
    get.add_argument("-n", "--namespace")
    get.add_argument("-A", "--all-namespaces", action="store_true")
    get.add_argument("-l", "--selector", help="label selector, e.g. tier=gold,region in (eu)")
    get.add_argument(
        "--field-selector",
        help="e.g. involvedObject.name=w1,type!=Normal (fields: metadata.name, "
        "metadata.namespace and the kind's indexed fields)",
    )
    get.add_argument("-o", "--output", choices=["wide", "json", "yaml", "name"])
    _add_connection_args(get)

    describe_ = verb("describe", "show objects in detail, with their recent events", cmd_describe)
    describe_.add_argument("resource", nargs="*", metavar="TYPE", help=_TYPES_HELP)
    describe_.add_argument("-n", "--namespace")
    describe_.add_argument("-A", "--all-namespaces", action="store_true", help="(without names)")
    describe_.add_argument("-l", "--selector", help="label selector (without names)")
    _add_connection_args(describe_)

    delete = verb("delete", "delete objects (their controllers finalize them)", cmd_delete)
    delete.add_argument("resource", nargs="+", metavar="TYPE", help=_TYPES_HELP)
    delete.add_argument("-n", "--namespace")
    _add_connection_args(delete)

    wait = verb("wait", "wait for objects to reach a phase or condition, or be deleted", cmd_wait)
    wait.add_argument("target", nargs="*", metavar="TYPE", help=_TYPES_HELP)
    wait.add_argument(
        "--for",
        dest="condition",
        required=True,
        help="delete | phase=<Phase> | condition=<Type>[=<Status>] (Status defaults to True)",
    )
    wait.add_argument("--timeout", default="30s", help="e.g. 60s, 5m (default 30s)")
    wait.add_argument("--all", action="store_true", help="every object of TYPE in the namespace")
    wait.add_argument("-l", "--selector", help="with --all: only objects with these labels")
    wait.add_argument("-n", "--namespace")
    _add_connection_args(wait)

    scale = verb("scale", "set spec.replicas of a pool (or any kind with replicas)", cmd_scale)
    scale.add_argument("target", nargs="+", metavar="TYPE", help="TYPE NAME or TYPE/NAME")
    scale.add_argument("--replicas", type=_replicas, required=True, help="an integer >= 0")
    scale.add_argument("-n", "--namespace")
    _add_connection_args(scale)

    cli_history.register(sub, _add_connection_args)

    verb("api-resources", "list the kinds labctl serves and their names", cmd_api_resources)
    verb("providers", "list the installed provider plug-ins and their settings", cmd_providers)
    return parser


_POSITIONALS = {"get": "resource", "describe": "resource", "delete": "resource"}
_POSITIONALS.update(wait="target", scale="target")
"""Verbs whose TYPE/NAME arguments may come after options, as with kubectl
(`labctl get lw -n emea w1`); argparse alone would refuse the names after `-n emea`."""


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    args, extra = parser.parse_known_args(argv)
    if not extra:
        return args
    field = _POSITIONALS.get(args.command)
    if field is not None and not any(e.startswith("-") for e in extra):
        setattr(args, field, [*getattr(args, field), *extra])
        return args
    subparser: argparse.ArgumentParser = args.parser
    subparser.error(f"unrecognized arguments: {' '.join(extra)}")


def main(argv: Sequence[str] | None = None) -> NoReturn:
    parser = build_parser()
    args = _parse(parser, argv)
    if args.command != "run":
        # kubectl-style verbs speak through their exit code and `error:` lines only.
        configure_logging("ERROR", "console", stream=sys.stderr)
    try:
        code = args.func(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except (CliError, config.ConfigError, WriteRefused, AdmissionRefused) as exc:
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


if __name__ == "__main__":
    main()

"""`labctl get` (tables, every `-o`, `-w` from etcd's watch) and `labctl describe`.

`get -w` lists at revision R, prints, then watches each kind's prefix from R + 1 and prints
the row of every object that changes, as kubectl does; a change already shown by the listing
is never printed twice (an event is printed only when its mod_revision is newer than the
row last printed for that key). A deleted object prints its last state (`DELETED` with
`--output-watch-events`).
"""

from __future__ import annotations

import argparse
import builtins
import json
import queue
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

import controller.cli.labworker_page  # noqa: F401 - registers LabWorker's describe layout
from controller.app import kind_registry
from controller.cli import jsonpath
from controller.cli.common import check_selector, fetch, warn_invalid
from controller.cli.connection import Session, open_session
from controller.cli.errors import CliError, UsageError
from controller.cli.printers import (
    OUTPUTS,
    Output,
    Table,
    describe,
    document,
    format_rows,
    parse_output,
    print_objects,
    sort_objects,
)
from controller.cli.targets import (
    Target,
    field_matcher,
    parse_field_selector,
    qualified,
    resolve,
)
from controller.cli.verb import TYPES_HELP, Subparsers, add_verb
from controller.events.kind import EVENT
from controller.events.model import Event
from controller.events.query import events_for
from controller.resources import Kind, Resource, parse_selector
from controller.runtime.repository import InvalidObject, Repository
from controller.storage import Compacted, EventType, WatchEvent, WatchHandle


def register(sub: Subparsers) -> None:
    get = add_verb(sub, "get", "list objects or show some; -w to watch them change", cmd_get)
    get.add_argument("resource", nargs="*", metavar="TYPE", help=TYPES_HELP)
    _listing_args(get)
    get.add_argument(
        "--field-selector",
        help="e.g. status.phase=Ready,spec.labTrack!=ccna (fields: metadata.name, "
        "metadata.namespace and the kind's indexed fields)",
    )
    get.add_argument("-o", "--output", type=_output, default=Output(), help=f"one of {OUTPUTS}")
    get.add_argument("--no-headers", action="store_true", help="tables without the header")
    get.add_argument("--show-labels", action="store_true", help="a LABELS column")
    get.add_argument("--sort-by", help="a JSONPath, e.g. .metadata.creationTimestamp")
    get.add_argument("-w", "--watch", action="store_true", help="after listing, print each change")
    get.add_argument("--watch-only", action="store_true", help="print changes, not the list")
    get.add_argument(
        "--output-watch-events",
        action="store_true",
        help="with -w: an EVENT column (ADDED, MODIFIED, DELETED)",
    )

    describe_ = add_verb(
        sub, "describe", "show objects in detail, with their recent events", cmd_describe
    )
    describe_.add_argument("resource", nargs="*", metavar="TYPE", help=TYPES_HELP)
    _listing_args(describe_)


def _output(text: str) -> Output:
    try:
        return parse_output(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _listing_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-A", "--all-namespaces", action="store_true", help="every namespace (names too)"
    )
    parser.add_argument("-l", "--selector", help="label selector, e.g. tier=gold,region in (eu)")


def _now() -> datetime:
    return datetime.now(UTC)


def _namespace(args: argparse.Namespace, session: Session) -> str | None:
    return None if args.all_namespaces else session.namespace


def _where(namespace: str | None) -> str:
    return "any namespace" if namespace is None else f"namespace {namespace}"


def _no_selectors_with_names(targets: list[Target], args: argparse.Namespace) -> None:
    if any(t.names for t in targets) and (
        getattr(args, "selector", None) or getattr(args, "field_selector", None)
    ):
        raise UsageError("selectors (-l, --field-selector) cannot be combined with names")


Matcher = Callable[[Any], bool]


def _collect(
    session: Session,
    targets: list[Target],
    namespace: str | None,
    selector: str | None,
    matchers: dict[str, Matcher],
) -> tuple[list[tuple[Kind[Any], list[Resource]]], bool]:
    single = len(targets) == 1 and len(targets[0].names) == 1 and namespace is not None
    groups: list[tuple[Kind[Any], list[Resource]]] = []
    failed = False
    for target in targets:
        if target.names:
            found, missing = fetch(session, target, namespace, alone=single)
            failed = failed or missing
        else:
            listed = session.repositories.for_kind(target.kind).list(
                namespace, selector, on_invalid=warn_invalid
            )
            found = [obj for obj in listed if matchers[target.kind.kind](obj)]
        groups.append((target.kind, found))
    return groups, failed


def cmd_get(args: argparse.Namespace) -> int:
    registry = kind_registry()
    targets = resolve(registry, args.resource)
    _no_selectors_with_names(targets, args)
    output: Output = args.output
    if args.sort_by:
        jsonpath.compile_path(args.sort_by)  # a bad expression is a usage error up front
    requirements = parse_field_selector(args.field_selector) if args.field_selector else []
    matchers = {t.kind.kind: field_matcher(t.kind, requirements) for t in targets}
    check_selector(args.selector)
    watching = args.watch or args.watch_only
    session = open_session(args)
    namespace = _namespace(args, session)
    single = len(targets) == 1 and len(targets[0].names) == 1 and namespace is not None
    revision = session.client.revision() if watching else 0
    groups, failed = _collect(session, targets, namespace, args.selector, matchers)
    groups = [(kind, sort_objects(objs, args.sort_by)) for kind, objs in groups]
    shown: dict[str, int] = {}
    for kind, objs in groups:
        for obj in objs:
            shown[_key(kind, obj)] = obj.metadata.resource_version or 0
    printed = False
    if not args.watch_only:
        if watching and output.tabular:
            printed = _print_watch_rows(groups, output, args, namespace, "ADDED", header=True)
        else:
            printed = print_objects(
                groups,
                output,
                single=single and not watching,
                namespaces=namespace is None,
                now=_now(),
                out=sys.stdout,
                no_headers=args.no_headers,
                show_labels=args.show_labels,
            )
    if not printed and not failed and output.tabular and not args.watch_only:
        print(f"No resources found in {_where(namespace)}.", file=sys.stderr)
    if watching:
        sys.stdout.flush()
        _watch(session, targets, namespace, args, output, matchers, revision, shown, printed)
    return 1 if failed else 0


def _key(kind: Kind[Any], obj: Resource) -> str:
    return f"{kind.kind}/{obj.metadata.namespace}/{obj.metadata.name}"


def _print_watch_rows(
    groups: Sequence[tuple[Kind[Any], Sequence[Resource]]],
    output: Output,
    args: argparse.Namespace,
    namespace: str | None,
    event: str,
    *,
    header: bool,
) -> bool:
    """Rows as `get -w` prints them: one header for the first kind, then rows aligned to it."""
    printed = False
    for kind, objs in groups:
        table = Table(kind, output, namespace is None, len(groups) > 1, args.show_labels)
        rows = [table.row(obj, _now()) for obj in objs]
        head = table.header()
        if args.output_watch_events:
            head = ["EVENT", *head]
            rows = [[event, *row] for row in rows]
        lines = format_rows([head, *rows])
        if header and not args.no_headers and (rows or not printed):
            print(lines[0])
            header = False
        for line in lines[1:]:
            print(line)
        printed = printed or bool(rows)
    return printed


def _print_change(
    kind: Kind[Any],
    obj: Resource,
    event: str,
    output: Output,
    args: Any,
    namespace: str | None,
    qualify: bool,
) -> None:
    if output.tabular:
        table = Table(kind, output, namespace is None, qualify, args.show_labels)
        head, row = table.header(), table.row(obj, _now())
        if args.output_watch_events:
            head, row = ["EVENT", *head], [event, *row]
        print(format_rows([head, row])[1])
    elif output.format == "name":
        print(f"{qualified(kind)}/{obj.metadata.name}")
    elif output.format == "json":
        payload: Any = obj.to_dict()
        if args.output_watch_events:
            payload = {"type": event, "object": payload}
        print(json.dumps(payload, indent=2))
    elif output.format == "yaml":
        print("---")
        print(yaml.safe_dump(obj.to_dict(), sort_keys=False), end="")
    else:
        print(jsonpath.render(output.template, document([obj], True)), end="")
    sys.stdout.flush()


def _watch(
    session: Session,
    targets: list[Target],
    namespace: str | None,
    args: argparse.Namespace,
    output: Output,
    matchers: dict[str, Matcher],
    revision: int,
    shown: dict[str, int],
    header_printed: bool,
) -> None:
    """Print every change after `revision` until interrupted (Ctrl-C)."""
    events: queue.Queue[tuple[Kind[Any], WatchEvent] | Compacted] = queue.Queue()
    handles: list[WatchHandle] = []
    parsed = parse_selector(args.selector) if args.selector else None
    names = {t.kind.kind: set(t.names) for t in targets}
    qualify = len(targets) > 1
    try:
        for target in targets:
            kind = target.kind
            prefix = kind.prefix(session.root) + (f"{namespace}/" if namespace else "")

            def deliver(batch: list[WatchEvent], kind: Kind[Any] = kind) -> None:
                for event in batch:
                    events.put((kind, event))

            handles.append(
                session.client.watch(
                    prefix,
                    deliver,
                    prefix=True,
                    start_revision=revision + 1,
                    prev_kv=True,
                    on_compacted=events.put,
                    name=f"labctl get -w {kind.plural}",
                )
            )
        if output.tabular and not header_printed and not args.no_headers:
            first = targets[0].kind
            head = Table(first, output, namespace is None, qualify, args.show_labels).header()
            print("   ".join((["EVENT"] if args.output_watch_events else []) + head))
            sys.stdout.flush()
        while True:
            item = events.get()
            if isinstance(item, Compacted):
                raise CliError(
                    f"the watch fell behind etcd's compaction (revision {item.compact_revision});"
                    " run the command again"
                )
            kind, event = item
            repo = session.repositories.for_kind(kind)
            deleted = event.type is EventType.DELETE
            kv = event.prev_kv if deleted else event.kv
            if kv is None:
                continue
            try:
                obj = repo.decode_kv(kv.key[len(repo.prefix) :], kv)
            except InvalidObject as exc:
                warn_invalid(exc)
                continue
            key = _key(kind, obj)
            if event.revision <= shown.get(key, 0):
                continue  # the listing already showed this version
            if names[kind.kind] and obj.metadata.name not in names[kind.kind]:
                continue
            if parsed is not None and not parsed.matches(obj.metadata.labels):
                continue
            if not matchers[kind.kind](obj):
                continue
            label = "DELETED" if deleted else ("MODIFIED" if key in shown else "ADDED")
            shown[key] = event.revision
            _print_change(kind, obj, label, output, args, namespace, qualify)
    finally:
        for handle in handles:
            handle.cancel()


# -- describe --------------------------------------------------------------------------------


def cmd_describe(args: argparse.Namespace) -> int:
    registry = kind_registry()
    targets = resolve(registry, args.resource)
    _no_selectors_with_names(targets, args)
    check_selector(args.selector)
    session = open_session(args)
    namespace = _namespace(args, session)
    groups, failed = _collect(
        session, targets, namespace, args.selector, {t.kind.kind: _any for t in targets}
    )
    pages: list[str] = []
    now = _now()
    for kind, found in groups:
        for obj in found:
            pages.append(describe(kind, obj, _events_of(session, obj), now))
    if pages:
        print("\n\n".join(pages))
    elif not failed:
        print(f"No resources found in {_where(namespace)}.", file=sys.stderr)
    return 1 if failed else 0


def _any(obj: Any) -> bool:
    return True


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
            namespace, selector, on_invalid=on_invalid or warn_invalid, page_size=page_size
        )


def _events_of(session: Session, obj: Resource) -> list[Event]:
    """The Events about `obj` — this incarnation (uid) of this kind — oldest first."""
    meta = obj.metadata
    events = _EventListing(session.client, EVENT, session.root)
    return events_for(events, session.root, meta.namespace, meta.name, meta.uid, kind=obj.kind)

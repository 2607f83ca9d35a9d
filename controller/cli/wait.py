"""`labctl wait`: until objects reach a phase or a condition, or are deleted — by watching.

The objects are read at revision R, then each kind's prefix is watched from R + 1: every
change is seen, none twice, and nothing is polled. A compaction that outruns the watch
(rare: it starts at once) re-reads the objects still pending and watches again.
"""

from __future__ import annotations

import argparse
import queue
import time
from dataclasses import dataclass
from typing import Any

from controller.app import kind_registry
from controller.cli.common import check_selector, warn_invalid
from controller.cli.connection import Session, open_session
from controller.cli.errors import CliError, UsageError
from controller.cli.models import phase_values, status_dict
from controller.cli.targets import Target, qualified, resolve
from controller.cli.verb import TYPES_HELP, Subparsers, add_verb
from controller.resources import Kind, Resource
from controller.runtime.repository import InvalidObject
from controller.storage import Compacted, EventType, WatchEvent, WatchHandle

DEFAULT_WAIT_TYPE = "labworkers"
"""What `labctl wait --all` waits for when no TYPE is given (the single-kind labctl's
behaviour, kept for scripts written against it)."""


def register(sub: Subparsers) -> None:
    wait = add_verb(
        sub, "wait", "wait for objects to reach a phase or condition, or be deleted", cmd_wait
    )
    wait.add_argument("target", nargs="*", metavar="TYPE", help=TYPES_HELP)
    wait.add_argument(
        "--for",
        dest="condition",
        required=True,
        help="delete | phase=<Phase> | condition=<Type>[=<Status>] (Status defaults to True)",
    )
    wait.add_argument("--timeout", default="30s", help="e.g. 60s, 5m (default 30s)")
    wait.add_argument("--all", action="store_true", help="every object of TYPE in the namespace")
    wait.add_argument("-l", "--selector", help="with --all: only objects with these labels")


@dataclass(frozen=True)
class WaitFor:
    """`--for=delete`, `--for=phase=X` or `--for=condition=X[=Status]`."""

    what: str
    name: str = ""
    value: str = ""

    def met(self, obj: Resource | None) -> bool:
        if self.what == "delete":
            return obj is None
        if obj is None:
            return False
        status = status_dict(obj)
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
        status = status_dict(obj)
        if self.what == "phase":
            return str(status.get("phase") or "none")
        for condition in status.get("conditions") or ():
            if isinstance(condition, dict) and str(condition.get("type", "")).lower() == self.name:
                return f"{condition.get('type')}={condition.get('status')}"
        return "no such condition"


def parse_for(text: str, kinds: list[Kind[Any]]) -> WaitFor:
    if text == "delete":
        return WaitFor("delete")
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
        return WaitFor("phase", rest)
    if what == "condition" and rest:
        name, _, value = rest.partition("=")
        if name:
            return WaitFor("condition", name.lower(), (value or "True").lower())
    raise UsageError(f"--for={text}: expected delete, phase=<Phase> or condition=<Type>[=<Status>]")


def parse_duration(text: str) -> float:
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


Key = tuple[str, str]  # (Kind.kind, name)


def cmd_wait(args: argparse.Namespace) -> int:
    registry = kind_registry()
    if args.all:
        targets = resolve(registry, args.target or [DEFAULT_WAIT_TYPE])
        if any(t.names for t in targets):
            raise UsageError("--all waits for every object of a TYPE; give no names with it")
    else:
        targets = resolve(registry, args.target) if args.target else []
        if not targets or any(not t.names for t in targets):
            raise UsageError("wait needs TYPE/NAME (or TYPE NAME..., or TYPE --all)")
    condition = parse_for(args.condition, [t.kind for t in targets])
    deadline = time.monotonic() + parse_duration(args.timeout)
    check_selector(args.selector)
    session = open_session(args)
    return _Waiter(session, targets, condition, args.selector).run(deadline)


class _Waiter:
    def __init__(
        self, session: Session, targets: list[Target], condition: WaitFor, selector: str | None
    ) -> None:
        self.session = session
        self.targets = targets
        self.condition = condition
        self.selector = selector
        self.kinds = {t.kind.kind: t.kind for t in targets}
        self.state: dict[Key, Resource | None] = {}
        self.events: queue.Queue[tuple[Kind[Any], WatchEvent] | Compacted] = queue.Queue()
        self.handles: list[WatchHandle] = []

    def _read(self, keys: list[Key] | None) -> int:
        """Read the objects (all of them, or `keys`) after noting the revision to watch from."""
        revision = self.session.client.revision()
        namespace = self.session.namespace
        for target in self.targets:
            repo = self.session.repositories.for_kind(target.kind)
            if keys is not None:
                for kind_name, name in keys:
                    if kind_name == target.kind.kind:
                        self.state[(kind_name, name)] = repo.get(namespace, name)
            elif target.names:
                for name in target.names:
                    self.state[(target.kind.kind, name)] = repo.get(namespace, name)
            else:
                for obj in repo.list(namespace, self.selector, on_invalid=warn_invalid):
                    self.state[(target.kind.kind, obj.metadata.name)] = obj
        return revision

    def _watch(self, revision: int) -> None:
        for handle in self.handles:
            handle.cancel()
        self.handles = []
        for target in self.targets:
            kind = target.kind

            def deliver(batch: list[WatchEvent], kind: Kind[Any] = kind) -> None:
                for event in batch:
                    self.events.put((kind, event))

            self.handles.append(
                self.session.client.watch(
                    kind.prefix(self.session.root) + f"{self.session.namespace}/",
                    deliver,
                    prefix=True,
                    start_revision=revision + 1,
                    on_compacted=self.events.put,
                    name=f"labctl wait {kind.plural}",
                )
            )

    def _pending(self) -> list[Key]:
        return [key for key, obj in self.state.items() if not self.condition.met(obj)]

    def _label(self, key: Key) -> str:
        return f"{qualified(self.kinds[key[0]])}/{key[1]}"

    def run(self, deadline: float) -> int:
        revision = self._read(None)
        try:
            while self._pending():
                if not self.handles:
                    self._watch(revision)
                left = deadline - time.monotonic()
                try:
                    item = self.events.get(timeout=max(0.0, left)) if left > 0 else None
                except queue.Empty:
                    item = None
                if item is None:
                    pending = self._pending()
                    raise CliError(
                        f"timed out waiting for the condition on {len(pending)} object(s): "
                        + ", ".join(
                            f"{self._label(k)} ({self.condition.state(self.state[k])})"
                            for k in pending[:10]
                        )
                        + (f" and {len(pending) - 10} more" if len(pending) > 10 else "")
                    )
                if isinstance(item, Compacted):
                    revision = self._read(self._pending())
                    self._watch(revision)
                    continue
                self._apply(*item)
        finally:
            for handle in self.handles:
                handle.cancel()
        for key in self.state:
            print(f"{self._label(key)} condition met")
        return 0

    def _apply(self, kind: Kind[Any], event: WatchEvent) -> None:
        repo = self.session.repositories.for_kind(kind)
        name = event.kv.key[len(repo.prefix) :].partition("/")[2]
        key = (kind.kind, name)
        if key not in self.state:
            return
        if event.type is EventType.DELETE:
            self.state[key] = None
            return
        try:
            self.state[key] = repo.decode_kv(event.kv.key[len(repo.prefix) :], event.kv)
        except InvalidObject as exc:
            warn_invalid(exc)

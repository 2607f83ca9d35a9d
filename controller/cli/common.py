"""What several verbs share: reading the objects a command names, and stamping writes.

Listings skip an object that is invalid in etcd, as the controller does, with one
`warning:` line per key. Every write labctl makes records the W3C traceparent of its
`labctl <verb>` span in the object (docs/architecture.md, Observability) — but only when
tracing is configured; otherwise nothing extra is written.
"""

from __future__ import annotations

import sys
from typing import Any

from controller.cli.connection import Session
from controller.cli.errors import CliError, UsageError, report
from controller.cli.targets import Target
from controller.observability.propagation import TRACEPARENT_ANNOTATION, current_traceparent
from controller.resources import Kind, Resource, parse_selector
from controller.resources.selector import SelectorError
from controller.runtime.repository import InvalidObject

_warned: set[str] = set()


def warn_invalid(err: InvalidObject) -> None:
    """A listing skips an invalid object and says so once per key (a watch lists again)."""
    if err.key not in _warned:
        _warned.add(err.key)
        print(f"warning: {err}; skipped (the controller ignores it too)", file=sys.stderr)


def not_found(kind: Kind[Any], name: str, namespace: str | None) -> str:
    where = f"in namespace {namespace}" if namespace else "in any namespace"
    return f'{kind.plural} "{name}" not found {where}'


def check_selector(selector: str | None) -> None:
    if selector:
        try:
            parse_selector(selector)
        except SelectorError as exc:
            raise UsageError(f"invalid selector {selector!r}: {exc}") from None


def fetch(
    session: Session,
    target: Target,
    namespace: str | None,
    *,
    alone: bool,
) -> tuple[list[Resource], bool]:
    """The named objects of `target`, in order, and whether any was missing or invalid.

    `namespace` None (`-A`) finds each name in every namespace. `alone`: the command names
    just this one object, so its failure is the command's error (raised); otherwise each
    failure is one `error:` line and the rest are still returned."""
    repo = session.repositories.for_kind(target.kind)
    found: list[Resource] = []
    failed = False
    everywhere = repo.list(None, on_invalid=warn_invalid) if namespace is None else []
    for name in target.names:
        try:
            if namespace is None:
                matches = [o for o in everywhere if o.metadata.name == name]
            else:
                one = repo.get(namespace, name)
                matches = [one] if one is not None else []
        except InvalidObject as exc:
            if alone:
                raise
            report(f"{exc}; the controller ignores it until it is fixed")
            failed = True
            continue
        if not matches:
            if alone:
                raise CliError(not_found(target.kind, name, namespace))
            report(not_found(target.kind, name, namespace))
            failed = True
            continue
        found.extend(matches)
    return found, failed


def stamp(obj: Resource) -> Resource:
    """`obj` with the traceparent of the current `labctl <verb>` span in its annotations,
    when tracing is configured (else unchanged). Annotations are metadata: the repository
    never bumps generation for them."""
    traceparent = current_traceparent()
    if traceparent is not None:
        obj.metadata.annotations = {
            **obj.metadata.annotations,
            TRACEPARENT_ANNOTATION: traceparent,
        }
    return obj

"""What a `labctl` command line names: kinds, objects and field selectors, as kubectl reads them.

`labctl get lw`, `get lw a b`, `get lw,pool`, `get pool/ccna lw/w1`, `wait labworker/x`:
a TYPE is any name its `Kind` answers to (plural, singular, short names, `<plural>.<group>`),
and either every argument is `TYPE/NAME` or the first is `TYPE[,TYPE…]` and the rest are
names. Nothing here knows a particular kind: a new kind's names work once it is registered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from controller.cli.errors import CliError, UsageError
from controller.resources import Kind, KindRegistry, Resource, UnknownKind
from controller.resources.names import shorten


@dataclass(frozen=True)
class Target:
    """One kind and the names asked for; no names means every object (a listing)."""

    kind: Kind[Any]
    names: tuple[str, ...] = ()


def qualified(kind: Kind[Any]) -> str:
    """`labworker.lab.neuroglia.io`: how kubectl names a kind in what it prints."""
    return f"{kind.singular}.{kind.group}"


def known_types(registry: KindRegistry) -> str:
    """`events (ev), labworkers (lw), …`: what an unknown-type error offers instead."""
    return ", ".join(
        f"{k.plural} ({', '.join(k.short_names)})" if k.short_names else k.plural
        for k in sorted(registry, key=lambda k: k.plural)
    )


def lookup(registry: KindRegistry, name: str) -> Kind[Any]:
    try:
        return registry.lookup(name)
    except UnknownKind:
        raise CliError(
            f"the server doesn't have a resource type {shorten(name)}; "
            f"known types: {known_types(registry)}"
        ) from None


def resolve(registry: KindRegistry, args: Sequence[str]) -> list[Target]:
    """`TYPE[,TYPE…] [NAME…]` or `TYPE/NAME…` into targets, in the order given.

    Raises CliError for an unknown type (exit 1, as kubectl), UsageError for a malformed
    command line."""
    if not args:
        raise UsageError(
            f"you must specify the type of resource; known types: {known_types(registry)}"
        )
    if any("/" in arg for arg in args):
        targets: dict[str, tuple[Kind[Any], list[str]]] = {}
        for arg in args:
            type_, _, name = arg.partition("/")
            if not type_ or not name or "/" in name:
                raise UsageError(
                    f"{shorten(arg)}: expected TYPE/NAME; when one argument is TYPE/NAME, "
                    "all must be (there is no need to give the TYPE separately)"
                )
            kind = lookup(registry, type_)
            targets.setdefault(kind.kind, (kind, []))[1].append(name)
        return [Target(kind, tuple(names)) for kind, names in targets.values()]
    names = tuple(dict.fromkeys(args[1:]))
    kinds: dict[str, Kind[Any]] = {}
    for type_ in args[0].split(","):
        if not type_:
            raise UsageError(f"{shorten(args[0])}: an empty type in a comma-separated list")
        kind = lookup(registry, type_)
        kinds.setdefault(kind.kind, kind)
    return [Target(kind, names) for kind in kinds.values()]


# -- field selectors ------------------------------------------------------------------------

BUILTIN_FIELDS: dict[str, Callable[[Resource], str]] = {
    "metadata.name": lambda obj: obj.metadata.name,
    "metadata.namespace": lambda obj: obj.metadata.namespace,
}


@dataclass(frozen=True)
class FieldRequirement:
    key: str
    equals: bool
    """True for `key=value` (or `==`), False for `key!=value`."""
    value: str


def parse_field_selector(text: str) -> list[FieldRequirement]:
    """`involvedObject.name=x,type!=Normal`: kubectl's field-selector grammar (no sets)."""
    out: list[FieldRequirement] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "!=" in part:
            key, _, value = part.partition("!=")
            equals = False
        elif "==" in part:
            key, _, value = part.partition("==")
            equals = True
        elif "=" in part:
            key, _, value = part.partition("=")
            equals = True
        else:
            raise CliError(
                f"invalid field selector {shorten(text)}: {shorten(part)} is not "
                "key=value or key!=value"
            )
        if not key.strip():
            raise CliError(f"invalid field selector {shorten(text)}: a requirement has no key")
        out.append(FieldRequirement(key.strip(), equals, value.strip()))
    return out


def supported_fields(kind: Kind[Any]) -> list[str]:
    return sorted({*BUILTIN_FIELDS, *kind.field_indexes})


def field_matcher(kind: Kind[Any], requirements: list[FieldRequirement]) -> Callable[[Any], bool]:
    """A predicate for `kind`'s objects; raises CliError for a field the kind does not index."""
    getters: list[tuple[Callable[[Any], str], FieldRequirement]] = []
    for req in requirements:
        getter = BUILTIN_FIELDS.get(req.key) or kind.field_indexes.get(req.key)
        if getter is None and req.key.startswith(("spec.", "status.")):
            # kubectl's spelling of an indexed field: status.phase, spec.labTrack
            getter = kind.field_indexes.get(req.key.partition(".")[2])
        if getter is None:
            raise CliError(
                f"field selector {shorten(req.key)} is not supported for {kind.plural}; "
                f"supported fields: {', '.join(supported_fields(kind))}"
            )
        getters.append((getter, req))

    def matches(obj: Any) -> bool:
        return all((getter(obj) == req.value) == req.equals for getter, req in getters)

    return matches

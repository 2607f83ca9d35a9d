"""Kind: everything the runtime, the repository and `labctl` need to know about a resource type.

One `Kind` per type, declared once in the type's own package, is what makes the runtime
generic: the etcd key segment, the pydantic model, the names `labctl` accepts, the columns
`labctl get` prints, the schema file, and the field indexes its cache keeps.
`KindRegistry` is the set of kinds a process serves (controller-runtime's Scheme).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from controller.resources.key import ObjectKey
from controller.resources.object import Resource

T = TypeVar("T", bound=Resource)


@dataclass(frozen=True, slots=True)
class PrinterColumn:
    """One column of `labctl get`: a header and how to render an object's cell."""

    name: str
    value: Callable[[Any], str]
    wide: bool = False
    """Shown only with `-o wide`."""


@dataclass(frozen=True, eq=False)
class Kind(Generic[T]):
    api_version: str
    kind: str
    plural: str
    """`labctl get <plural>` and the metrics' resource label."""
    segment: str
    """The key segment: objects live at `<prefix>/<segment>/<namespace>/<name>`."""
    model: type[T]
    short_names: tuple[str, ...] = ()
    columns: tuple[PrinterColumn, ...] = ()
    schema_file: str | None = None
    """The JSON Schema file under manifests/ generated from `model`."""
    field_indexes: Mapping[str, Callable[[T], str]] = field(default_factory=dict)
    """Cached per object (interned) and indexed: `phase`, `labTrack` … for selectors and finders."""

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    def names(self) -> frozenset[str]:
        """Every name `labctl` accepts for this kind, lower-case."""
        return frozenset(
            {self.plural, self.singular, *self.short_names, f"{self.plural}.{self.group}"}
        )

    def prefix(self, root: str) -> str:
        """`<root>/<segment>/`: the prefix the informer watches."""
        return f"{root.rstrip('/')}/{self.segment}/"

    def etcd_key(self, root: str, key: ObjectKey) -> str:
        return f"{self.prefix(root)}{key.namespace}/{key.name}"

    def owner_ref(self, obj: T, *, controller: bool = True) -> dict[str, Any]:
        """An ownerReferences entry naming `obj` (for the dependents it creates)."""
        meta = obj.metadata
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": meta.name,
            "uid": meta.uid,
            "controller": controller,
            "blockOwnerDeletion": True,
        }


class UnknownKind(LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown resource type {name!r}; known: {', '.join(known)}")
        self.name = name


class KindRegistry:
    """The kinds a process serves, found by any of their names (`lw`, `labworkers`, …)."""

    def __init__(self, kinds: list[Kind[Any]] | None = None) -> None:
        self._kinds: list[Kind[Any]] = []
        self._by_name: dict[str, Kind[Any]] = {}
        for kind in kinds or ():
            self.register(kind)

    def register(self, kind: Kind[Any]) -> None:
        for name in kind.names() | {kind.kind.lower()}:
            other = self._by_name.get(name)
            if other is not None and other is not kind:
                raise ValueError(f"{kind.kind} and {other.kind} both claim the name {name!r}")
            self._by_name[name] = kind
        if kind not in self._kinds:
            self._kinds.append(kind)

    def lookup(self, name: str) -> Kind[Any]:
        try:
            return self._by_name[name.lower()]
        except KeyError:
            raise UnknownKind(name, sorted(k.plural for k in self._kinds)) from None

    def by_kind(self, kind: str) -> Kind[Any] | None:
        return next((k for k in self._kinds if k.kind == kind), None)

    def __iter__(self) -> Iterator[Kind[Any]]:
        return iter(self._kinds)

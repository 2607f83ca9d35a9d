"""What an informer caches per object: the validated raw JSON plus the few fields it indexes.

A pydantic model tree per cached object would cost several KB and give the cyclic GC a
million containers to rescan; the raw bytes cost about their length. The value is validated
once when it arrives (an invalid one is reported and skipped, never cached) and decoded again
only when a worker actually reconciles it — a few microseconds next to an etcd round trip.
Index values (labels, a kind's `field_indexes`) are interned: 100k objects share a handful
of phases, tracks and labels, one copy each.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from controller.observability.propagation import TRACEPARENT_ANNOTATION
from controller.resources import Kind, Resource
from controller.resources.limits import InvalidStoredValue, decode_stored
from controller.runtime.informer import Decoder, InvalidObjectError
from controller.storage import KeyValue

T = TypeVar("T", bound=Resource)


@dataclass(frozen=True, slots=True)
class OwnerRef:
    """The controller owner of a cached object: enough to enqueue the owner's key."""

    kind: str
    name: str
    uid: str


@dataclass(frozen=True, slots=True)
class Record(Generic[T]):
    kind: Kind[T]
    revision: int
    raw: bytes
    uid: str
    labels: tuple[str, ...]
    """"key=value" strings, the label index's values."""
    owner_uids: tuple[str, ...]
    """Every ownerReference's uid: the owner index (garbage collection, adoption)."""
    controller: OwnerRef | None
    fields: tuple[str, ...]
    """Values of `kind.field_indexes`, in its order."""
    traceparent: str | None = None
    """The writer's trace context (TRACEPARENT_ANNOTATION), for the reconcile's span link."""

    def decode(self) -> T:
        obj = self.kind.model.model_validate_json(self.raw)
        obj.metadata.resource_version = self.revision
        return obj


def record_decoder(kind: Kind[T]) -> Decoder[Record[T]]:
    """Validate one stored value of `kind`; raise InvalidObjectError (reason first) to skip it.

    The rules (size, key, JSON depth, schema, key/name match) are controller.resources.limits',
    the same the repository enforces on every write, so nothing written through it is skipped.
    """
    getters = list(kind.field_indexes.values())
    intern = sys.intern

    def decode(key: str, kv: KeyValue) -> Record[T]:
        try:
            obj = decode_stored(key, kv.value, kind.model)
        except InvalidStoredValue as exc:
            raise InvalidObjectError(key, f"{exc.reason}: {exc.detail}") from None
        meta = obj.metadata
        ref = meta.controller_ref()
        return Record(
            kind=kind,
            revision=kv.mod_revision,
            raw=kv.value,
            uid=meta.uid or "",
            labels=tuple(intern(f"{k}={v}") for k, v in sorted(meta.labels.items())),
            owner_uids=tuple(r.uid for r in meta.owner_references or ()),
            controller=OwnerRef(intern(ref.kind), ref.name, ref.uid) if ref else None,
            fields=tuple(intern(get(obj)) for get in getters),
            traceparent=meta.annotations.get(TRACEPARENT_ANNOTATION) if meta.annotations else None,
        )

    return decode


LABEL_INDEX = "label"
OWNER_INDEX = "owner"


def record_indexers(kind: Kind[Any]) -> dict[str, Callable[[Record[Any]], list[str]]]:
    """The indexes every kind's cache keeps, plus one per `kind.field_indexes` entry."""
    indexers: dict[str, Callable[[Record[Any]], list[str]]] = {
        LABEL_INDEX: lambda r: list(r.labels),
        OWNER_INDEX: lambda r: list(r.owner_uids),
    }
    for position, name in enumerate(kind.field_indexes):
        indexers[name] = _field_indexer(position)
    return indexers


def _field_indexer(position: int) -> Callable[[Record[Any]], list[str]]:
    def values(record: Record[Any]) -> list[str]:
        value = record.fields[position]
        return [value] if value else []

    return values

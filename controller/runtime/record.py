"""What an informer caches per object: the validated raw JSON plus the few fields it indexes.

A pydantic model tree per cached object would cost several KB and give the cyclic GC a
million containers to rescan; the raw bytes, compressed against a dictionary of their kind
(controller.runtime.packing), cost a fraction of their length. The value is validated
once per revision, when it arrives (an invalid one is reported and skipped, never cached).
The model that validation built is handed over to the first reader of that record (the
reconcile the event queues), so a revision that arrives by watch is parsed once, not twice;
only a few hundred such models wait at a time, and any later reader decodes the raw bytes
again (docs/architecture.md, Hot path). Index values (labels, a kind's `field_indexes`) are
interned: 100k objects share a handful of phases, tracks and labels, one copy each.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from controller.observability.propagation import TRACEPARENT_ANNOTATION
from controller.resources import Kind, Resource
from controller.resources.limits import InvalidStoredValue, decode_stored
from controller.runtime.informer import Decoder, InvalidObjectError
from controller.runtime.packing import ValuePacker
from controller.storage import KeyValue

T = TypeVar("T", bound=Resource)


@dataclass(frozen=True, slots=True)
class OwnerRef:
    """The controller owner of a cached object: enough to enqueue the owner's key."""

    kind: str
    name: str
    uid: str


class Handover(Generic[T]):
    """Models the informer validated, waiting for the first reader of their record.

    Bounded (oldest dropped first) so that a record nobody reads costs nothing for long;
    `take` removes the model, so it is never shared between two readers."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self._waiting: dict[int, tuple[Record[T], T]] = {}
        """By id(record); the entry holds the record, so that id is not reused meanwhile."""
        self._lock = threading.Lock()

    def put(self, record: Record[T], obj: T) -> None:
        with self._lock:
            waiting = self._waiting
            waiting[id(record)] = (record, obj)
            if len(waiting) > self.capacity:
                del waiting[next(iter(waiting))]

    def take(self, record: Record[T]) -> T | None:
        with self._lock:
            entry = self._waiting.pop(id(record), None)
        return entry[1] if entry is not None else None

    def __len__(self) -> int:
        return len(self._waiting)


@dataclass(frozen=True, slots=True)
class Record(Generic[T]):
    kind: Kind[T]
    revision: int
    packed: bytes
    """The stored value, compressed by `packer` (controller.runtime.packing)."""
    packer: ValuePacker
    uid: str
    labels: tuple[str, ...]
    """"key=value" strings, the label index's values."""
    owner_uids: tuple[str, ...]
    """Every ownerReference's uid: the owner index (garbage collection, adoption)."""
    controller: OwnerRef | None
    fields: tuple[str, ...]
    """Values of `kind.field_indexes`, in its order."""
    generation: int
    """Bumped by user writes of spec only: with `deleting`, tells a user's change from the
    controller's status write (work queue priority, docs/architecture.md)."""
    deleting: bool
    """deletionTimestamp is set."""
    handover: Handover[T] | None = None
    """Where the model validated for this record may wait for its first reader."""
    traceparent: str | None = None
    """The writer's trace context (TRACEPARENT_ANNOTATION), for the reconcile's span link."""

    @property
    def raw(self) -> bytes:
        """The stored value as etcd holds it."""
        return self.packer.unpack(self.packed)

    def decode(self) -> T:
        """The object, private to the caller (it may change it)."""
        obj = self.handover.take(self) if self.handover is not None else None
        if obj is None:
            obj = self.kind.model.model_validate_json(self.raw)
        obj.metadata.resource_version = self.revision
        return obj


def record_decoder(kind: Kind[T], handover: Handover[T] | None = None) -> Decoder[Record[T]]:
    """Validate one stored value of `kind`; raise InvalidObjectError (reason first) to skip it.

    The rules (size, key, JSON depth, schema, key/name match) are controller.resources.limits',
    the same the repository enforces on every write, so nothing written through it is skipped.

    A value newer than every one decoded before (a watch event; in a listing, only the last
    written few) leaves its model in `handover` (a fresh one by default) for the reconcile
    that event queues.
    """
    getters = list(kind.field_indexes.values())
    packer = ValuePacker()
    intern = sys.intern
    waiting: Handover[T] = handover if handover is not None else Handover()
    newest = 0

    def decode(key: str, kv: KeyValue) -> Record[T]:
        nonlocal newest
        try:
            obj = decode_stored(key, kv.value, kind.model)
        except InvalidStoredValue as exc:
            raise InvalidObjectError(key, f"{exc.reason}: {exc.detail}") from None
        meta = obj.metadata
        ref = meta.controller_ref()
        record = Record(
            kind=kind,
            revision=kv.mod_revision,
            packed=packer.pack(kv.value),
            packer=packer,
            uid=meta.uid or "",
            labels=tuple(intern(f"{k}={v}") for k, v in sorted(meta.labels.items())),
            owner_uids=tuple(r.uid for r in meta.owner_references or ()),
            controller=OwnerRef(intern(ref.kind), ref.name, ref.uid) if ref else None,
            fields=tuple(intern(get(obj)) for get in getters),
            generation=meta.generation,
            deleting=meta.deletion_timestamp is not None,
            handover=waiting,
            traceparent=meta.annotations.get(TRACEPARENT_ANNOTATION) if meta.annotations else None,
        )
        if kv.mod_revision >= newest:
            newest = kv.mod_revision
            waiting.put(record, obj)
        return record

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

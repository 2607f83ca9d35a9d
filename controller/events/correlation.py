"""What makes two events "the same event" (aggregation) and "the same source" (spam filter).

Like client-go's EventLogger, a repeat of an event — same object, type, reason and message —
is not a new Event object but the existing one's `count` + 1 and a new `lastTimestamp`. The
object is identified by its uid (a re-created object with the same name is another object),
and by kind/namespace/name as well, so an object not yet stored (no uid) still has a key.

These are plain tuples of strings, taken from the object in the caller's thread: cheap to
build and hash, and immune to the caller changing its object after `event()` returned.
"""

from __future__ import annotations

from typing import NamedTuple

from controller.resources import Resource


class ObjectRef(NamedTuple):
    """The involved object's identity, copied out of it at `event()` time."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str
    """"" for an object that was never stored."""

    @classmethod
    def of(cls, obj: Resource) -> ObjectRef:
        meta = obj.metadata
        return cls(obj.api_version, obj.kind, meta.namespace, meta.name, meta.uid or "")

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


class AggregationKey(NamedTuple):
    kind: str
    namespace: str
    name: str
    uid: str
    type: str
    reason: str
    message: str


def aggregation_key(ref: ObjectRef, type: str, reason: str, message: str) -> AggregationKey:
    return AggregationKey(ref.kind, ref.namespace, ref.name, ref.uid, type, reason, message)


class SpamKey(NamedTuple):
    """The spam filter's bucket: one per (source, involved object)."""

    source: str
    kind: str
    namespace: str
    name: str
    uid: str


def spam_key(source: str, ref: ObjectRef) -> SpamKey:
    return SpamKey(source, ref.kind, ref.namespace, ref.name, ref.uid)

"""Plain, typed records for what etcd returns, and builders for what we send.

Slotted dataclasses: the informer holds one per watched key and lists build 100k of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from controller.storage.codec import as_int, decode_bytes, decode_key, encode_bytes, encode_key


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0

    @classmethod
    def from_wire(cls, kv: dict[str, Any]) -> KeyValue:
        return cls(
            key=decode_key(kv["key"]),
            value=decode_bytes(kv.get("value")),
            create_revision=as_int(kv.get("create_revision")),
            mod_revision=as_int(kv.get("mod_revision")),
            version=as_int(kv.get("version")),
            lease=as_int(kv.get("lease")),
        )


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: list[KeyValue]
    count: int
    more: bool
    revision: int


@dataclass(frozen=True, slots=True)
class PutResult:
    revision: int
    prev_kv: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class DeleteResult:
    revision: int
    deleted: int
    prev_kvs: list[KeyValue] = field(default_factory=list)


OpResult = RangeResult | PutResult | DeleteResult


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    responses: list[OpResult]


class EventType(StrEnum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change. On DELETE `kv.value` is empty and `kv.mod_revision` is the delete revision."""

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


@dataclass(frozen=True, slots=True)
class Lease:
    id: int
    ttl: int


@dataclass(frozen=True, slots=True)
class Compare:
    """One guard of a transaction; build with the classmethods."""

    wire: dict[str, Any]

    @classmethod
    def mod_revision(cls, key: str, revision: int, op: str = "==") -> Compare:
        return cls._make(key, "MOD", "mod_revision", str(revision), op)

    @classmethod
    def create_revision(cls, key: str, revision: int, op: str = "==") -> Compare:
        return cls._make(key, "CREATE", "create_revision", str(revision), op)

    @classmethod
    def version(cls, key: str, version: int, op: str = "==") -> Compare:
        return cls._make(key, "VERSION", "version", str(version), op)

    @classmethod
    def value(cls, key: str, value: bytes, op: str = "==") -> Compare:
        return cls._make(key, "VALUE", "value", encode_bytes(value), op)

    @classmethod
    def absent(cls, key: str) -> Compare:
        """True when the key does not exist (etcd's create-if-absent idiom)."""
        return cls.create_revision(key, 0)

    @staticmethod
    def _make(key: str, target: str, field_name: str, operand: str, op: str) -> Compare:
        result = {"==": "EQUAL", "!=": "NOT_EQUAL", ">": "GREATER", "<": "LESS"}[op]
        return Compare(
            {"key": encode_key(key), "target": target, "result": result, field_name: operand}
        )


@dataclass(frozen=True, slots=True)
class Op:
    """One request inside a transaction; build with the classmethods."""

    wire: dict[str, Any]

    @classmethod
    def put(cls, key: str, value: bytes, lease: int = 0) -> Op:
        body: dict[str, Any] = {"key": encode_key(key), "value": encode_bytes(value)}
        if lease:
            body["lease"] = str(lease)
        return cls({"request_put": body})

    @classmethod
    def delete(cls, key: str, range_end: str | None = None) -> Op:
        body: dict[str, Any] = {"key": encode_key(key)}
        if range_end is not None:
            body["range_end"] = encode_key(range_end)
        return cls({"request_delete_range": body})

    @classmethod
    def get(cls, key: str) -> Op:
        return cls({"request_range": {"key": encode_key(key)}})


def decode_op_result(resp: dict[str, Any], revision: int) -> OpResult:
    if "response_range" in resp:
        r = resp["response_range"]
        kvs = [KeyValue.from_wire(kv) for kv in r.get("kvs") or ()]
        return RangeResult(kvs, as_int(r.get("count")), bool(r.get("more")), revision)
    if "response_put" in resp:
        prev = resp["response_put"].get("prev_kv")
        return PutResult(revision, KeyValue.from_wire(prev) if prev else None)
    if "response_delete_range" in resp:
        r = resp["response_delete_range"]
        prevs = [KeyValue.from_wire(kv) for kv in r.get("prev_kvs") or ()]
        return DeleteResult(revision, as_int(r.get("deleted")), prevs)
    raise ValueError(f"unknown txn response shape: {sorted(resp)}")

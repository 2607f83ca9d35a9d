"""`EtcdStorageBackend`: JSON documents under a key prefix, every write guarded.

The public methods are those of the status report this project started from, made correct:
`compare_and_swap` is one etcd transaction comparing `mod_revision` (not a blind put), its
failure hands back the current object from the same round trip, and a value that is not a
JSON object is reported — never rewritten, never deleted.

`metadata.resourceVersion` is not stored: it is the key's `mod_revision`, filled in on every
read, exactly as the Kubernetes API server does.
"""

from __future__ import annotations

import builtins
import fnmatch
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic_core

from controller.resources.selector import parse_selector
from controller.storage.bulk import gc_paused
from controller.storage.client import EtcdClient
from controller.storage.errors import AlreadyExists, Conflict, CorruptValue, Fenced, InvalidRequest
from controller.storage.kv import Compare, EventType, KeyValue, Op, RangeResult, WatchEvent
from controller.storage.watch import WatchHandle

log = logging.getLogger("controller.storage.backend")

MAX_BATCH_OPS = 128
"""etcd's default `--max-txn-ops`; a larger batch would be refused by the server."""

Document = dict[str, Any]
CorruptHook = Callable[[CorruptValue], None]


@dataclass(frozen=True, slots=True)
class StorageEvent:
    """One change under the backend's prefix, decoded.

    `value` is None on DELETE, and also when the new value is unreadable (then `error` says why).
    """

    type: str
    name: str
    value: Document | None
    prev_value: Document | None
    revision: int
    error: CorruptValue | None = None


@dataclass(frozen=True, slots=True)
class CasResult:
    succeeded: bool
    revision: int
    """On success the new resourceVersion; on failure the current one (0 if the key is gone)."""
    current: Document | None
    """On failure: the object as it is now, from the same transaction (None if deleted)."""


@dataclass(frozen=True, slots=True)
class BatchPut:
    name: str
    value: Document
    expected_version: int | None = None
    """None: unconditional; 0: only if absent; N: only if mod_revision == N."""


@dataclass(frozen=True, slots=True)
class BatchDelete:
    name: str
    expected_version: int | None = None


BatchOp = BatchPut | BatchDelete


def encode_document(value: Document | bytes) -> bytes:
    """Compact JSON without `metadata.resourceVersion` (it lives in etcd's mod_revision).

    Bytes are a document the caller already encoded this way (and checked): sent as they are.
    """
    if isinstance(value, bytes):
        return value
    meta = value.get("metadata")
    if isinstance(meta, dict) and "resourceVersion" in meta:
        value = {**value, "metadata": {k: v for k, v in meta.items() if k != "resourceVersion"}}
    try:
        # pydantic-core writes the same compact UTF-8 as the json call below, ~4x faster.
        return pydantic_core.to_json(value)
    except pydantic_core.PydanticSerializationError:
        # What it cannot write (a lone surrogate such as '\ud800'): json raises the usual
        # UnicodeEncodeError, which callers report naming the field.
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode_document(kv: KeyValue, name: str) -> Document:
    """Parse a stored value and stamp its resourceVersion; raise CorruptValue naming the key.

    pydantic-core's parser, not `json.loads`: anyone can put a value under the prefix, and
    `json.loads` answers a value nested a few thousand levels deep with RecursionError (it
    killed `labctl get` and watch threads). This parser refuses nesting past a fixed depth
    (the same one `LabWorker.model_validate_json` uses, so every reader agrees on what is
    too deep), refuses invalid UTF-8, and is faster besides.
    """
    try:
        doc = pydantic_core.from_json(kv.value)
    except ValueError as exc:
        raise CorruptValue(kv.key, f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise CorruptValue(kv.key, f"JSON {type(doc).__name__}, not an object")
    meta = doc.get("metadata")
    if meta is None:
        meta = doc["metadata"] = {}
    if not isinstance(meta, dict):
        raise CorruptValue(kv.key, "metadata is not an object")
    meta["resourceVersion"] = str(kv.mod_revision)
    return doc


def version_of(expected: int | str | None) -> int:
    """resourceVersions travel as strings (Kubernetes style); etcd compares integers."""
    if expected is None or expected == "":
        return 0
    try:
        return int(expected)
    except ValueError:
        raise InvalidRequest(f"resourceVersion {expected!r} is not an etcd revision") from None


class EtcdStorageBackend:
    """Thread-safe; share one per prefix."""

    def __init__(self, client: EtcdClient, prefix: str) -> None:
        self.client = client
        self.prefix = prefix.rstrip("/") + "/"
        self.corrupt_hooks: list[CorruptHook] = []

    # -- keys ------------------------------------------------------------------------------

    def _make_key(self, name: str) -> str:
        if not name or name.startswith("/") or "\0" in name:
            raise InvalidRequest(f"invalid object name {name!r}")
        return self.prefix + name

    def _name_of(self, key: str) -> str:
        return key[len(self.prefix) :] if key.startswith(self.prefix) else key

    def _report_corrupt(self, err: CorruptValue) -> None:
        log.error("%s; skipping it (it is never rewritten or deleted by the controller)", err)
        for hook in self.corrupt_hooks:
            hook(err)

    # -- reads -----------------------------------------------------------------------------

    def exists(self, name: str) -> bool:
        return self.client.range(self._make_key(name), count_only=True).count > 0

    def get(self, name: str) -> Document | None:
        """The object with `metadata.resourceVersion`, or None. Raises CorruptValue."""
        kv = self.client.get(self._make_key(name))
        return decode_document(kv, name) if kv else None

    def keys(self, pattern: str = "") -> builtins.list[str]:
        """Names under the prefix starting with `pattern`; `*`/`?` glob the remainder."""
        literal = pattern
        for i, ch in enumerate(pattern):
            if ch in "*?[":
                literal = pattern[:i]
                break
        start = self.prefix + literal
        names: builtins.list[str] = []
        for page, _ in self.client.iter_prefix(start, keys_only=True):
            names.extend(self._name_of(kv.key) for kv in page)
        if literal != pattern:
            names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        return names

    def list(self, name_prefix: str = "", *, page_size: int = 5000) -> list[Document]:
        """Every readable object; unreadable ones are reported (log + hooks) and skipped."""
        return self.list_with_revision(name_prefix, page_size=page_size)[0]

    def items(
        self, name_prefix: str = "", *, page_size: int = 5000
    ) -> builtins.list[tuple[str, Document]]:
        """(name, object) pairs: the name is the key (prefix stripped), which callers must
        check against the object's own metadata — a value can be written under any key."""
        out: builtins.list[tuple[str, Document]] = []
        with gc_paused():
            for page, _ in self.client.iter_prefix(self.prefix + name_prefix, page_size=page_size):
                for kv in page:
                    name = self._name_of(kv.key)
                    try:
                        out.append((name, decode_document(kv, name)))
                    except CorruptValue as err:
                        self._report_corrupt(err)
        return out

    def list_with_revision(
        self, name_prefix: str = "", *, page_size: int = 5000
    ) -> tuple[builtins.list[Document], int]:
        """A consistent snapshot and its revision (watch from revision + 1 to miss nothing)."""
        docs: builtins.list[Document] = []
        revision = 0
        pages = self.client.iter_prefix(self.prefix + name_prefix, page_size=page_size)
        with gc_paused():
            for page, revision in pages:
                docs.extend(self._decode_page(page))
        return docs, revision

    def list_with_labels(self, selector: str) -> builtins.list[Document]:
        """Objects whose metadata.labels match a Kubernetes label selector."""
        parsed = parse_selector(selector)
        out = []
        for doc in self.list():
            labels = doc["metadata"].get("labels") or {}
            if isinstance(labels, dict) and parsed.matches(labels):
                out.append(doc)
        return out

    def _decode_page(self, page: builtins.list[KeyValue]) -> Iterator[Document]:
        for kv in page:
            try:
                yield decode_document(kv, self._name_of(kv.key))
            except CorruptValue as err:
                self._report_corrupt(err)

    # -- writes ----------------------------------------------------------------------------

    def set(self, name: str, value: Document, *, ttl: int | None = None) -> bool:
        """Store `value`. If it carries metadata.resourceVersion the write is a CAS on it.

        With `ttl` the key lives on a lease and disappears `ttl` seconds after the last write.
        `Unavailable(maybe_applied=True)`: the write may or may not have landed; re-read.
        """
        key = self._make_key(name)
        lease = self.client.lease_grant(ttl).id if ttl else 0
        expected = (value.get("metadata") or {}).get("resourceVersion")
        guard = [Compare.mod_revision(key, version_of(expected))] if expected else []
        result = self.client.txn(guard, [Op.put(key, encode_document(value), lease)], [Op.get(key)])
        if not result.succeeded:
            raise Conflict(key, version_of(expected), _first_kv(result.responses))
        return True

    def create(self, name: str, value: Document, *, ttl: int | None = None) -> Document:
        """Store `value` only if `name` is absent; returns it with its resourceVersion."""
        key = self._make_key(name)
        lease = self.client.lease_grant(ttl).id if ttl else 0
        result = self.client.txn(
            [Compare.absent(key)], [Op.put(key, encode_document(value), lease)], [Op.get(key)]
        )
        if not result.succeeded:
            raise AlreadyExists(key, _first_kv(result.responses))
        return _stamped(value, result.revision)

    def delete(
        self,
        name: str,
        expected_version: int | str | None = None,
        *,
        guards: Sequence[Compare] = (),
    ) -> bool:
        """Delete; with `expected_version` only if unchanged since (raises Conflict otherwise).

        `guards` are extra compares (a leader's fencing token); if one fails: Fenced.
        Returns False when there was nothing to delete. `Unavailable(maybe_applied=True)`: the
        request reached etcd but no answer came back, so the key may or may not be gone;
        re-read (never blindly repeat: the name may have been re-created meanwhile).
        """
        key = self._make_key(name)
        if expected_version is None and not guards:
            return self.client.delete(key).deleted > 0
        rev = version_of(expected_version) if expected_version is not None else None
        compares = [*guards]
        if rev is not None:
            compares.append(Compare.mod_revision(key, rev))
        result = self.client.txn(compares, [Op.delete(key)], [Op.get(key)])
        if not result.succeeded:
            current = _first_kv(result.responses)
            if rev is None or (current is not None and current.mod_revision == rev):
                raise Fenced(f"{key}: delete refused: the writer's fencing guard failed")
            if current is None:
                return False
            raise Conflict(key, rev, current)
        return True

    def compare_and_swap(self, name: str, expected_version: int | str, new_value: Document) -> bool:
        """One transaction: write `new_value` only if the key's mod_revision is unchanged."""
        return self.cas(name, expected_version, new_value).succeeded

    def cas(
        self,
        name: str,
        expected_version: int | str,
        new_value: Document | bytes,
        *,
        guards: Sequence[Compare] = (),
    ) -> CasResult:
        """`compare_and_swap` that also returns the current object on failure (same round trip).

        `expected_version` 0 means "only if absent" (create). `guards` are extra compares in
        the same transaction (a leader's fencing token): if the object is unchanged but the
        write failed, a guard did, and `Fenced` is raised.
        """
        key = self._make_key(name)
        rev = version_of(expected_version)
        guard = Compare.absent(key) if rev == 0 else Compare.mod_revision(key, rev)
        result = self.client.txn(
            [guard, *guards], [Op.put(key, encode_document(new_value))], [Op.get(key)]
        )
        if result.succeeded:
            return CasResult(True, result.revision, None)
        kv = _first_kv(result.responses)
        if guards and (kv.mod_revision if kv else 0) == rev:
            raise Fenced(f"{key}: write refused: the writer's fencing guard failed")
        if kv is None:
            return CasResult(False, 0, None)
        try:
            current = decode_document(kv, name)
        except CorruptValue as err:
            self._report_corrupt(err)
            raise
        return CasResult(False, kv.mod_revision, current)

    def apply_batch(self, ops: Sequence[BatchOp]) -> int:
        """Up to 128 guarded puts/deletes in ONE transaction: all applied, or none.

        Returns the new revision. Raises Conflict naming the first key whose guard failed.
        """
        if not ops:
            raise InvalidRequest("apply_batch needs at least one operation")
        if len(ops) > MAX_BATCH_OPS:
            raise InvalidRequest(
                f"apply_batch takes at most {MAX_BATCH_OPS} operations, got {len(ops)}"
            )
        seen: set[str] = set()
        compares: list[Compare] = []
        success: list[Op] = []
        guarded: list[tuple[str, int]] = []
        for op in ops:
            key = self._make_key(op.name)
            if key in seen:
                raise InvalidRequest(f"apply_batch names {op.name!r} twice; etcd refuses that")
            seen.add(key)
            if op.expected_version is not None:
                rev = version_of(op.expected_version)
                compares.append(Compare.absent(key) if rev == 0 else Compare.mod_revision(key, rev))
                guarded.append((key, rev))
            if isinstance(op, BatchPut):
                success.append(Op.put(key, encode_document(op.value)))
            else:
                success.append(Op.delete(key))
        failure = [Op.get(key) for key, _ in guarded]
        result = self.client.txn(compares, success, failure)
        if result.succeeded:
            return result.revision
        for (key, rev), resp in zip(guarded, result.responses, strict=True):
            assert isinstance(resp, RangeResult)
            current = resp.kvs[0] if resp.kvs else None
            now = current.mod_revision if current else 0
            if now != rev:
                raise Conflict(key, rev, current)
        raise Conflict(guarded[0][0], guarded[0][1], None)  # pragma: no cover - raced twice

    # -- watch -----------------------------------------------------------------------------

    def watch(
        self,
        callback: Callable[[StorageEvent], None],
        key_prefix: str = "",
        *,
        start_revision: int = 0,
    ) -> WatchHandle:
        """Call `callback` for every change under prefix + key_prefix, in revision order.

        The handle's `.cancel()` stops it. The watch survives etcd restarts (it resumes from
        the last revision + 1); if its revision is compacted it stops with `handle.compacted`.
        """

        def deliver(batch: builtins.list[WatchEvent]) -> None:
            for ev in batch:
                try:
                    callback(self._decode_event(ev))
                except Exception:
                    # One bad callback invocation must not cost the other events.
                    log.exception(
                        "watch callback failed for %s at revision %d; continuing with the next event",
                        self._name_of(ev.kv.key),
                        ev.revision,
                    )

        return self.client.watch(
            self.prefix + key_prefix,
            deliver,
            prefix=True,
            prev_kv=True,
            start_revision=start_revision,
            name=f"watch {self.prefix}{key_prefix}",
        )

    def _decode_event(self, ev: WatchEvent) -> StorageEvent:
        name = self._name_of(ev.kv.key)
        prev = _decode_quietly(ev.prev_kv, name) if ev.prev_kv else None
        if ev.type is EventType.DELETE:
            return StorageEvent("DELETE", name, None, prev, ev.revision)
        try:
            return StorageEvent("PUT", name, decode_document(ev.kv, name), prev, ev.revision)
        except CorruptValue as err:
            self._report_corrupt(err)
            return StorageEvent("PUT", name, None, prev, ev.revision, err)


def _first_kv(responses: Sequence[object]) -> KeyValue | None:
    if responses and isinstance(responses[0], RangeResult) and responses[0].kvs:
        return responses[0].kvs[0]
    return None


def _stamped(value: Document, revision: int) -> Document:
    meta = dict(value.get("metadata") or {})
    meta["resourceVersion"] = str(revision)
    return {**value, "metadata": meta}


def _decode_quietly(kv: KeyValue, name: str) -> Document | None:
    try:
        return decode_document(kv, name)
    except CorruptValue:
        return None

"""An object's history from etcd's MVCC store, and rolling its spec back to one version.

etcd keeps every revision of a key until it is compacted, so the history of an object needs no
bookkeeping of ours: read the current value, then the key as of `mod_revision - 1` (the value
the previous write replaced), and so on back (docs/architecture.md, History and retention).
The walk ends at one of two places, which `History.end` states:

- **created**: the version with etcd `version == 1`, written at the key's `create_revision`.
  An earlier object of the same name (deleted, then created again) is a different object
  (another uid) and is not shown.
- **compacted**: etcd refused an older revision; `end_revision` is etcd's compaction point,
  found by bisecting between the last revision it refused and the oldest it served.

For each version: who wrote it, when (if the version records it) and a one-line summary.

- **Writer.** The repository's rule, read backwards: a controller writes only `status`,
  `metadata.finalizers` and `metadata.ownerReferences` (`Repository.update_status`); any
  version that changed anything else — spec, labels, annotations, generation, a deletion
  request — or created the object was written through `update_spec`/`create`/`delete`, i.e. by
  a user (`labctl`, or a controller writing its dependents' spec, as a pool scaling down does).
  The oldest version etcd still holds (or one after an unreadable value) has nothing to be
  compared with: its writer is `unknown`.
- **Time.** etcd records no time per revision; the object sometimes does. A version's time is
  the newest RFC 3339 timestamp it holds that the previous version did not (creationTimestamp,
  deletionTimestamp, status.phaseTransitionTime, a condition's lastTransitionTime,
  status.lastHealthCheck …). A plain spec edit writes no timestamp: its time is unknown.
- **Decoding.** Each version is decoded with the kind's model when valid, and kept as raw JSON
  (or raw bytes) when not: an invalid version is shown, never a reason to fail.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from controller.resources import ObjectKey, Resource
from controller.resources.limits import InvalidStoredValue, decode_stored
from controller.runtime.repository import Repository, UpdateResult
from controller.storage import Compacted, Conflict, EtcdClient, KeyValue, NotFound, StorageError

T = TypeVar("T", bound=Resource)

Writer = Literal["user", "controller", "unknown"]
"""`unknown` when the version before it is compacted or unreadable: nothing to compare."""

CONTROLLER_OWNED_METADATA = frozenset({"finalizers", "ownerReferences"})
"""What `Repository.update_status` may change besides status (with it, all a controller can)."""

_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
_SUMMARY_WIDTH = 120


@dataclass(frozen=True)
class Version:
    """One revision of the object that etcd still holds."""

    revision: int
    """The key's mod_revision: the cluster revision of the write (`resourceVersion`)."""
    version: int
    """etcd's per-key write counter: 1 for the creation, +1 per write."""
    writer: Writer
    time: str | None
    """See the module docstring; None when the version records no time of its own."""
    summary: str
    document: dict[str, Any] | None
    """The stored JSON; None when the value is not a JSON object."""
    object: Resource | None
    """The value decoded with the kind's model; None when it is invalid (see `invalid`)."""
    invalid: str | None
    """Why the value does not decode, or None."""
    raw: bytes


@dataclass(frozen=True)
class History:
    key: str
    versions: list[Version]
    """Newest first."""
    end: Literal["created", "compacted"]
    end_revision: int
    """The creation revision, or etcd's compaction revision."""

    def end_text(self) -> str:
        if self.end == "created":
            return f"history starts at revision {self.end_revision}: the object was created"
        lost = self.versions[-1].version - 1 if self.versions else 0
        return (
            f"history ends at revision {self.end_revision}: etcd compacted everything older "
            f"({lost} earlier version{'s' if lost != 1 else ''} of this object lost)"
        )

    def at(self, revision: int) -> Version | None:
        """The version that was current at `revision` (a write's own revision, or any later
        revision before the next write), or None if it is older than the history."""
        return next((v for v in self.versions if v.revision <= revision), None)


def read_history(client: EtcdClient, etcd_key: str, model: type[Resource] | None = None) -> History:
    """Every version of the object at `etcd_key` that etcd still holds, newest first.

    Raises NotFound when the key does not exist now (a deleted object has no history here:
    its key is gone from the current revision)."""
    current = client.range(etcd_key)
    if not current.kvs:
        raise NotFound(etcd_key)
    kvs = [current.kvs[0]]
    served = current.revision  # the oldest revision etcd has answered for so far
    end: Literal["created", "compacted"] = "created"
    end_revision = kvs[0].create_revision
    while kvs[-1].version > 1:
        before = kvs[-1].mod_revision - 1
        try:
            older = client.range(etcd_key, revision=before).kvs
        except Compacted:
            end, end_revision = "compacted", _compaction_revision(client, etcd_key, before, served)
            break
        served = before
        if not older or older[0].create_revision != kvs[-1].create_revision:
            # Cannot happen while version > 1 (an incarnation's writes are contiguous), but a
            # history that stops early is better than one that mixes two objects.
            break
        kvs.append(older[0])
    name = _object_name(etcd_key)
    documents = [_document(kv.value) for kv in kvs]
    versions = [
        _version(name, kv, documents[i], documents[i + 1 :], model) for i, kv in enumerate(kvs)
    ]
    return History(etcd_key, versions, end, end_revision)


def _compaction_revision(client: EtcdClient, etcd_key: str, refused: int, served: int) -> int:
    """etcd's compaction revision C (reads below C are refused): the smallest revision in
    (refused, served] that it still serves, by bisection (a few count-only reads)."""
    low, high = refused, served  # low is refused, high is served
    while high - low > 1:
        middle = (low + high) // 2
        try:
            client.range(etcd_key, revision=middle, count_only=True)
        except Compacted:
            low = middle
        else:
            high = middle
    return high


def _object_name(etcd_key: str) -> str:
    """`<namespace>/<name>`: the last two segments, as the repository names objects."""
    parts = etcd_key.rstrip("/").split("/")
    return "/".join(parts[-2:])


def _document(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _version(
    name: str,
    kv: KeyValue,
    document: dict[str, Any] | None,
    older: list[dict[str, Any] | None],
    model: type[Resource] | None,
) -> Version:
    """`older`: the documents of the versions before this one that etcd still holds."""
    obj: Resource | None = None
    invalid: str | None = None
    if model is not None:
        try:
            obj = decode_stored(name, kv.value, model)
            obj.metadata.resource_version = kv.mod_revision
        except InvalidStoredValue as exc:
            invalid = exc.detail
    elif document is None:
        invalid = "value is not a JSON object"
    created = kv.version == 1
    previous = older[0] if older else None
    if not created and previous is None:
        # Nothing to compare with: what this write changed is compacted away or unreadable.
        why = "unreadable" if older else "compacted"
        return Version(
            revision=kv.mod_revision,
            version=kv.version,
            writer="unknown",
            time=None,
            summary=summarize(document, None, created=False, invalid=invalid, previous_is=why),
            document=document,
            object=obj,
            invalid=invalid,
            raw=kv.value,
        )
    return Version(
        revision=kv.mod_revision,
        version=kv.version,
        writer=writer_of(document, previous, created=created),
        time=_new_timestamp(document, previous),
        summary=summarize(document, previous, created=created, invalid=invalid),
        document=document,
        object=obj,
        invalid=invalid,
        raw=kv.value,
    )


# -- who, when, what ----------------------------------------------------------------------------


def writer_of(
    document: Mapping[str, Any] | None, previous: Mapping[str, Any] | None, *, created: bool
) -> Writer:
    """`controller` when only what a controller may write changed, else `user`."""
    if created or document is None or previous is None:
        return "user"
    for path, _, _ in _changes(previous, document):
        top, _, rest = path.partition(".")
        if top == "status":
            continue
        if top == "metadata" and rest.split(".")[0] in CONTROLLER_OWNED_METADATA:
            continue
        return "user"
    return "controller"


def _new_timestamp(
    document: Mapping[str, Any] | None, previous: Mapping[str, Any] | None
) -> str | None:
    if document is None:
        return None
    before = set(_timestamps(previous)) if previous is not None else set()
    fresh = [t for t in _timestamps(document) if t not in before]
    return max(fresh) if fresh else None


def _timestamps(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if _TIMESTAMP.match(value):
            yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _timestamps(item)
    elif isinstance(value, list):
        for item in value:
            yield from _timestamps(item)


def summarize(
    document: Mapping[str, Any] | None,
    previous: Mapping[str, Any] | None,
    *,
    created: bool,
    invalid: str | None = None,
    previous_is: str = "unreadable",
) -> str:
    """`spec.replicas: 2 → 3`, `phase: Pending → Provisioning`, `created`, `deletion
    requested` … one line, at most ~120 characters."""
    if document is None:
        return f"unreadable value ({invalid or 'not a JSON object'})"
    parts: list[str] = []
    if invalid is not None:
        parts.append(f"INVALID ({invalid if len(invalid) <= 60 else invalid[:59] + '…'})")
    if created:
        parts.append("created")
    elif previous is None:
        parts.append(f"change unknown: the version before it is {previous_is}")
    else:
        old_meta = previous.get("metadata") or {}
        new_meta = document.get("metadata") or {}
        if new_meta.get("deletionTimestamp") and not old_meta.get("deletionTimestamp"):
            parts.append("deletion requested")
        user = [
            _change_text(path, old, new)
            for path, old, new in _changes(previous, document)
            if not path.startswith(("status", "metadata"))
        ]
        user += [
            _change_text(f"metadata.{path}", old, new)
            for path, old, new in _changes(old_meta, new_meta)
            if path.split(".")[0] in ("labels", "annotations")
        ]
        parts.extend(user)
        old_status = previous.get("status") or {}
        new_status = document.get("status") or {}
        old_phase, new_phase = _phase(old_status), _phase(new_status)
        if old_phase != new_phase:
            parts.append(f"phase: {old_phase or '(none)'} → {new_phase or '(none)'}")
        elif not user and old_status != new_status:
            fields = sorted({path.split(".")[0] for path, _, _ in _changes(old_status, new_status)})
            parts.append("status: " + ", ".join(fields) + " updated")
        old_final, new_final = old_meta.get("finalizers"), new_meta.get("finalizers")
        if old_final != new_final and not parts:
            parts.append(f"finalizers: {_short(old_final)} → {_short(new_final)}")
    text = "; ".join(parts) or "no visible change (metadata only)"
    return text if len(text) <= _SUMMARY_WIDTH else text[: _SUMMARY_WIDTH - 1] + "…"


def _phase(status: Any) -> str | None:
    phase = status.get("phase") if isinstance(status, Mapping) else None
    return str(phase) if phase is not None else None


def _changes(old: Any, new: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(dotted path, old, new) of every leaf that differs; lists compare as a whole."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for name in [*old, *(k for k in new if k not in old)]:
            if name in ("apiVersion", "kind") and not path:
                continue
            child = f"{path}.{name}" if path else str(name)
            yield from _changes(old.get(name), new.get(name), child)
    elif old != new:
        yield path, old, new


def _change_text(path: str, old: Any, new: Any) -> str:
    return f"{path}: {_short(old)} → {_short(new)}"


def _short(value: Any) -> str:
    if value is None:
        return "(none)"
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= 40 else text[:39] + "…"


# -- rollback -----------------------------------------------------------------------------------


class RollbackRefused(StorageError):
    """The revision cannot be rolled back to (compacted, another object, invalid)."""


def rollback(
    repository: Repository[T],
    key: ObjectKey,
    to_revision: int,
    *,
    expected_revision: int | None = None,
    finish: Callable[[T], object] | None = None,
) -> UpdateResult[T]:
    """Write the spec (everything users own) the object had at `to_revision`, in ONE CAS
    transaction through `update_spec`: generation + 1, status untouched, admission (quotas)
    applied as for any spec edit.

    `expected_revision` is the precondition on the current resourceVersion (default: the
    one read here): if the object changed since, Conflict — an old spec must never be
    written over an edit its author has not seen. `finish` may change the restored object
    last (labctl records its trace context). Raises RollbackRefused, Conflict, NotFound.
    """
    etcd_key = repository.etcd_key(key)
    current_kv = repository.client.get(etcd_key)
    if current_kv is None:
        raise NotFound(str(key))
    expected = expected_revision if expected_revision is not None else current_kv.mod_revision
    try:
        older = repository.client.range(etcd_key, revision=to_revision).kvs
    except Compacted:
        raise RollbackRefused(
            f"{key}: revision {to_revision} has been compacted by etcd; `labctl history` "
            "shows the revisions that are left"
        ) from None
    if not older or older[0].create_revision != current_kv.create_revision:
        raise RollbackRefused(
            f"{key}: revision {to_revision} is not a version of this object (it was created "
            f"at revision {current_kv.create_revision})"
        )
    try:
        target = decode_stored(str(key), older[0].value, repository.kind.model)
    except InvalidStoredValue as exc:
        raise RollbackRefused(
            f"{key}: revision {to_revision} is not a valid {repository.kind.kind} "
            f"({exc.detail}); roll back to another one"
        ) from None
    wanted = target.user_fields()

    def restore(current: T) -> T:
        if current.metadata.resource_version != expected:
            raise Conflict(etcd_key, expected, None)
        update = {
            name: value.model_copy(deep=True) if hasattr(value, "model_copy") else value
            for name, value in wanted.items()
        }
        restored = current.model_copy(update=update, deep=True)
        if finish is not None:
            finish(restored)
        return restored

    return repository.update_spec(key.namespace, key.name, restore)

"""Repository[T]: the API server's object rules, once, for every kind stored in etcd.

- **create** sets uid, creationTimestamp and generation 1, drops any status, and stores the
  object only if its key is absent (`create_revision == 0`).
- **update_spec** writes what users own (everything but metadata and status) plus labels,
  annotations and ownerReferences; generation is bumped only when the user fields changed,
  and the status written is always the one just read, so an apply never clobbers status.
- **update_status** writes status, finalizers and ownerReferences only; it refuses
  (`SpecChangeRefused`) to change anything else: the controller never writes spec.
- **mark_for_deletion** sets deletionTimestamp; the key goes when the last finalizer does.
- Every write is one transaction that compares the key's `mod_revision`. A lost compare
  returns the current value in the same round trip, the mutate function runs again on it,
  and the write is retried (bounded, jittered). A write whose outcome is unknown
  (`Unavailable(maybe_applied=True)`) is never re-sent: the caller re-reads.
- **Admission** plug-ins (LabQuota) add compares and ops to the very same transaction, so a
  check and the write it guards cannot be raced (docs/architecture.md, Quotas).
- Reads and writes apply controller.resources.limits: a value the informer would skip is
  reported as `InvalidObject` on read and refused as `WriteRefused` before it is sent.
"""

from __future__ import annotations

import builtins
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from controller.resources import (
    Kind,
    ObjectKey,
    Resource,
    now_rfc3339,
    parse_selector,
    tree_copy,
    validation_errors,
)
from controller.resources.limits import (
    MAX_VALUE_BYTES,
    InvalidStoredValue,
    decode_stored,
    oversize_detail,
    unencodable_field,
)
from controller.storage import (
    MAX_BATCH_OPS,
    AlreadyExists,
    Compare,
    Conflict,
    EtcdClient,
    Fenced,
    KeyValue,
    NotFound,
    Op,
    RangeResult,
    StorageError,
    TxnResult,
    encode_document,
)
from controller.storage.bulk import gc_paused

log = logging.getLogger("controller.runtime.repository")

T = TypeVar("T", bound=Resource)
T_contra = TypeVar("T_contra", bound=Resource, contravariant=True)

Mutation = Callable[[T], T | None]
"""Change the given (private) copy in place, or return a replacement; None means in place."""


class InvalidObject(StorageError):
    """The stored value breaks a rule of controller.resources.limits, so the controller skips
    it too; it is reported, never rewritten, and never deleted by name (the key may hold a
    copy of another object)."""

    def __init__(self, key: str, reason: str, detail: str, kind: str = "object") -> None:
        super().__init__(f"{key}: not a valid {kind} ({reason}: {detail})")
        self.key = key
        self.reason = reason
        self.detail = detail


class WriteRefused(StorageError):
    """The write would store a value the controller's readers reject; nothing was written.

    The message names the field and the limit (controller.resources.limits)."""

    def __init__(self, key: str, reason: str, detail: str) -> None:
        super().__init__(f"{key}: refused to store it ({reason}): {detail}")
        self.key = key
        self.reason = reason
        self.detail = detail


class AdmissionRefused(StorageError):
    """An admission plug-in (a LabQuota) refused the write; nothing was written. The message
    names the rule, its limit and its current use."""


class SpecChangeRefused(StorageError):
    """A status writer tried to change spec: the controller never writes spec."""


class TooManyConflicts(StorageError):
    """The object kept changing under us; the caller should requeue and try later."""


@dataclass(frozen=True, slots=True)
class TxnParts:
    """What an admission plug-in adds to an object's write transaction."""

    compares: Sequence[Compare] = ()
    ops: Sequence[Op] = ()


NO_PARTS = TxnParts()


class Admission(Protocol[T_contra]):
    """Checks a write and adds its own bookkeeping to the same transaction.

    Each method may raise AdmissionRefused. It is called again, with fresh reads, after every
    lost compare, so it must read the state it compares in the call itself."""

    def on_create(self, obj: T_contra) -> TxnParts: ...
    def on_update(self, old: T_contra, new: T_contra) -> TxnParts: ...
    def on_delete(self, obj: T_contra) -> TxnParts: ...


@dataclass(frozen=True, slots=True)
class UpdateResult(Generic[T]):
    object: T | None
    """The object as stored after the update (None if the update deleted it)."""
    written: bool
    """False when the mutation changed nothing, so no transaction was sent."""
    conflicts: int
    """How many CAS conflicts were retried before the write landed."""
    deleted: bool = False


def _log_invalid(err: InvalidObject) -> None:
    log.error("%s; skipping it", err)


@dataclass
class Repository(Generic[T]):
    """Typed CRUD for one kind under one prefix. Thread-safe (no mutable state per call)."""

    client: EtcdClient
    kind: Kind[T]
    root: str
    max_conflict_retries: int = 10
    status_guards: Callable[[], list[Compare]] | None = None
    """Extra compares for every controller write: the owner's fencing token (runtime.leader)."""
    admission: list[Admission[T]] = field(default_factory=list)
    on_invalid: Callable[[InvalidObject], object] | None = None
    """Told about each invalid stored value a read met (metrics)."""

    @property
    def prefix(self) -> str:
        return self.kind.prefix(self.root)

    def etcd_key(self, key: ObjectKey) -> str:
        return self.prefix + f"{key.namespace}/{key.name}"

    # -- encoding ----------------------------------------------------------------------------

    def decode_kv(self, key: str, kv: KeyValue) -> T:
        """The stored value under `key` (`ns/name`), checked as the informer checks it."""
        try:
            obj = decode_stored(key, kv.value, self.kind.model)
        except InvalidStoredValue as exc:
            err = InvalidObject(key, exc.reason, exc.detail, self.kind.kind)
            if self.on_invalid is not None:
                self.on_invalid(err)
            raise err from None
        obj.metadata.resource_version = kv.mod_revision
        return obj

    def storable(self, key: str, obj: T) -> bytes:
        """The bytes to store for `obj`, checked exactly as its readers will check them.

        Raises WriteRefused naming the field and the limit. Models are not re-validated when a
        mutate function assigns to them, so this is the one check every write passes through.
        """
        try:
            raw = obj.to_storage_json()
        except PydanticSerializationError:
            raw = b""  # not valid Unicode: the slow path below names the field
        if not raw or len(raw) > MAX_VALUE_BYTES:
            doc = obj.to_storage_dict()
            try:
                raw = encode_document(doc)
            except UnicodeEncodeError:
                raise WriteRefused(
                    key,
                    "invalid-object",
                    f"{unencodable_field(doc)} is not valid Unicode text (it holds a lone "
                    "surrogate such as '\\ud800'), so it cannot be stored as UTF-8",
                ) from None
            if len(raw) > MAX_VALUE_BYTES:
                raise WriteRefused(key, "too-large", oversize_detail(doc, len(raw)))
        try:
            decode_stored(key, raw, self.kind.model)
        except InvalidStoredValue as exc:
            raise WriteRefused(key, exc.reason, exc.detail) from None
        return raw

    def validate(self, document: dict[str, Any]) -> T:
        """A manifest, validated as the model; raises InvalidObject naming the fields."""
        name = str((document.get("metadata") or {}).get("name", "?"))
        try:
            return self.kind.model.model_validate(document)
        except ValidationError as exc:
            raise InvalidObject(
                name, "invalid-object", "; ".join(validation_errors(exc)[:5]), self.kind.kind
            ) from None

    # -- reads -------------------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> T | None:
        """The object, or None if the key is absent. Raises InvalidObject for a value the
        controller would skip, including one copied from another object's key."""
        return self.get_by_key(ObjectKey(namespace, name))

    def get_by_key(self, key: ObjectKey | str) -> T | None:
        """By `ObjectKey` or by its text `ns/name` (a malformed one is reported as the
        informer reports it: InvalidObject, reason bad-key)."""
        text = str(key)
        kv = self.client.get(self.prefix + text)
        return self.decode_kv(text, kv) if kv is not None else None

    def list(
        self,
        namespace: str | None = None,
        selector: str | None = None,
        *,
        on_invalid: Callable[[InvalidObject], object] | None = None,
        page_size: int = 5000,
    ) -> builtins.list[T]:
        """Valid objects; each invalid one is reported to `on_invalid` (default: an error log)
        and skipped, so one bad value never hides the others."""
        parsed = parse_selector(selector) if selector else None
        report = on_invalid or _log_invalid
        prefix = self.prefix
        out: builtins.list[T] = []
        invalid: builtins.list[InvalidObject] = []
        with gc_paused():
            for page, _ in self.client.iter_prefix(
                prefix + (f"{namespace}/" if namespace else ""), page_size=page_size
            ):
                for kv in page:
                    try:
                        obj = self.decode_kv(kv.key[len(prefix) :], kv)
                    except InvalidObject as err:
                        invalid.append(err)
                        continue
                    if parsed is None or parsed.matches(obj.metadata.labels):
                        out.append(obj)
        for bad in invalid:
            report(bad)
        return out

    # -- writes ------------------------------------------------------------------------------

    def create(self, obj: T, *, lease: int = 0, fenced: bool = False) -> T:
        """Store a new object: uid (always fresh), creationTimestamp and generation 1 are set
        here.

        Raises AlreadyExists if the name is taken, WriteRefused if the object breaks a limit,
        AdmissionRefused if a quota forbids it. Any status on the input is dropped. `lease`
        attaches the key to an etcd lease (it vanishes when the lease expires); `fenced` adds
        the owner's fencing compares (a controller creating dependents).
        """
        fresh = self._new(obj)
        meta = fresh.metadata
        key = ObjectKey(meta.namespace, meta.name)
        text = str(key)
        raw = self.storable(text, fresh)
        etcd_key = self.etcd_key(key)
        guards = self._guards(fenced)
        for attempt in range(self.max_conflict_retries):
            parts = self._admit(lambda a: a.on_create(fresh))
            result = self.client.txn(
                [Compare.absent(etcd_key), *parts.compares, *guards],
                [Op.put(etcd_key, raw, lease), *parts.ops],
                [Op.get(etcd_key)],
            )
            if result.succeeded:
                fresh.metadata.resource_version = result.revision
                return fresh
            if _first_kv(result) is not None:
                raise AlreadyExists(etcd_key, _first_kv(result))
            self._raise_if_fenced(etcd_key, "create", guards, parts)
            # An admission record moved under us (another create in the namespace): again,
            # after a jittered pause so that concurrent creators spread out.
            _backoff(attempt)
        raise TooManyConflicts(
            f"{text}: the namespace's quota usage kept changing during "
            f"{self.max_conflict_retries} attempts to create it; try again"
        )

    def create_all(self, objs: Sequence[T], *, lease: int = 0) -> builtins.list[T] | None:
        """Store several new objects in ONE transaction (each as `create` would): all or none.

        None when a name was taken (nothing was written: the caller creates them one by one
        to learn which). For kinds without admission plug-ins (Events: a burst of them costs
        one round trip instead of one each); at most MAX_BATCH_OPS objects.
        """
        if self.admission:
            raise ValueError(f"{self.kind.kind}: create_all skips admission; use create")
        if len(objs) > MAX_BATCH_OPS:
            raise ValueError(f"at most {MAX_BATCH_OPS} objects per transaction")
        prepared = []
        for obj in objs:
            fresh = self._new(obj)
            key = ObjectKey(fresh.metadata.namespace, fresh.metadata.name)
            prepared.append((fresh, self.etcd_key(key), self.storable(str(key), fresh)))
        result = self.client.txn(
            [Compare.absent(etcd_key) for _, etcd_key, _ in prepared],
            [Op.put(etcd_key, raw, lease) for _, etcd_key, raw in prepared],
            [],
        )
        if not result.succeeded:
            return None
        for fresh, _, _ in prepared:
            fresh.metadata.resource_version = result.revision
        return [fresh for fresh, _, _ in prepared]

    def _new(self, obj: T) -> T:
        """`obj` as `create` stores it: fresh uid, creationTimestamp, generation 1, no status."""
        meta = obj.metadata.model_copy(
            update={
                # Always a new uid, as the API server does: a manifest saved with `get -o
                # yaml` and applied again after a delete is a new object, and a uid is every
                # provider's idempotency token (EC2 would hand back the terminated instance).
                "uid": str(uuid.uuid4()),
                "creation_timestamp": now_rfc3339(),
                "generation": 1,
                "resource_version": None,
                "deletion_timestamp": None,
            }
        )
        update: dict[str, Any] = {"metadata": meta}
        if obj.status_field:
            update[obj.status_field] = (
                type(obj).model_fields[obj.status_field].get_default(call_default_factory=True)
            )
        return obj.model_copy(update=update)

    def apply(self, obj: T, *, dry_run: bool = False) -> tuple[T, str]:
        """Create `obj`, or update what users own if it exists: `labctl apply`.

        Returns the stored object and what happened: created, configured or unchanged. A
        manifest carrying `metadata.resourceVersion` is a precondition: a newer stored object
        raises Conflict instead of being overwritten. `dry_run` does everything but the
        write — the precondition, the limits, the admission plug-ins' checks (a quota) — and
        returns the object as it would be stored (`apply --dry-run=server`, `diff`)."""
        wanted = obj.metadata.resource_version
        key = ObjectKey(obj.metadata.namespace, obj.metadata.name)
        if dry_run:
            return self._plan_apply(obj)
        if wanted is None:
            try:
                return self.create(obj), "created"
            except AlreadyExists:
                pass
        elif self.get_by_key(key) is None:
            # The manifest names a version of an object that no longer exists: recreating it
            # silently would undo a delete someone made after the manifest was read.
            raise Conflict(self.etcd_key(key), wanted, None)
        result = self.update_spec(key.namespace, key.name, lambda c: self._applied(c, obj))
        assert result.object is not None
        return result.object, "configured" if result.written else "unchanged"

    def _plan_apply(self, obj: T) -> tuple[T, str]:
        key = ObjectKey(obj.metadata.namespace, obj.metadata.name)
        current = self.get_by_key(key)
        if current is None:
            if obj.metadata.resource_version is not None:
                raise Conflict(self.etcd_key(key), obj.metadata.resource_version, None)
            fresh = self._new(obj)
            self.storable(str(key), fresh)
            self._admit(lambda a: a.on_create(fresh))
            return fresh, "created"
        draft = self._spec_draft(current, lambda c: self._applied(c, obj))
        if draft == current:
            return current, "unchanged"
        self.storable(str(key), draft)
        self._admit_update(current, draft)
        return draft, "configured"

    def _applied(self, current: T, obj: T) -> T:
        """`current` with what users own taken from the manifest `obj` (apply's merge)."""
        wanted = obj.metadata.resource_version
        if wanted is not None and current.metadata.resource_version != wanted:
            key = ObjectKey(current.metadata.namespace, current.metadata.name)
            raise Conflict(self.etcd_key(key), wanted, None)
        update = {
            name: value.model_copy(deep=True) if hasattr(value, "model_copy") else value
            for name, value in obj.user_fields().items()
        }
        draft = current.model_copy(update=update, deep=True)
        draft.metadata.labels = dict(obj.metadata.labels)
        draft.metadata.annotations = dict(obj.metadata.annotations)
        if obj.metadata.owner_references:
            draft.metadata.owner_references = list(obj.metadata.owner_references)
        return draft

    def update_spec(
        self,
        namespace: str,
        name: str,
        mutate: Mutation[T],
        *,
        fenced: bool = False,
        lease: int = 0,
    ) -> UpdateResult[T]:
        """Change what users own plus labels/annotations/ownerReferences; generation is
        bumped only when the user fields changed. Status is never changed by this path.
        `fenced`: a controller writing its dependents' spec (a pool scaling down).
        `lease`: the key is (re)attached to this lease (an Event's TTL restarts)."""

        return self._update(
            ObjectKey(namespace, name),
            lambda current: self._spec_draft(current, mutate),
            fenced=fenced,
            admit=True,
            lease=lease,
        )

    @staticmethod
    def _spec_draft(current: T, mutate: Mutation[T]) -> T:
        """`mutate`'s result with everything but the user's fields kept from `current`, and
        generation bumped only if the user's fields changed (labels, annotations never)."""
        draft = _mutated(current, mutate)
        if current.status_field:
            setattr(draft, current.status_field, current.status_value())
        meta, old = draft.metadata, current.metadata
        meta.uid = old.uid
        meta.creation_timestamp = old.creation_timestamp
        meta.finalizers = old.finalizers
        meta.deletion_timestamp = old.deletion_timestamp
        meta.generation = old.generation
        meta.resource_version = old.resource_version
        if draft.user_fields() != current.user_fields():
            meta.generation = old.generation + 1
        return draft

    def update_status(
        self,
        namespace: str,
        name: str,
        mutate: Mutation[T],
        *,
        current: T | None = None,
    ) -> UpdateResult[T]:
        """Change status, finalizers and ownerReferences only; refuses (SpecChangeRefused) to
        touch anything else. When the result has a deletionTimestamp and no finalizers left,
        the key is deleted (CAS) — the API server's garbage-collection rule."""

        def apply(current: T) -> T:
            draft = _mutated(current, mutate)
            meta, old = draft.metadata, current.metadata
            if (
                draft.user_fields() != current.user_fields()
                or meta.generation != old.generation
                or meta.labels != old.labels
                or meta.annotations != old.annotations
            ):
                raise SpecChangeRefused(
                    f"{old.namespaced_name}: a status update tried to change spec or metadata"
                )
            return draft

        return self._update(
            ObjectKey(namespace, name), apply, finalize=True, current=current, fenced=True
        )

    def mark_for_deletion(
        self, namespace: str, name: str, *, uid: str | None = None, fenced: bool = False
    ) -> UpdateResult[T]:
        """kubectl-delete semantics: set deletionTimestamp; delete now if no finalizers.

        `uid` is a precondition (the garbage collector deletes *that* object, not a new one
        of the same name): a mismatch deletes nothing and raises NotFound."""

        def apply(current: T) -> T:
            if uid is not None and current.metadata.uid != uid:
                raise NotFound(f"{namespace}/{name} with uid {uid}")
            draft = tree_copy(current)
            if draft.metadata.deletion_timestamp is None:
                draft.metadata.deletion_timestamp = now_rfc3339()
            return draft

        return self._update(ObjectKey(namespace, name), apply, finalize=True, fenced=fenced)

    def delete(self, namespace: str, name: str, expected_version: int | None = None) -> bool:
        """Remove the key now (no finalizer handling); False if it was already gone. The
        admission plug-ins' bookkeeping (quota usage) is given back in the same transaction."""
        key = ObjectKey(namespace, name)
        current = self.get_by_key(key)
        if current is None:
            return False
        if expected_version is not None and current.metadata.resource_version != expected_version:
            raise Conflict(self.etcd_key(key), expected_version, None)
        try:
            self._delete(key, current, [])
        except NotFound:
            return False
        return True

    # -- the CAS loop ------------------------------------------------------------------------

    def _raise_if_fenced(
        self, etcd_key: str, action: str, guards: Sequence[Compare], parts: TxnParts
    ) -> None:
        """The object's own compare held, so a guard or an admission compare failed. Without
        admission compares it was the fencing guard; with both, one read-only transaction on
        the guards alone tells them apart (only on this failure path)."""
        if not guards:
            return
        if parts.compares and self.client.txn(list(guards), [], []).succeeded:
            return  # the guards hold: an admission record moved; the caller tries again
        raise Fenced(f"{etcd_key}: {action} refused: the writer's fencing guard failed")

    def _admit_update(self, old: T, new: T) -> TxnParts:
        return self._admit(lambda plugin: plugin.on_update(old, new))

    def _guards(self, fenced: bool) -> builtins.list[Compare]:
        return self.status_guards() if fenced and self.status_guards else []

    def _admit(self, call: Callable[[Admission[T]], TxnParts]) -> TxnParts:
        if not self.admission:
            return NO_PARTS
        compares: builtins.list[Compare] = []
        ops: builtins.list[Op] = []
        for plugin in self.admission:
            parts = call(plugin)
            compares.extend(parts.compares)
            ops.extend(parts.ops)
        return TxnParts(compares, ops)

    def _update(
        self,
        key: ObjectKey,
        apply: Callable[[T], T],
        *,
        finalize: bool = False,
        current: T | None = None,
        fenced: bool = False,
        admit: bool = False,
        lease: int = 0,
    ) -> UpdateResult[T]:
        """`current`, when given (a cached copy), saves the read: a stale copy only costs
        one conflict, whose failed transaction returns the fresh object."""
        text = str(key)
        if current is None:
            current = self.get_by_key(key)
        if current is None:
            raise NotFound(text)
        conflicts = 0
        guards = self._guards(fenced)
        etcd_key = self.etcd_key(key)
        retrying = Retrying(
            retry=retry_if_exception_type(_Retry),
            stop=stop_after_attempt(self.max_conflict_retries),
            wait=wait_random_exponential(multiplier=0.005, max=0.5),
            reraise=False,
        )
        try:
            for attempt in retrying:
                with attempt:
                    draft = apply(current)
                    if draft == current:
                        return UpdateResult(current, False, conflicts)
                    version = current.metadata.resource_version or 0
                    if (
                        finalize
                        and draft.metadata.deletion_timestamp
                        and not draft.metadata.finalizers
                    ):
                        try:
                            self._delete(key, current, guards)
                        except _Moved as moved:
                            conflicts += 1
                            current = moved.current
                            raise _Retry() from None
                        return UpdateResult(None, True, conflicts, deleted=True)
                    raw = self.storable(text, draft)
                    parts = self._admit_update(current, draft) if admit else NO_PARTS
                    result = self.client.txn(
                        [Compare.mod_revision(etcd_key, version), *parts.compares, *guards],
                        [Op.put(etcd_key, raw, lease), *parts.ops],
                        [Op.get(etcd_key)],
                    )
                    if result.succeeded:
                        draft.metadata.resource_version = result.revision
                        return UpdateResult(draft, True, conflicts)
                    kv = _first_kv(result)
                    if kv is None:
                        raise NotFound(text)
                    if kv.mod_revision == version and not parts.compares:
                        raise Fenced(
                            f"{etcd_key}: write refused: the writer's fencing guard failed"
                        )
                    conflicts += 1
                    current = self.decode_kv(text, kv)
                    raise _Retry()
        except RetryError:
            raise TooManyConflicts(
                f"{text}: still conflicting after {self.max_conflict_retries} attempts; "
                "another writer keeps changing it — will retry later"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _delete(self, key: ObjectKey, current: T, guards: Sequence[Compare]) -> None:
        """Delete `current` if unchanged, giving back its admission bookkeeping in the same
        transaction. Raises _Moved (with the fresh object) on a conflict, NotFound if gone."""
        etcd_key = self.etcd_key(key)
        version = current.metadata.resource_version or 0
        for attempt in range(self.max_conflict_retries):
            parts = self._admit(lambda a: a.on_delete(current))
            result = self.client.txn(
                [Compare.mod_revision(etcd_key, version), *parts.compares, *guards],
                [Op.delete(etcd_key), *parts.ops],
                [Op.get(etcd_key)],
            )
            if result.succeeded:
                return
            kv = _first_kv(result)
            if kv is None:
                raise NotFound(str(key))
            if kv.mod_revision != version:
                raise _Moved(self.decode_kv(str(key), kv))
            self._raise_if_fenced(etcd_key, "delete", guards, parts)
            _backoff(attempt)
        raise TooManyConflicts(f"{key}: quota usage kept changing while deleting it; will retry")


class _Retry(Exception):
    """Internal: the CAS lost; `current` was refreshed from the failed transaction."""


class _Moved(Exception):
    def __init__(self, current: Any) -> None:
        super().__init__("moved")
        self.current = current


_jitter = random.Random()
"""Private: retries must not disturb the global RNG other code seeds."""


def _backoff(attempt: int) -> None:
    """Full jitter, 5 ms doubling to 0.5 s: creators racing for one usage record spread out
    instead of colliding again at once."""
    time.sleep(_jitter.uniform(0, min(0.5, 0.005 * 2**attempt)))


def _first_kv(result: TxnResult) -> KeyValue | None:
    """The failure branch's `get` of the object's own key (always the first response)."""
    first = result.responses[0] if result.responses else None
    return first.kvs[0] if isinstance(first, RangeResult) and first.kvs else None


def _mutated(current: T, mutate: Mutation[T]) -> T:
    draft = tree_copy(current)
    replaced = mutate(draft)
    return replaced if replaced is not None else draft


class RepositorySet:
    """One repository per kind for one etcd client and prefix, each with its kind's
    admission plug-ins and (in a controller) the owner's fencing compares.

    The controller's Manager and `labctl` both build their repositories here, so a quota
    applies to `labctl apply` exactly as to a pool creating workers."""

    def __init__(
        self,
        client: EtcdClient,
        root: str,
        *,
        guards: Callable[[], builtins.list[Compare]] | None = None,
    ) -> None:
        self.client = client
        self.root = root
        self.guards = guards
        self._repositories: dict[str, Repository[Any]] = {}
        self._admission: dict[str, builtins.list[Admission[Any]]] = {}

    def for_kind(self, kind: Kind[T]) -> Repository[T]:
        existing = self._repositories.get(kind.kind)
        if existing is None:
            existing = Repository(
                self.client,
                kind,
                self.root,
                status_guards=self.guards,
                admission=self._admission.setdefault(kind.kind, []),
            )
            self._repositories[kind.kind] = existing
        return existing

    def admit(self, kind: Kind[T], plugin: Admission[T]) -> None:
        """Run `plugin` inside every create, spec update and delete of `kind` (the kind's
        repository holds this very list, so one built earlier gets the plug-in too)."""
        self._admission.setdefault(kind.kind, []).append(plugin)

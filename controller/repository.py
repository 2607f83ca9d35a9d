"""Typed LabWorker repository over `EtcdStorageBackend`.

Every write is a compare-and-swap on the object's resourceVersion. `update_spec` and
`update_status` take a *mutate function* rather than a new object: on a conflict the failed
transaction hands back the current object, the function is applied again to that fresh copy,
and the write is retried (bounded, jittered). This is what makes concurrent writers safe: a
status writer can never overwrite a spec change it did not see, and vice versa.

Key layout: `<prefix>/lab-workers/<namespace>/<name>`; the repository's "key" for an object
is `<namespace>/<name>`, the identity used by caches and work queues.

Reads and writes apply the rules of controller.resources.limits, the same the controller's
informer applies: a read reports a value the controller would skip (too large, not JSON,
nested too deep, not a LabWorker, stored under another object's key) as InvalidObject, and a
write that would store such a value is refused (WriteRefused) before anything is sent.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from controller.resources import (
    DEFAULT_NAMESPACE,
    LabWorker,
    LabWorkerStatus,
    Phase,
    now_rfc3339,
    parse_selector,
    validation_errors,
)
from controller.resources.limits import (
    MAX_VALUE_BYTES,
    InvalidStoredValue,
    check_identity,
    decode_stored,
    oversize_detail,
    unencodable_field,
)
from controller.storage import (
    AlreadyExists,
    CasResult,
    Compare,
    Conflict,
    EtcdStorageBackend,
    KeyValue,
    NotFound,
    StorageError,
    encode_document,
)
from controller.storage.bulk import gc_paused

log = logging.getLogger("controller.repository")

RESOURCE_SEGMENT = "lab-workers"
DEFAULT_PREFIX = "/lab-resource-manager"

Mutation = Callable[[LabWorker], LabWorker | None]
"""Change the given (private) copy in place, or return a replacement; None means in place."""


class InvalidObject(StorageError):
    """The stored value breaks a rule of controller.resources.limits, so the controller skips
    it too; it is reported, never rewritten, and never deleted by name (the key may hold a
    copy of another object)."""

    def __init__(self, key: str, reason: str, detail: str) -> None:
        super().__init__(f"{key}: not a valid LabWorker ({reason}: {detail})")
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


class SpecChangeRefused(StorageError):
    """A status writer tried to change spec: the controller never writes spec."""


class TooManyConflicts(StorageError):
    """The object kept changing under us; the caller should requeue and try later."""


@dataclass(frozen=True, slots=True)
class UpdateResult:
    worker: LabWorker | None
    """The object as stored after the update (None if the update deleted it)."""
    written: bool
    """False when the mutation changed nothing, so no transaction was sent."""
    conflicts: int
    """How many CAS conflicts were retried before the write landed."""
    deleted: bool = False


def split_key(key: str) -> tuple[str, str]:
    namespace, _, name = key.rpartition("/")
    return namespace or DEFAULT_NAMESPACE, name


def workers_prefix(prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix.rstrip('/')}/{RESOURCE_SEGMENT}/"


def storable_document(key: str, worker: LabWorker) -> dict[str, Any]:
    """What to store for `worker` under `key`, checked exactly as its readers will check it.

    Raises WriteRefused naming the field and the limit. Models are not re-validated when a
    mutate function assigns to them, so this is the one check every write passes through.
    """
    return storable(key, worker)[0]


def storable(key: str, worker: LabWorker) -> tuple[dict[str, Any], bytes]:
    """`storable_document` with the encoding it checked, so the write sends those very bytes
    instead of encoding the document a second time."""
    doc = worker.to_storage_dict()
    try:
        raw = encode_document(doc)
    except UnicodeEncodeError:
        raise WriteRefused(
            key,
            "invalid-object",
            f"{unencodable_field(doc)} is not valid Unicode text (it holds a lone surrogate "
            "such as '\\ud800'), so it cannot be stored as UTF-8",
        ) from None
    if len(raw) > MAX_VALUE_BYTES:
        raise WriteRefused(key, "too-large", oversize_detail(doc, len(raw)))
    try:
        decode_stored(key, raw)
    except InvalidStoredValue as exc:
        raise WriteRefused(key, exc.reason, exc.detail) from None
    return doc, raw


def _log_invalid(err: InvalidObject) -> None:
    log.error("%s; skipping it", err)


class LabWorkerRepository:
    """Thread-safe; async twins run the blocking calls in worker threads."""

    def __init__(self, backend: EtcdStorageBackend, *, max_conflict_retries: int = 10) -> None:
        self.backend = backend
        self.max_conflict_retries = max_conflict_retries
        self.status_guards: Callable[[], list[Compare]] | None = None
        """Extra compares for every status write: a leader's fencing token (runtime.leader)."""

    @classmethod
    def for_prefix(cls, client: Any, prefix: str = DEFAULT_PREFIX) -> LabWorkerRepository:
        return cls(EtcdStorageBackend(client, workers_prefix(prefix)))

    # -- decoding ----------------------------------------------------------------------------

    def _decode_kv(self, key: str, kv: KeyValue) -> LabWorker:
        """The stored value under `key`, checked as the informer checks it."""
        try:
            worker = decode_stored(key, kv.value)
        except InvalidStoredValue as exc:
            raise InvalidObject(key, exc.reason, exc.detail) from None
        worker.metadata.resource_version = kv.mod_revision
        return worker

    def _decode(self, key: str, doc: dict[str, Any]) -> LabWorker:
        """A document the backend already parsed (a failed CAS hands one back). Its size is
        not known here; the write that follows is checked in full by storable_document."""
        try:
            worker = LabWorker.model_validate(doc)
            check_identity(key, worker)
        except ValidationError as exc:
            raise InvalidObject(
                key, "invalid-object", "; ".join(validation_errors(exc)[:5])
            ) from None
        except InvalidStoredValue as exc:
            raise InvalidObject(key, exc.reason, exc.detail) from None
        return worker

    # -- reads -------------------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> LabWorker | None:
        """The worker, or None if the key is absent. Raises InvalidObject for a value the
        controller would skip, including one copied from another object's key."""
        key = f"{namespace}/{name}"
        kv = self.backend.client.get(self.backend.prefix + key)
        return self._decode_kv(key, kv) if kv is not None else None

    def get_by_key(self, key: str) -> LabWorker | None:
        return self.get(*split_key(key))

    def list(
        self,
        namespace: str | None = None,
        selector: str | None = None,
        *,
        on_invalid: Callable[[InvalidObject], object] | None = None,
        page_size: int = 5000,
    ) -> builtins.list[LabWorker]:
        """Valid workers; each invalid one is reported to `on_invalid` (default: an error log)
        and skipped, so one bad value never hides the others."""
        parsed = parse_selector(selector) if selector else None
        report = on_invalid or _log_invalid
        prefix = self.backend.prefix
        out: builtins.list[LabWorker] = []
        invalid: builtins.list[InvalidObject] = []
        with gc_paused():
            for page, _ in self.backend.client.iter_prefix(
                prefix + (f"{namespace}/" if namespace else ""), page_size=page_size
            ):
                for kv in page:
                    try:
                        worker = self._decode_kv(kv.key[len(prefix) :], kv)
                    except InvalidObject as err:
                        invalid.append(err)
                        continue
                    if parsed is None or parsed.matches(worker.metadata.labels):
                        out.append(worker)
        for bad in invalid:
            report(bad)
        return out

    def find_by_phase(self, phase: Phase | str) -> builtins.list[LabWorker]:
        return [w for w in self.list() if w.status.phase == phase]

    def find_by_lab_track(self, lab_track: str) -> builtins.list[LabWorker]:
        return [w for w in self.list() if w.spec.lab_track == lab_track]

    # -- writes ------------------------------------------------------------------------------

    def create(self, worker: LabWorker) -> LabWorker:
        """Store a new worker: uid, creationTimestamp and generation 1 are set here.

        Raises AlreadyExists if the name is taken, WriteRefused if the object breaks a limit.
        Any status on the input is dropped.
        """
        meta = worker.metadata.model_copy(
            update={
                "uid": worker.metadata.uid or str(uuid.uuid4()),
                "creation_timestamp": now_rfc3339(),
                "generation": 1,
                "resource_version": None,
                "deletion_timestamp": None,
            }
        )
        fresh = worker.model_copy(update={"metadata": meta, "status": LabWorkerStatus()})
        key = meta.namespaced_name
        stored = self.backend.create(key, storable_document(key, fresh))
        return self._decode(key, stored)

    def update_spec(self, namespace: str, name: str, mutate: Mutation) -> UpdateResult:
        """Change spec/labels/annotations; generation is bumped only when spec changed.

        Status is never changed by this path: the status in the written object is always the
        one just read (so a user's apply never clobbers the controller's status).
        """

        def apply(current: LabWorker) -> LabWorker:
            draft = _mutated(current, mutate)
            draft.status = current.status
            draft.metadata.uid = current.metadata.uid
            draft.metadata.creation_timestamp = current.metadata.creation_timestamp
            draft.metadata.finalizers = current.metadata.finalizers
            draft.metadata.deletion_timestamp = current.metadata.deletion_timestamp
            draft.metadata.generation = current.metadata.generation
            if draft.spec != current.spec:
                draft.metadata.generation = current.metadata.generation + 1
            return draft

        return self._update(namespace, name, apply)

    def update_status(
        self, namespace: str, name: str, mutate: Mutation, *, current: LabWorker | None = None
    ) -> UpdateResult:
        """Change status and finalizers only; refuses (SpecChangeRefused) to touch spec.

        When the result has a deletionTimestamp and no finalizers left, the key is deleted
        (CAS) — the API server's garbage-collection rule.
        """

        def apply(current: LabWorker) -> LabWorker:
            draft = _mutated(current, mutate)
            if (
                draft.spec != current.spec
                or draft.metadata.generation != current.metadata.generation
            ):
                raise SpecChangeRefused(
                    f"{current.metadata.namespaced_name}: a status update tried to change spec"
                )
            return draft

        return self._update(namespace, name, apply, finalize=True, current=current, fenced=True)

    def mark_for_deletion(self, namespace: str, name: str) -> UpdateResult:
        """kubectl-delete semantics: set deletionTimestamp; delete now if no finalizers.

        With finalizers present the controller tears the worker down and removes its
        finalizer, and only then does the key disappear.
        """

        def apply(current: LabWorker) -> LabWorker:
            draft = current.model_copy(deep=True)
            if draft.metadata.deletion_timestamp is None:
                draft.metadata.deletion_timestamp = now_rfc3339()
            return draft

        return self._update(namespace, name, apply, finalize=True)

    def delete(self, namespace: str, name: str, expected_version: int | None = None) -> bool:
        """Remove the key now (no finalizer handling); False if it was already gone."""
        return self.backend.delete(f"{namespace}/{name}", expected_version)

    # -- the CAS loop ------------------------------------------------------------------------

    def _update(
        self,
        namespace: str,
        name: str,
        apply: Callable[[LabWorker], LabWorker],
        *,
        finalize: bool = False,
        current: LabWorker | None = None,
        fenced: bool = False,
    ) -> UpdateResult:
        """`current`, when given (a cached copy), saves the read: a stale copy only costs
        one conflict, whose failed transaction returns the fresh object."""
        key = f"{namespace}/{name}"
        if current is None:
            current = self.get(namespace, name)
        if current is None:
            raise NotFound(key)
        conflicts = 0
        guards = self.status_guards() if fenced and self.status_guards else []
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
                            self.backend.delete(key, version, guards=guards)
                            return UpdateResult(None, True, conflicts, deleted=True)
                        except Conflict as exc:
                            conflicts += 1
                            current = self._fresh(key, exc.current)
                            raise _Retry() from None
                    _doc, raw = storable(key, draft)
                    result = self.backend.cas(key, version, raw, guards=guards)
                    if result.succeeded:
                        draft.metadata.resource_version = result.revision
                        return UpdateResult(draft, True, conflicts)
                    conflicts += 1
                    current = self._from_cas(key, result)
                    raise _Retry()
        except RetryError:
            raise TooManyConflicts(
                f"{key}: still conflicting after {self.max_conflict_retries} attempts; "
                "another writer keeps changing it — will retry later"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _from_cas(self, key: str, result: CasResult) -> LabWorker:
        if result.current is None:
            raise NotFound(key)
        return self._decode(key, result.current)

    def _fresh(self, key: str, kv: KeyValue | None) -> LabWorker:
        if kv is None:
            raise NotFound(key)
        return self._decode_kv(key, kv)

    # -- async twins -------------------------------------------------------------------------

    async def get_by_id_async(self, key: str) -> LabWorker | None:
        return await asyncio.to_thread(self.get_by_key, key)

    async def get_async(self, namespace: str, name: str) -> LabWorker | None:
        return await asyncio.to_thread(self.get, namespace, name)

    async def list_async(
        self, namespace: str | None = None, selector: str | None = None
    ) -> builtins.list[LabWorker]:
        return await asyncio.to_thread(self.list, namespace, selector)

    async def create_async(self, worker: LabWorker) -> LabWorker:
        return await asyncio.to_thread(self.create, worker)

    async def save_async(self, worker: LabWorker) -> LabWorker:
        """Create the worker, or update its spec/labels/annotations if it exists."""
        try:
            return await self.create_async(worker)
        except AlreadyExists:
            ns, name = worker.metadata.namespace, worker.metadata.name

            def replace(current: LabWorker) -> LabWorker:
                draft = current.model_copy(deep=True)
                draft.spec = worker.spec.model_copy(deep=True)
                draft.metadata.labels = dict(worker.metadata.labels)
                draft.metadata.annotations = dict(worker.metadata.annotations)
                return draft

            result = await self.update_spec_async(ns, name, replace)
            assert result.worker is not None
            return result.worker

    async def update_spec_async(self, namespace: str, name: str, mutate: Mutation) -> UpdateResult:
        return await asyncio.to_thread(self.update_spec, namespace, name, mutate)

    async def update_status_async(
        self, namespace: str, name: str, mutate: Mutation
    ) -> UpdateResult:
        return await asyncio.to_thread(self.update_status, namespace, name, mutate)

    async def delete_async(self, key: str) -> bool:
        return await asyncio.to_thread(self.delete, *split_key(key))

    async def find_by_phase_async(self, phase: Phase | str) -> builtins.list[LabWorker]:
        return await asyncio.to_thread(self.find_by_phase, phase)

    async def find_by_lab_track_async(self, lab_track: str) -> builtins.list[LabWorker]:
        return await asyncio.to_thread(self.find_by_lab_track, lab_track)


class _Retry(Exception):
    """Internal: the CAS lost; `current` was refreshed from the failed transaction."""


def _mutated(current: LabWorker, mutate: Mutation) -> LabWorker:
    draft = current.model_copy(deep=True)
    replaced = mutate(draft)
    return replaced if replaced is not None else draft

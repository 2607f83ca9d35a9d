"""Garbage collection: a dependent whose owners are all gone is deleted (Kubernetes' garbage
collector, background propagation).

Deleting an owner (a pool) removes its key at once; its dependents (workers) are then
marked for deletion one by one, so each goes through its own finalizers — a worker's
instance is terminated before its key goes. A dependent whose owner vanished while no
controller ran is found the same way: every dependent is looked at when the cache is first
listed, and again at every resync.

`add_garbage_collector(manager, dependent, owners)` builds one leader-only controller per
dependent kind, named `gc-<plural>`. It is fed by the dependent's own events and by the
owners' DELETED events, mapped to dependents through the cache's "owner" index (owner uid →
dependents). Its reconcile asks, for every ownerReference of the dependent: does an object
of that kind, name *and uid* exist? The owner's informer cache answers first; an owner the
cache does not show is looked up again with a live (linearizable) etcd read before anything
is deleted, because caches of different kinds lag independently — a worker can be seen
before the pool that just created it. An owner re-created under the same name has a new uid
and does not keep the old one's dependents alive.

What is never collected: a dependent with at least one live owner; one with an
ownerReference to a kind this collector was not given (left alone, logged once per kind); one
whose owner's stored value cannot be read (absence is not proven). The deletion itself is a
`mark_for_deletion` with the dependent's uid as precondition, fenced like every leader
write, so a replacement of the same name is never hit.

Known limit: an owner replaced by a relist after a watch compaction (same key, new uid)
produces no DELETED event; its dependents are collected at the next resync.

Knows no kind: kinds arrive as `Kind` descriptions.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from controller.resources import Kind, ObjectKey, OwnerReference, Resource
from controller.runtime.controller import ControllerOptions
from controller.runtime.informer import EventKind, Informer, InformerEvent
from controller.runtime.record import OWNER_INDEX, Record
from controller.runtime.repository import InvalidObject, TooManyConflicts
from controller.runtime.result import ReconcileError, Result
from controller.storage import NotFound, StorageError

if TYPE_CHECKING:
    from controller.runtime.manager import Manager

log = logging.getLogger("controller.runtime.gc")

COLLECTED_REASON = "GarbageCollected"


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


class GarbageCollector:
    """The reconcile of one `gc-<plural>` controller. Stateless per key (a counter and the
    set of unknown owner kinds already logged aside), so any worker thread may run it."""

    def __init__(
        self,
        manager: Manager,
        dependent: Kind[Any],
        owners: Sequence[Kind[Any]],
        *,
        on_collected: Callable[[str], object] | None = None,
    ) -> None:
        if not owners:
            raise ValueError(f"garbage collector for {dependent.kind}: no owner kinds given")
        self.manager = manager
        self.dependent = dependent
        self.name = f"gc-{dependent.plural}"
        self._owners = {(k.group, k.kind): k for k in owners}
        self._informer: Informer[Record[Any]] = manager.informer(dependent)
        self._owner_informers = {k.kind: manager.informer(k) for k in owners}
        self._on_collected = on_collected
        self._lock = threading.Lock()
        self._unknown_logged: set[tuple[str, str]] = set()
        self.collected = 0
        """Dependents this process marked for deletion (tests, metrics)."""

    # -- event mapping -----------------------------------------------------------------------

    def dependents_of_deleted(self, event: InformerEvent[Any]) -> Iterable[ObjectKey]:
        """An owner's DELETED event → the keys of the dependents naming its uid."""
        if event.kind is not EventKind.DELETED or event.obj is None:
            return ()
        uid = getattr(event.obj, "uid", "")
        if not uid:
            return ()
        return [ObjectKey.parse(k) for k in self._informer.cache.index_keys(OWNER_INDEX, uid)]

    # -- reconcile ---------------------------------------------------------------------------

    def reconcile(self, key: ObjectKey) -> Result:
        record = self._informer.get(str(key))
        if record is None or not record.owner_uids:
            return Result.done()
        obj = record.decode()
        meta = obj.metadata
        if meta.deletion_timestamp is not None:
            return Result.done()  # already on its way out
        refs = meta.owner_references or []
        owner_kinds: list[Kind[Any]] = []
        for ref in refs:
            owner_kind = self._owners.get((_group(ref.api_version), ref.kind))
            if owner_kind is None:
                self._log_unknown_once(key, ref)
                return Result.done()
            if self._cached_owner_alive(owner_kind, key.namespace, ref):
                return Result.done()
            owner_kinds.append(owner_kind)
        # Every owner is missing from the caches; a cache may only be behind. Ask etcd.
        for owner_kind, ref in zip(owner_kinds, refs, strict=True):
            if self._live_owner_alive(owner_kind, key, ref):
                return Result.done()
        return self._collect(key, obj, refs)

    def _cached_owner_alive(self, kind: Kind[Any], namespace: str, ref: OwnerReference) -> bool:
        cached = self._owner_informers[kind.kind].get(f"{namespace}/{ref.name}")
        return cached is not None and cached.uid == ref.uid

    def _live_owner_alive(self, kind: Kind[Any], key: ObjectKey, ref: OwnerReference) -> bool:
        try:
            owner = self.manager.repository(kind).get(key.namespace, ref.name)
        except InvalidObject as exc:
            log.warning(
                "%s %s: its owner %s %s/%s cannot be read (%s); not collecting it while its "
                "owner's absence cannot be proven",
                self.dependent.kind,
                key,
                kind.kind,
                key.namespace,
                ref.name,
                exc.reason,
            )
            return True
        except StorageError as exc:
            raise ReconcileError(
                f"{self.dependent.kind} {key}: could not check its owner {kind.kind} "
                f"{key.namespace}/{ref.name} ({exc}); retrying"
            ) from exc
        return owner is not None and owner.metadata.uid == ref.uid

    def _collect(self, key: ObjectKey, obj: Resource, refs: Sequence[OwnerReference]) -> Result:
        owners = ", ".join(f"{r.kind} {key.namespace}/{r.name} (uid {r.uid})" for r in refs)
        try:
            result = self.manager.repository(self.dependent).mark_for_deletion(
                key.namespace, key.name, uid=obj.metadata.uid, fenced=True
            )
        except NotFound:
            log.debug(
                "%s %s: already gone or replaced; nothing to collect", self.dependent.kind, key
            )
            return Result.done()
        except TooManyConflicts as exc:
            raise ReconcileError(str(exc)) from exc
        except StorageError as exc:
            # Unavailable(maybe_applied) included: the retry re-reads, and marking an object
            # already marked changes nothing, so it cannot double anything.
            raise ReconcileError(
                f"{self.dependent.kind} {key}: could not mark it for deletion ({exc}); retrying"
            ) from exc
        if not result.written:
            return Result.done()  # marked already (this cache was behind): said once
        with self._lock:
            self.collected += 1
        log.info(
            "%s %s: owner %s no longer exists; deleting it (its finalizers run first)",
            self.dependent.kind,
            key,
            owners,
        )
        self.manager.recorder.event(
            obj, "Normal", COLLECTED_REASON, f"Deleting: owner {owners} no longer exists"
        )
        if self._on_collected is not None:
            self._on_collected(self.dependent.plural)
        return Result.done()

    def _log_unknown_once(self, key: ObjectKey, ref: OwnerReference) -> None:
        marker = (ref.api_version, ref.kind)
        with self._lock:
            if marker in self._unknown_logged:
                return
            self._unknown_logged.add(marker)
        log.warning(
            "%s %s: owner reference to %s %s (%s) is of a kind this garbage collector does not "
            "watch; %s objects owned by it are left alone (logged once per kind)",
            self.dependent.kind,
            key,
            ref.kind,
            ref.name,
            ref.api_version,
            self.dependent.kind,
        )


def has_owners(event: InformerEvent[Any]) -> bool:
    """Only a dependent with owner references can ever be collected: the others (most of a
    fleet of standalone workers) never enter the collector's queue."""
    return bool(getattr(event.obj, "owner_uids", ()))


def add_garbage_collector(
    manager: Manager,
    dependent: Kind[Any],
    owners: Sequence[Kind[Any]],
    *,
    workers: int = 2,
    on_collected: Callable[[str], object] | None = None,
) -> GarbageCollector:
    """Collect `dependent` objects whose every owner (of the `owners` kinds) is gone.

    Builds the leader-only controller `gc-<dependent plural>` on `manager`. `on_collected`
    is told the dependent's plural for every object marked for deletion (a metric)."""
    collector = GarbageCollector(manager, dependent, owners, on_collected=on_collected)
    builder = manager.controller(collector.name).for_(dependent, predicate=has_owners)
    for owner in owners:
        builder = builder.watches(owner, collector.dependents_of_deleted)
    builder.with_options(ControllerOptions(workers=workers)).complete(collector.reconcile)
    return collector

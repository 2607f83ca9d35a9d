"""The LabWorkerPool reconciler: count the pool's workers, plan, carry the plan out, report.

One reconcile: (a) read the pool from the cache; (b) find its workers — owned ones through
the cache's owner index, ownerless ones its selector matches (adopted first, then counted on
the next pass); (c) `plan` (controller.pool.plan, pure); (d) delete, drain, create — every
write fenced by leadership; (e) write status only when it changed; Events and logs say what
was done.

**Read your writes.** The cache lags etcd by the watch's latency, and a pool counted from a
cache that misses its own last create would create again. So every write's revision is
remembered per pool, and the next reconcile first waits for the worker informer to reach it
(`wait_for_revision`; requeued if it does not). A delete that removed the key has no revision
to wait for: its uid is remembered instead and not counted until the cache drops it.

**Unknown outcomes.** A write whose answer was lost (`Unavailable(maybe_applied=True)`) may
or may not have happened. Nothing more is written in that reconcile; the pool is requeued
with backoff and its next count comes from a fresh, linearizable etcd list of the namespace
rather than the cache. That list also fixes what the cache must catch up to before it is
trusted again. A SIGKILL is the same case seen from the next process, whose informers list
etcd before any controller runs. Either way the pool converges to exactly `replicas`.

**Refused creates.** A LabQuota refusing a create (`AdmissionRefused`) stops this round of
creates, sets `ReplicaFailure=True` (QuotaExceeded), records a Warning Event, and no create is
tried again before an exponential backoff (0.5 s doubling to 30 s) has passed, however many
worker events requeue the pool meanwhile: no crash loop, no write storm. Draining and
deleting go on.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from controller.labworker.kind import LABWORKER
from controller.labworker.model import LabWorker
from controller.labworker.phase import DesiredPhase
from controller.observability.logging import get_logger
from controller.pool.kind import POOL
from controller.pool.model import LabWorkerPool, ScaleDownPolicy
from controller.pool.plan import Plan, WorkerView, plan
from controller.pool.status import (
    CREATE_FAILED,
    QUOTA_EXCEEDED,
    CreateFailure,
    next_status,
)
from controller.pool.template import is_current, new_worker, template_hash, worker_name
from controller.resources import ObjectKey, OwnerReference, Selector, now_rfc3339
from controller.resources.selector import Operator
from controller.runtime.clock import SYSTEM_CLOCK, Clock
from controller.runtime.informer import EventKind, InformerEvent
from controller.runtime.record import LABEL_INDEX, OWNER_INDEX, Record
from controller.runtime.repository import (
    AdmissionRefused,
    InvalidObject,
    TooManyConflicts,
    WriteRefused,
)
from controller.runtime.result import ReconcileError, Result, TerminalError
from controller.storage import AlreadyExists, NotFound, StorageError, Unavailable

if TYPE_CHECKING:
    from controller.runtime.manager import Manager

log = get_logger("controller.pool.reconciler")

BACKOFF_BASE = 0.5
BACKOFF_MAX = 30.0
REVISION_WAIT = 2.0
"""How long a reconcile waits for the cache to show its pool's last write before requeueing."""
MAX_CREATES_PER_RECONCILE = 100
"""A pool of thousands fills in several short reconciles rather than one long one."""
NAME_ATTEMPTS = 5
MIN_REQUEUE = 0.05
"""Result.after(0) would mean "done": a requeue that must happen waits at least this."""


@dataclass
class _Memory:
    """What a pool's reconciles remember between them (one pool, one worker at a time)."""

    uid: str
    expect_revision: int = 0
    """The worker cache must reach this revision before it is counted."""
    gone: set[str] = field(default_factory=set)
    """Uids of workers deleted by this controller that the cache may still show."""
    recount: bool = False
    """A write's outcome is unknown: count from etcd, not the cache, next time."""
    failures: int = 0
    """Consecutive refused or unknown-outcome writes (the backoff exponent)."""
    not_before: float = 0.0
    """No create (and no recount) before this time on the reconciler's clock."""
    failure: CreateFailure | None = None
    """Why the last round of creates stopped, while it stays unresolved."""


class _Stop(Exception):
    """A write's outcome is unknown or was refused: nothing more this reconcile."""


@dataclass
class _Done:
    """What one reconcile carried out (for its Events and log lines)."""

    created: list[str] = field(default_factory=list)
    drained: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)


def _labels_of(record: Record[Any]) -> dict[str, str]:
    return dict(label.split("=", 1) for label in record.labels)


def _view(worker: LabWorker, pool: LabWorkerPool, hash_: str) -> WorkerView:
    meta, status = worker.metadata, worker.status
    return WorkerView(
        name=meta.name,
        uid=meta.uid or "",
        phase=status.phase,
        hosted_labs=status.hosted_labs,
        current=is_current(worker, pool.spec.template, hash_),
        retired=worker.spec.desired_phase is DesiredPhase.TERMINATED,
        deleting=meta.deletion_timestamp is not None,
        created=meta.creation_timestamp or "",
    )


class PoolReconciler:
    def __init__(
        self,
        manager: Manager,
        *,
        clock: Clock = SYSTEM_CLOCK,
        name_choice: Callable[[str], str] = secrets.choice,
    ) -> None:
        self.manager = manager
        self.clock = clock
        self.name_choice = name_choice
        self.pools = manager.informer(POOL)
        self.workers = manager.informer(LABWORKER)
        self.pool_repo = manager.repository(POOL)
        self.worker_repo = manager.repository(LABWORKER)
        self._memory: dict[ObjectKey, _Memory] = {}
        self._selectors: dict[str, tuple[int, Selector]] = {}
        self._lock = threading.Lock()

    # -- event mapping -----------------------------------------------------------------------

    def pools_for_orphan(self, event: InformerEvent[Record[Any]]) -> list[ObjectKey]:
        """A worker event → the pools that could adopt it (no controller, labels match)."""
        record = event.obj
        if record is None or record.controller is not None or event.kind is EventKind.DELETED:
            return []
        namespace = ObjectKey.parse(event.key).namespace
        labels = _labels_of(record)
        keys = []
        for pool_key in self.pools.cache.keys():  # noqa: SIM118 - an Indexer, not a dict
            if ObjectKey.parse(pool_key).namespace != namespace:
                continue
            pool_record = self.pools.get(pool_key)
            if pool_record is not None and self._selector(pool_record).matches(labels):
                keys.append(ObjectKey.parse(pool_key))
        return keys

    def _selector(self, record: Record[Any]) -> Selector:
        """A cached pool's selector, parsed once per revision of the pool."""
        cached = self._selectors.get(record.uid)
        if cached is not None and cached[0] == record.revision:
            return cached[1]
        pool: LabWorkerPool = record.decode()
        selector = pool.spec.label_selector()
        with self._lock:
            if len(self._selectors) > 10_000:
                self._selectors.clear()
            self._selectors[record.uid] = (record.revision, selector)
        return selector

    # -- reconcile ---------------------------------------------------------------------------

    def reconcile(self, key: ObjectKey) -> Result:
        record = self.pools.get(str(key))
        if record is None:
            with self._lock:
                self._memory.pop(key, None)
            return Result.done()
        pool = record.decode()
        if pool.metadata.deletion_timestamp is not None:
            return Result.done()  # the garbage collector takes its workers
        memory = self._memory_for(key, pool)
        now = self.clock.now()
        if memory.recount:
            if now < memory.not_before:
                return Result.after(memory.not_before - now)
            owned, orphans = self._list_fresh(pool, memory)
        else:
            if not self._caught_up(key, memory):
                # Rate-limited (backing off per pool) while the watch is behind; a worker
                # event still brings the pool back at once.
                return Result(requeue=True)
            owned, orphans = self._list_cached(pool, memory)
        if orphans:
            self._adopt(key, pool, orphans, memory)
            return Result.done()  # the adopted workers' events bring the pool back

        hash_ = template_hash(pool.spec.template)
        spec = pool.spec
        the_plan = plan(
            [_view(w, pool, hash_) for w in owned],
            spec.replicas,
            spec.max_unavailable,
            spec.scale_down is ScaleDownPolicy.FORCE,
        )
        done = _Done()
        result = Result.done()
        try:
            result = self._carry_out(key, pool, the_plan, hash_, memory, done)
        except _Stop:
            result = Result.after(max(MIN_REQUEUE, memory.not_before - self.clock.now()))
        finally:
            self._report(key, pool, the_plan, done)
        self._write_status(key, pool, the_plan, memory)
        return result

    # -- counting ----------------------------------------------------------------------------

    def _memory_for(self, key: ObjectKey, pool: LabWorkerPool) -> _Memory:
        uid = pool.metadata.uid or ""
        with self._lock:
            memory = self._memory.get(key)
            if memory is None or memory.uid != uid:  # a new pool under an old name
                memory = self._memory[key] = _Memory(uid)
            return memory

    def _caught_up(self, key: ObjectKey, memory: _Memory) -> bool:
        wanted = memory.expect_revision
        if not wanted or self.workers.revision >= wanted:
            return True
        if self.workers.wait_for_revision(wanted, REVISION_WAIT):
            return True
        log.info(
            "pool waiting for its own writes to reach the cache",
            pool=str(key),
            revision=wanted,
            cache_revision=self.workers.revision,
        )
        return False

    def _list_cached(
        self, pool: LabWorkerPool, memory: _Memory
    ) -> tuple[list[LabWorker], list[LabWorker]]:
        uid = pool.metadata.uid or ""
        records = self.workers.cache.by_index(OWNER_INDEX, uid)
        memory.gone &= {r.uid for r in records}  # the cache dropped the others: forget them
        owned = [
            r.decode()
            for r in records
            if r.controller is not None and r.controller.uid == uid and r.uid not in memory.gone
        ]
        selector = pool.spec.label_selector()
        orphans = []
        for candidate in self._candidates(pool.metadata.namespace, selector):
            record = self.workers.get(candidate)
            if (
                record is not None
                and record.controller is None
                and selector.matches(_labels_of(record))
            ):
                worker = record.decode()
                if worker.metadata.deletion_timestamp is None:
                    orphans.append(worker)
        return owned, orphans

    def _candidates(self, namespace: str, selector: Selector) -> list[str]:
        """Keys of cached workers in `namespace` that may match: through the label index when
        the selector has an equality, else every cached key."""
        keys: list[str] | None = None
        for requirement in selector.requirements:
            if requirement.operator in (Operator.EQUALS, Operator.IN):
                keys = []
                for value in requirement.values:
                    keys += self.workers.cache.index_keys(LABEL_INDEX, f"{requirement.key}={value}")
                break
        if keys is None:
            keys = self.workers.cache.keys()
        prefix = f"{namespace}/"
        return [k for k in keys if k.startswith(prefix)]

    def _list_fresh(
        self, pool: LabWorkerPool, memory: _Memory
    ) -> tuple[list[LabWorker], list[LabWorker]]:
        """The namespace's workers from etcd itself, after a write with an unknown outcome."""
        namespace = pool.metadata.namespace
        try:
            listed = self.worker_repo.list(namespace)
        except StorageError as exc:
            raise ReconcileError(
                f"LabWorkerPool {namespace}/{pool.metadata.name}: could not list its workers "
                f"from etcd ({exc}); retrying"
            ) from exc
        uid = pool.metadata.uid or ""
        selector = pool.spec.label_selector()
        owned, orphans = [], []
        for worker in listed:
            ref = worker.metadata.controller_ref()
            if ref is not None and ref.uid == uid:
                owned.append(worker)
            elif (
                ref is None
                and worker.metadata.deletion_timestamp is None
                and selector.matches(worker.metadata.labels)
            ):
                orphans.append(worker)
        # The cache may be behind this list: it must show every listed worker as listed, and
        # what it still shows but etcd no longer has is gone.
        revisions = [w.metadata.resource_version or 0 for w in listed]
        memory.expect_revision = max([memory.expect_revision, *revisions])
        present = {w.metadata.uid for w in owned}
        memory.gone |= {r.uid for r in self.workers.cache.by_index(OWNER_INDEX, uid)} - {
            u for u in present if u
        }
        memory.recount = False
        log.info(
            "pool recounted its workers from etcd",
            pool=f"{namespace}/{pool.metadata.name}",
            owned=len(owned),
            orphans=len(orphans),
        )
        return owned, orphans

    # -- adoption ----------------------------------------------------------------------------

    def _adopt(
        self, key: ObjectKey, pool: LabWorkerPool, orphans: list[LabWorker], memory: _Memory
    ) -> None:
        selector = pool.spec.label_selector()
        reference = OwnerReference.model_validate(POOL.owner_ref(pool))
        for orphan in orphans:
            uid = orphan.metadata.uid

            def adopt(worker: LabWorker, uid: str | None = uid) -> None:
                meta = worker.metadata
                if (
                    meta.uid != uid
                    or meta.controller_ref() is not None
                    or meta.deletion_timestamp is not None
                    or not selector.matches(meta.labels)
                ):
                    return  # changed since it was listed: leave it
                meta.owner_references = [*(meta.owner_references or []), reference]

            name = orphan.metadata.name
            try:
                result = self.worker_repo.update_status(key.namespace, name, adopt)
            except NotFound:
                continue
            except Unavailable as exc:
                if exc.maybe_applied:
                    self._unknown_outcome(key, memory, f"adopting {name}", exc)
                raise ReconcileError(
                    f"LabWorkerPool {key}: adopting {name} failed ({exc})"
                ) from exc
            except (TooManyConflicts, StorageError) as exc:
                raise ReconcileError(
                    f"LabWorkerPool {key}: adopting {name} failed ({exc})"
                ) from exc
            if result.written and result.object is not None:
                self._remember(memory, result.object)
                log.info("pool adopted worker", pool=str(key), worker=name)
                self.manager.recorder.event(
                    pool, "Normal", "Adopted", f"Adopted worker {name}: it matches the selector"
                )

    # -- carrying the plan out ---------------------------------------------------------------

    def _carry_out(
        self,
        key: ObjectKey,
        pool: LabWorkerPool,
        the_plan: Plan,
        hash_: str,
        memory: _Memory,
        done: _Done,
    ) -> Result:
        for view in the_plan.finish:
            if self._delete(key, view, memory):
                done.finished.append(view.name)
        for view in the_plan.remove:
            if self._delete(key, view, memory):
                done.removed.append(view.name)
        for view in the_plan.drain:
            if self._drain(key, view, memory):
                done.drained.append(view.name)
        if not the_plan.create:
            memory.failure = None
            memory.failures = 0
            return Result.done()
        now = self.clock.now()
        if memory.failure is not None and now < memory.not_before:
            return Result.after(memory.not_before - now)  # backing off after a refusal
        wanted = min(the_plan.create, MAX_CREATES_PER_RECONCILE)
        for _ in range(wanted):
            done.created.append(self._create(key, pool, hash_, memory))
        memory.failure = None
        memory.failures = 0
        if the_plan.create > wanted:
            return Result.after(MIN_REQUEUE)  # more to create, once the cache shows these
        return Result.done()

    def _create(self, key: ObjectKey, pool: LabWorkerPool, hash_: str, memory: _Memory) -> str:
        for _ in range(NAME_ATTEMPTS):
            name = worker_name(pool.metadata.name, self.name_choice)
            try:
                created = self.worker_repo.create(new_worker(pool, name, hash_), fenced=True)
            except AlreadyExists:
                continue  # a generated name taken (1 in 14 million): draw another
            except AdmissionRefused as exc:
                self._refused(key, pool, memory, CreateFailure(QUOTA_EXCEEDED, str(exc)))
                raise _Stop() from exc
            except WriteRefused as exc:
                self._refused(key, pool, memory, CreateFailure(CREATE_FAILED, str(exc)))
                raise _Stop() from exc
            except StorageError as exc:
                self._write_failed(key, memory, f"creating {name}", exc)
            self._remember(memory, created)
            return name
        raise ReconcileError(
            f"LabWorkerPool {key}: {NAME_ATTEMPTS} generated worker names were all taken"
        )

    def _drain(self, key: ObjectKey, view: WorkerView, memory: _Memory) -> bool:
        def retire(worker: LabWorker) -> None:
            if worker.metadata.uid != view.uid:
                raise NotFound(f"{key.namespace}/{view.name} with uid {view.uid}")
            worker.spec.desired_phase = DesiredPhase.TERMINATED

        try:
            result = self.worker_repo.update_spec(key.namespace, view.name, retire, fenced=True)
        except NotFound:
            return False
        except StorageError as exc:
            self._write_failed(key, memory, f"draining {view.name}", exc)
        if result.object is not None:
            self._remember(memory, result.object)
        return result.written

    def _delete(self, key: ObjectKey, view: WorkerView, memory: _Memory) -> bool:
        try:
            result = self.worker_repo.mark_for_deletion(
                key.namespace, view.name, uid=view.uid, fenced=True
            )
        except NotFound:
            memory.gone.add(view.uid)
            return False
        except InvalidObject as exc:
            raise TerminalError(f"LabWorkerPool {key}: {exc}") from exc
        except StorageError as exc:
            self._write_failed(key, memory, f"deleting {view.name}", exc)
        if result.deleted:
            memory.gone.add(view.uid)
        elif result.object is not None:
            self._remember(memory, result.object)
        return result.written

    def _write_failed(
        self, key: ObjectKey, memory: _Memory, what: str, exc: StorageError
    ) -> NoReturn:
        """A worker write failed. Its outcome unknown: stop writing and recount from etcd
        after a backoff (_Stop). Otherwise it surely did not happen: retry the pool with
        the queue's backoff (ReconcileError)."""
        if isinstance(exc, Unavailable) and exc.maybe_applied:
            self._unknown_outcome(key, memory, what, exc)
            raise _Stop() from exc
        raise ReconcileError(f"LabWorkerPool {key}: {what} failed ({exc})") from exc

    def _remember(self, memory: _Memory, worker: LabWorker) -> None:
        memory.expect_revision = max(memory.expect_revision, worker.metadata.resource_version or 0)

    def _backoff(self, memory: _Memory) -> float:
        memory.failures += 1
        delay = min(BACKOFF_MAX, BACKOFF_BASE * 2.0 ** (memory.failures - 1))
        memory.not_before = self.clock.now() + delay
        return delay

    def _unknown_outcome(self, key: ObjectKey, memory: _Memory, what: str, exc: Exception) -> None:
        delay = self._backoff(memory)
        memory.recount = True
        log.warning(
            "pool write outcome unknown; recounting from etcd before writing again",
            pool=str(key),
            write=what,
            error=str(exc),
            retry_in=round(delay, 2),
        )

    def _refused(
        self, key: ObjectKey, pool: LabWorkerPool, memory: _Memory, failure: CreateFailure
    ) -> None:
        delay = self._backoff(memory)
        # One Event per episode: the refusal names the worker being created, so its text
        # changes with every attempt while the cause does not.
        repeated = memory.failure is not None and memory.failure.reason == failure.reason
        memory.failure = failure
        log.warning(
            "pool worker creation refused",
            pool=str(key),
            replicas=pool.spec.replicas,
            reason=failure.reason,
            refusal=failure.message,
            retry_in=round(delay, 2),
        )
        if not repeated:
            self.manager.recorder.event(
                pool,
                "Warning",
                failure.reason,
                f"Cannot create a worker: {failure.message}; retrying with backoff",
            )

    # -- reporting ---------------------------------------------------------------------------

    def _report(self, key: ObjectKey, pool: LabWorkerPool, the_plan: Plan, done: _Done) -> None:
        """Events and log lines for what this reconcile did (not for what it planned)."""
        recorder = self.manager.recorder
        before = the_plan.counts.replicas
        replicas = pool.spec.replicas
        pool_name = str(key)
        taken_out = [*done.drained, *done.removed]
        after = before + len(done.created) - len(taken_out)
        if the_plan.rolling and (done.created or taken_out):
            message = (
                f"Rolling update: created {len(done.created)} updated worker(s)"
                f"{_names(done.created)}, retiring {len(taken_out)} outdated or surplus "
                f"worker(s){_names(taken_out)}; {the_plan.counts.updated} of {replicas} updated"
            )
            log.info(
                "pool rolling update step",
                pool=pool_name,
                replicas=replicas,
                created=done.created,
                draining=done.drained,
                deleting=done.removed,
                updated=the_plan.counts.updated,
                outdated=the_plan.outdated,
            )
            recorder.event(pool, "Normal", "RollingUpdate", message)
        else:
            if done.created:
                log.info(
                    "pool scaled up",
                    pool=pool_name,
                    replicas=replicas,
                    created=done.created,
                    **{"from": before, "to": after},
                )
                recorder.event(
                    pool,
                    "Normal",
                    "ScaledUp",
                    f"Scaled up from {before} to {after} workers: created "
                    f"{len(done.created)}{_names(done.created)}",
                )
            if taken_out:
                log.info(
                    "pool scaled down",
                    pool=pool_name,
                    replicas=replicas,
                    draining=done.drained,
                    deleting=done.removed,
                    **{"from": before, "to": after},
                )
                recorder.event(
                    pool,
                    "Normal",
                    "ScaledDown",
                    f"Scaled down from {before} to {after} workers: draining "
                    f"{len(done.drained)}{_names(done.drained)}, deleting {len(done.removed)}"
                    f"{_names(done.removed)}",
                )
        if done.finished:
            log.info("pool deleted retired workers", pool=pool_name, workers=done.finished)
            recorder.event(
                pool,
                "Normal",
                "WorkerDeleted",
                f"Deleted {len(done.finished)} retired worker(s){_names(done.finished)}: "
                "drained and terminated, or never started",
            )

    def _write_status(
        self, key: ObjectKey, pool: LabWorkerPool, the_plan: Plan, memory: _Memory
    ) -> None:
        spec = pool.spec
        now = now_rfc3339()

        def update(fresh: LabWorkerPool) -> None:
            if fresh.metadata.uid != pool.metadata.uid:
                return
            fresh.status = next_status(
                fresh.status,
                the_plan,
                replicas=spec.replicas,
                max_unavailable=spec.max_unavailable,
                generation=pool.metadata.generation,
                failure=memory.failure,
                now=now,
            )

        try:
            self.pool_repo.update_status(key.namespace, key.name, update, current=pool)
        except NotFound:
            return
        except StorageError as exc:
            # The next reconcile computes it again; nothing was lost but a report.
            log.warning("pool status not written", pool=str(key), error=str(exc))


def _names(names: list[str], limit: int = 5) -> str:
    if not names:
        return ""
    shown = ", ".join(names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f" ({shown}{more})"

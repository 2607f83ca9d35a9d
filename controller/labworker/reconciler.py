"""The LabWorker reconciler: read, observe, decide, write once.

(a) read the worker from the informer cache; (b) observe: the provider calls its phase
needs (`observation.py`, the only side effects); (c) decide: the pure `decide`; (d) write
status and finalizers through one CAS. If the CAS loses, the repository hands the fresh
object back and `decide` runs again on it with the *same* observation; if that object has
moved to another phase or generation meanwhile, the observation no longer applies, nothing
is written and the key is looked at again shortly.

Transient provider errors are raised as ReconcileError without writing status (the manager
backs off per key), so an outage does not become a write storm. Fatal ones are recorded as
phase Failed and the key is not retried until the worker changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from opentelemetry import trace

from controller.labworker.decide import Decision, decide
from controller.labworker.model import LabWorker
from controller.labworker.observation import Observation, observe
from controller.labworker.phase import Phase
from controller.labworker.policy import (
    DEFAULT_INTERVALS,
    DEFAULT_TIMEOUTS,
    Intervals,
    PhaseTimeouts,
)
from controller.labworker.provider import LabProvider
from controller.resources import ObjectKey
from controller.runtime.controller import NOOP_RECONCILE_METRICS, ReconcileMetrics
from controller.runtime.recorder import NOOP_RECORDER, Recorder
from controller.runtime.repository import (
    InvalidObject,
    Repository,
    TooManyConflicts,
    WriteRefused,
)
from controller.runtime.result import ReconcileError, Result, TerminalError
from controller.storage import NotFound, StorageError

log = logging.getLogger("controller.labworker.reconciler")

Reader = Callable[[ObjectKey], LabWorker | None]


def utc_now() -> datetime:
    return datetime.now(UTC)


class LabWorkerReconciler:
    """Stateless between calls, so one instance serves every worker thread; the workqueue
    guarantees that one key is never reconciled by two threads at once."""

    def __init__(
        self,
        repository: Repository[LabWorker],
        provider: LabProvider,
        *,
        reader: Reader | None = None,
        timeouts: PhaseTimeouts = DEFAULT_TIMEOUTS,
        intervals: Intervals = DEFAULT_INTERVALS,
        now: Callable[[], datetime] = utc_now,
        metrics: ReconcileMetrics = NOOP_RECONCILE_METRICS,
        controller: str = "labworker",
        recorder: Recorder = NOOP_RECORDER,
    ) -> None:
        """`metrics.cas_conflict(controller, n)` counts the CAS conflicts a status write
        retried; `recorder` gets an Event for every phase change, failure and provider retry."""
        self.repository = repository
        self.provider = provider
        self.reader: Reader = reader if reader is not None else repository.get_by_key
        self.timeouts = timeouts
        self.intervals = intervals
        self.now = now
        self.metrics = metrics
        self.controller = controller
        self.recorder = recorder

    def __call__(self, key: ObjectKey) -> Result:
        return self.reconcile(key)

    def reconcile(self, key: ObjectKey) -> Result:
        worker = self._read(key)
        if worker is None:
            log.debug("LabWorker %s: gone; nothing to reconcile", key)
            return Result.done()

        span = trace.get_current_span()
        phase = worker.status.phase.value if worker.status.phase else "new"
        span.set_attribute("labctl.phase.before", phase)
        span.set_attribute("labctl.generation", worker.metadata.generation)
        structlog.contextvars.bind_contextvars(
            phase=phase,
            generation=worker.metadata.generation,
            resourceVersion=worker.metadata.resource_version,
        )
        observation = observe(self.provider, worker)
        now = self.now()
        decision = self._decide(worker, observation, now)

        if not decision.changed:
            if observation.transient_error is not None and not decision.stale:
                self._record_retry(worker, observation.transient_error)
                raise ReconcileError(
                    f"LabWorker {key} ({worker.status.phase or 'new'}): provider call failed "
                    f"transiently: {observation.transient_error}; status unchanged, "
                    "retrying with backoff"
                )
            log.debug("LabWorker %s: no change (%s)", key, decision.summary)
            return self._result(decision)

        return self._write(key, worker, observation, now, decision)

    # -- steps -----------------------------------------------------------------------------

    def _read(self, key: ObjectKey) -> LabWorker | None:
        try:
            return self.reader(key)
        except InvalidObject as exc:
            raise TerminalError(
                f"{exc}; the controller leaves it untouched until it is fixed"
            ) from exc
        except StorageError as exc:
            raise ReconcileError(f"LabWorker {key}: could not read it ({exc}); retrying") from exc

    def _decide(self, worker: LabWorker, observation: Observation, now: datetime) -> Decision:
        return decide(worker, observation, now, self.timeouts, self.intervals)

    def _write(
        self,
        key: ObjectKey,
        worker: LabWorker,
        observation: Observation,
        now: datetime,
        first: Decision,
    ) -> Result:
        namespace, name = key
        applied: list[tuple[Phase | None, Decision]] = []

        def mutate(fresh: LabWorker) -> None:
            # The first attempt works on a copy of `worker`, already decided; only the fresh
            # object a lost CAS hands back needs a new decision.
            unchanged = fresh.metadata.resource_version == worker.metadata.resource_version
            decision = first if unchanged else self._decide(fresh, observation, now)
            applied.append((fresh.status.phase, decision))
            if decision.changed:
                # The decision's status is its own (decide builds it on a private copy) and
                # nothing changes it after this, so it is handed over rather than copied.
                fresh.status = decision.status
                fresh.metadata.finalizers = list(decision.finalizers)

        try:
            update = self.repository.update_status(namespace, name, mutate, current=worker)
        except NotFound:
            log.info("LabWorker %s: deleted while being reconciled; nothing more to do", key)
            return Result.done()
        except TooManyConflicts as exc:
            raise ReconcileError(str(exc)) from exc
        except WriteRefused as exc:
            # The same object would be refused again: retrying cannot help until it changes.
            self.recorder.event(worker, "Warning", "StatusWriteRefused", str(exc))
            raise TerminalError(
                f"LabWorker {key}: status write refused ({exc}); not retried until the "
                "worker changes"
            ) from exc
        except StorageError as exc:
            raise ReconcileError(
                f"LabWorker {key}: status write failed ({exc}); will retry with backoff"
            ) from exc

        if update.conflicts:
            self.metrics.cas_conflict(self.controller, update.conflicts)
        previous_phase, decision = applied[-1]
        span = trace.get_current_span()
        span.set_attribute("labctl.conflict.retries", update.conflicts)
        span.set_attribute("labctl.phase.after", decision.phase.value if decision.phase else "none")
        if decision.stale:
            log.debug("LabWorker %s: %s", key, decision.summary)
        elif update.deleted:
            log.info("LabWorker %s: %s; removed from etcd", key, decision.summary)
            return Result.done()
        elif update.written:
            self._log_written(key, previous_phase, decision, update.conflicts)
            self._record_written(worker, previous_phase, decision)
            if (
                decision.requeue_after is not None
                and decision.requeue_after <= self.intervals.next_step
            ):
                # Our own write comes back as a watch event that requeues the key once the
                # cache holds it; a timer now would race it and reconcile a stale copy.
                return Result.done()
        if observation.transient_error is not None and not decision.changed and not decision.stale:
            self._record_retry(worker, observation.transient_error)
            raise ReconcileError(
                f"LabWorker {key}: provider call failed transiently: "
                f"{observation.transient_error}; retrying with backoff"
            )
        return self._result(decision)

    def _log_written(
        self, key: ObjectKey, previous: Phase | None, decision: Decision, conflicts: int
    ) -> None:
        retried = f" (after {conflicts} write conflicts)" if conflicts else ""
        fields = {
            "from_phase": previous.value if previous else "new",
            "to_phase": decision.phase.value if decision.phase else "none",
            "conflicts": conflicts,
        }
        if decision.phase is Phase.FAILED and previous is not Phase.FAILED:
            retry_in = self.intervals.teardown_retry if previous is Phase.TERMINATING else None
            next_step = (
                f"teardown is retried in {retry_in:g}s"
                if retry_in is not None
                else "not retried until its spec changes or it is deleted"
            )
            log.warning(
                "LabWorker %s: %s%s; %s",
                key,
                decision.summary,
                retried,
                next_step,
                extra={"event": "phase_failed", "retry_in": retry_in, **fields},
            )
        elif decision.phase != previous:
            log.info(
                "LabWorker %s: %s%s",
                key,
                decision.summary,
                retried,
                extra={"event": "phase_changed", **fields},
            )
        else:
            log.debug(
                "LabWorker %s: status updated: %s%s",
                key,
                decision.summary,
                retried,
                extra={"event": "status_updated", **fields},
            )

    def _record_written(
        self, worker: LabWorker, previous: Phase | None, decision: Decision
    ) -> None:
        """One Event per phase change, named after the phase entered (kubectl describe shows
        the worker's story); a failure is a Warning."""
        if decision.phase is None or decision.phase == previous:
            return
        warning = decision.phase is Phase.FAILED
        self.recorder.event(
            worker, "Warning" if warning else "Normal", decision.phase.value, decision.summary
        )

    def _record_retry(self, worker: LabWorker, error: str) -> None:
        # Identical retries aggregate into one Event whose count grows.
        self.recorder.event(
            worker, "Warning", "ProviderError", f"provider call failed transiently: {error}"
        )

    def _result(self, decision: Decision) -> Result:
        if decision.requeue_after is None:
            return Result.done()
        return Result.after(max(decision.requeue_after, self.intervals.next_step))

"""Controller: events from its sources → workqueue of ObjectKeys → N worker threads → reconcile.

Sources are informers with a mapping from an event to the keys to reconcile (the builder
makes them: the object's own key for `for_`, its controller owner's key for `owns`, any
function for `watches`), so one controller can be fed by several kinds and several
controllers can share one informer.

controller-runtime's semantics: a key queued many times is reconciled once; a key is never
reconciled by two workers at once; what users wrote is reconciled before background work
(initial list, resync, the controller's own status writes) without starving it; failures retry with per-key exponential backoff under an
overall rate limit; `Result.after(s)` requeues after a delay; a `TerminalError` is recorded
and not retried. An exception that escapes a reconcile ("panic") is logged with the key,
counted and retried: it never kills a worker thread.

Every reconcile runs in a span (`reconcile <Kind>`) carrying the key, the attempt and the
etcd revision of the change that queued it (`labctl.*` attributes), linked to the trace of
the write that queued it when the writer recorded one in the object (the traceparent
annotation), and with the key bound into the log context so every log line inside it names
its object and leads to its trace (docs/architecture.md, Observability).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from controller.observability.propagation import link_to_writer
from controller.resources import ObjectKey
from controller.runtime.informer import EventKind, Informer, InformerEvent
from controller.runtime.result import ReconcileError, Result, TerminalError
from controller.runtime.workqueue import (
    NOOP_WORKQUEUE_METRICS,
    Priority,
    PriorityQueue,
    RateLimiter,
    RateLimitingQueue,
    ShutDown,
    WorkqueueMetrics,
    default_controller_rate_limiter,
)
from controller.storage import StorageError

log = logging.getLogger("controller.runtime.controller")
tracer = trace.get_tracer("controller.runtime")

ReconcileFn = Callable[[ObjectKey], Result]
EventMapper = Callable[[InformerEvent[Any]], Iterable[ObjectKey]]
"""Which keys of the controller's own kind an event on a watched informer concerns."""


class ReconcileMetrics(Protocol):
    """What a controller reports, labelled by controller (controller-runtime's names, plus
    CAS conflicts retried and side effects refused by fencing). `ControllerMetrics`
    (observability) implements it; the default does nothing."""

    def register_controller(self, controller: str, max_concurrent_reconciles: int) -> None: ...
    def reconcile_finished(
        self, controller: str, result: str, seconds: float, trace_id: str | None = None
    ) -> None:
        """`trace_id`: the reconcile span's (32 hex digits), kept as the exemplar."""

    def reconcile_panic(self, controller: str) -> None: ...
    def terminal_error(self, controller: str) -> None: ...
    def active_workers_inc(self, controller: str) -> None: ...
    def active_workers_dec(self, controller: str) -> None: ...
    def cas_conflict(self, controller: str, count: int = 1) -> None: ...
    def provider_call_refused(self, controller: str, call: str) -> None: ...


class NoopReconcileMetrics:
    def register_controller(self, controller: str, max_concurrent_reconciles: int) -> None: ...
    def reconcile_finished(
        self, controller: str, result: str, seconds: float, trace_id: str | None = None
    ) -> None: ...
    def reconcile_panic(self, controller: str) -> None: ...
    def terminal_error(self, controller: str) -> None: ...
    def active_workers_inc(self, controller: str) -> None: ...
    def active_workers_dec(self, controller: str) -> None: ...
    def cas_conflict(self, controller: str, count: int = 1) -> None: ...
    def provider_call_refused(self, controller: str, call: str) -> None: ...


NOOP_RECONCILE_METRICS: ReconcileMetrics = NoopReconcileMetrics()


class KeyOwnership(Protocol):
    """Whether this replica may reconcile a key now (sharding: docs/architecture.md)."""

    def claim(self, key: ObjectKey) -> AbstractContextManager[bool]:
        """Enter around a reconcile: True = go ahead (and the key counts as in flight until
        exit); False = the key is not this replica's now: drop it (its owner reconciles it)."""
        ...


ReconcileObserver = Callable[[str, ObjectKey, int, int], None]
"""(controller, key, start ns, end ns) on CLOCK_MONOTONIC, which all processes of a host
share: lets a test record histories across replicas and check that no key was reconciled by
two at once."""


@dataclass
class ControllerOptions:
    workers: int = 8
    base_delay: float = 0.1
    """First retry delay of a failing key; doubles per failure up to `max_delay`."""
    max_delay: float = 300.0
    qps: float = 50.0
    """Overall retry rate limit (token bucket), shared by all keys."""
    burst: int = 300
    stuck_after: float = 600.0
    """A reconcile running longer than this makes the controller report itself unhealthy."""
    priority_queue: bool = True
    """Reconcile users' changes before background work; False: one FIFO queue."""
    priority_aging: float = 5.0
    """Background work waiting longer than this is served alternately with users' changes."""
    singleton: bool = False
    """With sharding: run only on the elected leader over ALL keys (quota bookkeeping), instead
    of on every replica over its shards."""
    metrics: ReconcileMetrics = NOOP_RECONCILE_METRICS
    workqueue_metrics: WorkqueueMetrics = NOOP_WORKQUEUE_METRICS


def own_key(event: InformerEvent[Any]) -> Iterable[ObjectKey]:
    """`for_`: the object's own key."""
    return (ObjectKey.parse(event.key),)


def event_priority(event: InformerEvent[Any]) -> Priority | None:
    """HIGH for what a user wrote, LOW for work that can wait (docs/architecture.md, Work
    queue): the initial list and resyncs hand over every object again. New and deleted
    objects are a user's doing; so is a MODIFIED that changed the generation (spec), the
    deletion or labels. Any other MODIFIED is the controller's own write (status,
    finalizers, owners) coming back: None, it continues the work that wrote it at that
    work's priority — a user's new worker stays HIGH through every step it takes, and the
    background sweep's writes stay LOW."""
    if event.background:
        return Priority.LOW
    if event.kind is not EventKind.MODIFIED:
        return Priority.HIGH
    return Priority.HIGH if user_changed(event.previous, event.obj) else None


def user_changed(previous: Any, current: Any) -> bool:
    """Whether a cached object's change is one only users make: spec (the generation), a
    deletion, labels. The controller writes status, finalizers and ownerReferences only."""
    try:
        return bool(
            current.generation != previous.generation
            or (current.deleting and not previous.deleting)
            or current.labels != previous.labels
        )
    except AttributeError:  # no previous copy, or objects that do not say: assume a user
        return True


class Controller:
    """A Runnable that needs the leader (or the shard owner): only the owner reconciles."""

    needs_leader = True

    def __init__(
        self,
        name: str,
        kind: str,
        reconcile: ReconcileFn,
        options: ControllerOptions | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.options = opts = options or ControllerOptions()
        self.sharded = not opts.singleton
        """Under sharding, reconciled by the shard owner (else by the leader)."""
        self.ownership: KeyOwnership | None = None
        """Set by the manager under sharding: keys of other replicas' shards are dropped."""
        self.observers: list[ReconcileObserver] = []
        self._reconcile = reconcile
        self.metrics = opts.metrics
        limiter: RateLimiter[ObjectKey] = default_controller_rate_limiter(
            opts.base_delay, opts.max_delay, opts.qps, opts.burst
        )
        self.queue: RateLimitingQueue[ObjectKey]
        if opts.priority_queue:
            self.queue = PriorityQueue(
                limiter, name=name, metrics=opts.workqueue_metrics, aging=opts.priority_aging
            )
        else:
            self.queue = RateLimitingQueue(limiter, name=name, metrics=opts.workqueue_metrics)
        self._trigger_revision: dict[ObjectKey, int] = {}
        self._trigger_traceparent: dict[ObjectKey, str] = {}
        self._threads: list[threading.Thread] = []
        self.reconciles = 0
        self.last_progress = time.monotonic()

    # -- event intake ----------------------------------------------------------------------

    def watch(self, informer: Informer[Any], mapper: EventMapper = own_key) -> None:
        """Feed the queue from `informer`: each event becomes the keys `mapper` names, at
        the event's priority (an owner's key too: its dependent's change is its change)."""

        def on_event(event: InformerEvent[Any]) -> None:
            priority = event_priority(event)
            # The writer's trace context, if it left one in the object (record.py keeps it).
            traceparent = getattr(event.obj, "traceparent", None)
            for key in mapper(event):
                if event.kind is not EventKind.RESYNC:
                    self._trigger_revision[key] = event.revision
                    if isinstance(traceparent, str):
                        self._trigger_traceparent[key] = traceparent
                    else:
                        self._trigger_traceparent.pop(key, None)
                self._add(key, priority)

        informer.add_handler(on_event)

    def enqueue(self, key: ObjectKey, priority: Priority = Priority.HIGH) -> None:
        self._add(key, priority)

    def _add(self, key: ObjectKey, priority: Priority | None) -> None:
        """`priority` None: as the key was last handed out (see `event_priority`)."""
        queue = self.queue
        if not isinstance(queue, PriorityQueue):
            queue.add(key)
        elif priority is None:
            queue.add_as_before(key)
        else:
            queue.add(key, priority)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        for i in range(self.options.workers):
            t = threading.Thread(target=self._worker, name=f"{self.name}-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float) -> bool:
        """Stop taking work and wait up to `timeout` for in-flight reconciles to finish."""
        drained = self.queue.shut_down_with_drain(timeout)
        deadline = time.monotonic() + max(0.0, timeout)
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return drained and not any(t.is_alive() for t in self._threads)

    def healthy(self) -> tuple[bool, str]:
        longest = self.queue.longest_running_processor_seconds()
        if longest > self.options.stuck_after:
            return False, f"a reconcile has been running for {longest:.0f}s (stuck?)"
        return True, f"{self.reconciles} reconciles, queue depth {self.queue.len()}"

    # -- the worker loop -------------------------------------------------------------------

    def _worker(self) -> None:
        while True:
            try:
                key = self.queue.get()
            except ShutDown:
                return
            try:
                if self.ownership is None:
                    self._process(key)
                else:
                    with self.ownership.claim(key) as mine:
                        if mine:
                            self._process(key)
                        else:
                            self.queue.forget(key)  # another replica's now; it reconciles it
            finally:
                self.queue.done(key)

    def _process(self, key: ObjectKey) -> None:
        attempt = self.queue.num_requeues(key) + 1
        trigger = self._trigger_revision.pop(key, 0)
        writer = link_to_writer(self._trigger_traceparent.pop(key, None))
        namespace, name = key
        started = time.perf_counter()
        began_ns = time.monotonic_ns()
        self.metrics.active_workers_inc(self.name)
        outcome = "success"
        where = {"controller": self.name, "kind": self.kind}
        with tracer.start_as_current_span(
            f"reconcile {self.kind}",
            attributes={
                "labctl.controller": self.name,
                "labctl.kind": self.kind,
                "labctl.key": str(key),
                "labctl.attempt": attempt,
                "labctl.trigger.revision": trigger,
            },
            links=[writer] if writer is not None else None,
        ) as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
            # A fresh log context per reconcile: nothing bound for the previous key leaks in.
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(
                key=str(key), namespace=namespace, name=name, attempt=attempt
            )
            try:
                result = self._reconcile(key)
                outcome = self._requeue(key, result)
            except TerminalError as exc:
                outcome = "error"
                self.queue.forget(key)
                self.metrics.terminal_error(self.name)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                log.error(
                    "%s %s: %s; not retrying until it changes",
                    self.kind,
                    key,
                    exc,
                    extra={"event": "reconcile_failed_terminal", "error": str(exc), **where},
                )
            except (ReconcileError, StorageError) as exc:
                outcome = "error"
                delay = self._retry(key)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                log.warning(
                    "%s %s: reconcile failed (%s); retry %d in %.2fs",
                    self.kind,
                    key,
                    exc,
                    attempt,
                    delay,
                    extra={
                        "event": "reconcile_failed",
                        "error": str(exc),
                        "retry_in": round(delay, 3),
                        **where,
                    },
                )
            except Exception as exc:  # a bug: count it, keep the worker alive, retry later
                outcome = "error"
                delay = self._retry(key)
                self.metrics.reconcile_panic(self.name)
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, repr(exc)))
                log.exception(
                    "%s %s: reconcile raised unexpectedly; retry %d in %.2fs",
                    self.kind,
                    key,
                    attempt,
                    delay,
                    extra={
                        "event": "reconcile_panic",
                        "error": repr(exc),
                        "retry_in": round(delay, 3),
                        **where,
                    },
                )
            span.set_attribute("labctl.result", outcome)
            structlog.contextvars.clear_contextvars()
        self.metrics.active_workers_dec(self.name)
        for observe in self.observers:
            observe(self.name, key, began_ns, time.monotonic_ns())
        self.metrics.reconcile_finished(self.name, outcome, time.perf_counter() - started, trace_id)
        self.reconciles += 1
        self.last_progress = time.monotonic()

    def _requeue(self, key: ObjectKey, result: Result) -> str:
        if result.requeue_after > 0:
            self.queue.forget(key)
            self.queue.add_after(key, result.requeue_after)
            return "requeue_after"
        if result.requeue:
            self.queue.add_rate_limited(key)
            return "requeue"
        self.queue.forget(key)
        return "success"

    def _retry(self, key: ObjectKey) -> float:
        return self.queue.add_rate_limited(key)

"""The base work queue: deduplicating, FIFO, and exclusive per item (client-go semantics).

Three structures give the guarantees a controller relies on:

- ``dirty``: items that need processing. Adding an item already dirty is a no-op, so a key
  that changed ten times while queued is reconciled once, against the latest state.
- ``processing``: items handed out by :meth:`WorkQueue.get` and not yet :meth:`done`. An
  item re-added while processing is only marked dirty; :meth:`done` queues it again. So no
  two workers ever reconcile the same key concurrently, and no change is lost.
- ``queue``: FIFO order of dirty items that are not processing. This order is the one
  thing a subclass may change (``_push_locked``/``_pop_locked``): the priority queue
  serves user changes before background work without touching the two guarantees above.

Shutdown (a deliberate difference from client-go): once shut down, :meth:`get` hands out
nothing more, even if items are still queued. The controller's state lives in etcd and a
restart relists everything, so finishing the backlog would only delay a SIGTERM; draining
means waiting for the *in-flight* items only.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

from controller.runtime.clock import SYSTEM_CLOCK, Clock
from controller.runtime.workqueue.metrics import (
    NOOP_WORKQUEUE_METRICS,
    QueueInstruments,
    WorkqueueMetrics,
)

T = TypeVar("T", bound=Hashable)


class ShutDown(Exception):
    """Raised by ``get`` once the queue is shutting down: the worker should exit its loop."""


class WorkQueue(Generic[T]):
    """A thread-safe queue of hashable items (keys, in practice).

    Worker loop::

        while True:
            try:
                key = queue.get()
            except ShutDown:
                return
            try:
                handle(key)
            finally:
                queue.done(key)

    ``name`` labels this queue's metrics; ``clock`` times them (and, in subclasses, delays).
    Blocking timeouts (``get``, ``shut_down_with_drain``) are real seconds, so a test with
    a fake clock still cannot hang forever.
    """

    def __init__(
        self,
        *,
        name: str = "",
        metrics: WorkqueueMetrics | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._name = name
        self._clock = clock if clock is not None else SYSTEM_CLOCK
        self._lock = threading.Lock()
        self._item_ready = threading.Condition(self._lock)
        self._processing_emptied = threading.Condition(self._lock)
        self._queue: deque[T] = deque()
        self._dirty: set[T] = set()
        self._processing: set[T] = set()
        self._shutting_down = False
        self._instruments = self._new_instruments(
            metrics if metrics is not None else NOOP_WORKQUEUE_METRICS
        )

    @property
    def name(self) -> str:
        return self._name

    def add(self, item: T) -> None:
        """Mark ``item`` as needing processing; ignored once the queue is shutting down."""
        with self._lock:
            if self._shutting_down:
                return
            self._promote_ready_locked()
            self._add_locked(item)

    def get(self, timeout: float | None = None) -> T:
        """Block until an item is available and hand it out; the caller must call ``done``.

        Raises :class:`ShutDown` once the queue is shutting down (also waking blocked
        callers), and ``TimeoutError`` if ``timeout`` seconds pass without an item
        (``timeout=0`` polls).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                if self._shutting_down:
                    raise ShutDown(f"work queue {self._name!r} is shutting down")
                self._promote_ready_locked()
                if self._ready_len_locked():
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"no item became available in work queue {self._name!r} within {timeout} s"
                    )
                self._item_ready.wait(remaining)
            item = self._pop_locked()
            self._processing.add(item)
            self._dirty.discard(item)
            self._instruments.taken(item)
            return item

    def done(self, item: T) -> None:
        """Finish processing ``item``; if it was re-added meanwhile, queue it again.

        Calling ``done`` for an item that is not being processed does nothing, so a worker's
        ``finally: done(key)`` is always safe.
        """
        with self._lock:
            if item not in self._processing:
                return
            self._processing.remove(item)
            self._instruments.finished(item)
            if item in self._dirty and not self._shutting_down:
                self._push_locked(item)
                self._item_ready.notify()
            self._finished_locked(item)
            if not self._processing:
                self._processing_emptied.notify_all()

    def len(self) -> int:
        """Items waiting to be handed out (not counting in-flight or delayed ones).

        A method rather than ``__len__`` on purpose: an empty queue must not be falsy, or
        ``queue or WorkQueue()`` would silently replace it.
        """
        with self._lock:
            self._promote_ready_locked()
            return self._ready_len_locked()

    def shut_down(self) -> None:
        """Stop accepting items and make every ``get`` raise :class:`ShutDown`."""
        with self._lock:
            self._shutting_down = True
            self._on_shut_down_locked()
            self._item_ready.notify_all()
            self._processing_emptied.notify_all()
        self._after_shut_down()

    def shut_down_with_drain(self, timeout: float | None = None) -> bool:
        """Shut down, then wait for in-flight items to be ``done``.

        Returns whether every in-flight item finished within ``timeout`` seconds; the caller
        decides what to do with a worker that did not (log it, exit anyway).
        """
        self.shut_down()
        with self._lock:
            return self._processing_emptied.wait_for(lambda: not self._processing, timeout)

    def shutting_down(self) -> bool:
        with self._lock:
            return self._shutting_down

    def unfinished_work_seconds(self) -> float:
        """Sum of how long each in-flight item has been processing (stuck-worker signal)."""
        return self._instruments.unfinished_work_seconds()

    def longest_running_processor_seconds(self) -> float:
        return self._instruments.longest_running_processor_seconds()

    # --- extension points for subclasses; all "_locked" methods run with the lock held ---

    def _add_locked(self, item: T) -> None:
        if item in self._dirty:
            return
        self._dirty.add(item)
        self._instruments.added(item)
        if item in self._processing:
            return
        self._push_locked(item)
        self._item_ready.notify()

    def _new_instruments(self, metrics: WorkqueueMetrics) -> QueueInstruments[T]:
        """Called once by ``__init__`` (the priority queue labels its depth by priority)."""
        return QueueInstruments(self._name, metrics, self._clock, self._lock)

    def _push_locked(self, item: T) -> None:
        """Put a dirty item that is not processing in line (the order is the subclass's)."""
        self._queue.append(item)

    def _pop_locked(self) -> T:
        """Take the next item in line; only called when ``_ready_len_locked()`` > 0."""
        return self._queue.popleft()

    def _ready_len_locked(self) -> int:
        return len(self._queue)

    def _finished_locked(self, item: T) -> None:
        """``item`` stopped processing (and was queued again if it was re-added)."""

    def _promote_ready_locked(self) -> None:
        """Move items whose time has come into the queue (the delaying queue's hook)."""

    def _on_shut_down_locked(self) -> None:
        """Release resources tied to pending work (the delaying queue's hook)."""

    def _after_shut_down(self) -> None:
        """Called without the lock after shutting down, e.g. to join helper threads."""

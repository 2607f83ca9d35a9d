"""A work queue that can add an item later ("check this key again in N seconds").

Delayed items wait in a min-heap ordered by ready time. They are moved into the queue in
two ways, both under the queue lock, so they cannot disagree:

- a waiting thread sleeps (on the injected clock) until the earliest ready time, so items
  appear on time and the depth metric is right even while every worker is busy;
- every queue operation first promotes whatever is due, so with a :class:`FakeClock` a test
  that steps time sees the item at once, without racing the waiting thread.

As in client-go, adding an item that is already waiting keeps the earlier ready time, and
a delayed item is independent of the queue's dedup: a direct ``add`` still processes it now.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from controller.runtime.clock import Clock
from controller.runtime.workqueue.metrics import WorkqueueMetrics
from controller.runtime.workqueue.queue import WorkQueue

T = TypeVar("T", bound=Hashable)

_log = logging.getLogger(__name__)

_RETRY_AFTER_FAILURE_SECONDS = 1.0


@dataclass(order=True, slots=True)
class _Waiting(Generic[T]):
    ready_at: float
    sequence: int  # ties keep insertion order
    item: T = field(compare=False)
    superseded: bool = field(default=False, compare=False)


class DelayingQueue(WorkQueue[T]):
    """A :class:`WorkQueue` with :meth:`add_after`; owns one daemon thread until shut down."""

    def __init__(
        self,
        *,
        name: str = "",
        metrics: WorkqueueMetrics | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(name=name, metrics=metrics, clock=clock)
        self._waiting_changed = threading.Condition(self._lock)
        self._heap: list[_Waiting[T]] = []
        self._waiting: dict[T, _Waiting[T]] = {}
        self._sequence = itertools.count()
        self._waiting_thread = threading.Thread(
            target=self._run_waiting_loop,
            name=f"workqueue-delay-{name}" if name else "workqueue-delay",
            daemon=True,
        )
        self._waiting_thread.start()

    def add_after(self, item: T, delay_seconds: float) -> None:
        """Add ``item`` once ``delay_seconds`` have passed (at once if ``<= 0``).

        If ``item`` is already waiting, the earlier of the two ready times wins. Counted as
        a retry in the metrics, like client-go.
        """
        with self._lock:
            if self._shutting_down:
                return
            self._instruments.retried()
            self._promote_ready_locked()
            if delay_seconds <= 0:
                self._add_locked(item)
                return
            ready_at = self._clock.now() + delay_seconds
            existing = self._waiting.get(item)
            if existing is not None:
                if existing.ready_at <= ready_at:
                    return
                existing.superseded = True  # lazily dropped when it reaches the heap top
            entry = _Waiting(ready_at, next(self._sequence), item)
            heapq.heappush(self._heap, entry)
            self._waiting[item] = entry
            if self._heap[0] is entry:
                self._waiting_changed.notify()

    def waiting_len(self) -> int:
        """Items added with a delay that has not expired yet."""
        with self._lock:
            self._promote_ready_locked()
            return len(self._waiting)

    def _promote_ready_locked(self) -> None:
        if not self._heap:
            return
        now = self._clock.now()
        while self._heap and (self._heap[0].superseded or self._heap[0].ready_at <= now):
            entry = heapq.heappop(self._heap)
            if entry.superseded:
                continue
            del self._waiting[entry.item]
            self._add_locked(entry.item)

    def _on_shut_down_locked(self) -> None:
        self._heap.clear()
        self._waiting.clear()
        self._waiting_changed.notify_all()

    def _after_shut_down(self) -> None:
        if threading.current_thread() is not self._waiting_thread:
            self._waiting_thread.join()

    def _run_waiting_loop(self) -> None:
        with self._lock:
            while not self._shutting_down:
                try:
                    self._promote_ready_locked()
                    next_ready_at = self._heap[0].ready_at if self._heap else None
                    self._clock.wait_until(self._waiting_changed, next_ready_at)
                except Exception:
                    _log.exception(
                        "work queue %r: promoting delayed items failed; retrying in %s s "
                        "(workers still pick up due items when they ask for work)",
                        self._name,
                        _RETRY_AFTER_FAILURE_SECONDS,
                    )
                    self._waiting_changed.wait(_RETRY_AFTER_FAILURE_SECONDS)

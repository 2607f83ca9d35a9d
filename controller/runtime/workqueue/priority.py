"""A rate-limiting work queue that serves user changes before background work.

After a restart (or a resync) the informer hands every cached object to the controller: with
100k converged workers that is 100k keys, each a quick no-op reconcile, but together minutes
of work. In a FIFO queue a worker a user creates meanwhile waits behind all of them. So each
add carries a :class:`Priority`: the controller adds what users wrote (new objects, spec
edits, deletions) as ``HIGH`` and the background work (initial list, resync, the
controller's own status writes echoing back) as ``LOW`` (docs/architecture.md, Work queue).

Everything else is the base queue's: an item is queued once however often it is added
(re-adding a queued ``LOW`` item as ``HIGH`` moves it up; re-adding a ``HIGH`` one as
``LOW`` leaves it ``HIGH``), it is never handed to two workers, an item re-added while
processing is queued again when done, and shutdown hands out nothing more. A delayed or
rate-limited re-add keeps the priority the item was last added with, so the retries and
polls of a user's change stay ahead of the background backlog, and those of background
work stay behind it. For the same reason :meth:`PriorityQueue.add_as_before` re-adds an
item at the priority it was last handed out at: a reconciler that writes status and waits
for that write's watch event to bring the key back (instead of a timer racing it) must not
see its user's change fall behind 100k background keys at every step.

**Aging, without giving the head start away.** Strict priority would starve ``LOW`` work
while users keep writing. The obvious cure — promote a ``LOW`` item that waited longer than
``aging`` to ``HIGH`` — fails exactly when it matters: 100k background items all pass the
bound a few seconds after a restart, and once promoted they bury the user's change again.
Instead, while the oldest ``LOW`` item has waited longer than ``aging``, the queue serves
``LOW`` and ``HIGH`` alternately (1:1) rather than ``HIGH`` first. Both halves of the
promise then hold at any load:

- no starvation: background work gets at least every other item handed out, so it drains
  at no less than half the throughput whatever users do;
- a ``HIGH`` item at the head of its line is handed out within two gets, however large
  the ``LOW`` backlog is; a burst of ``k`` user changes waits at most ``2k`` gets.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from enum import IntEnum
from typing import TypeVar

from controller.runtime.clock import Clock
from controller.runtime.workqueue.metrics import QueueInstruments, WorkqueueMetrics
from controller.runtime.workqueue.rate_limiters import RateLimiter
from controller.runtime.workqueue.rate_limiting_queue import RateLimitingQueue

T = TypeVar("T", bound=Hashable)

DEFAULT_AGING_SECONDS = 5.0
FOLLOW_UP_WINDOW_SECONDS = 60.0
"""How long after an item was last handed out at HIGH ``add_as_before`` still says HIGH:
far longer than a write takes to come back on the watch, short enough that the memory is
bounded by the HIGH work of one minute (a deleted key is never handed out again)."""


class Priority(IntEnum):
    """Higher is served first; compared when an item is added again while queued."""

    LOW = 0
    HIGH = 1

    @property
    def label(self) -> str:
        """The ``priority`` label of ``workqueue_depth``."""
        return self.name.lower()


class PriorityQueue(RateLimitingQueue[T]):
    """A :class:`RateLimitingQueue` with two lines, ``HIGH`` and ``LOW``, each FIFO.

    ``aging``: seconds the oldest ``LOW`` item may wait before the queue alternates between
    the lines instead of serving ``HIGH`` first (see the module docstring). Measured on
    ``clock``, so a :class:`FakeClock` drives it in tests.
    """

    def __init__(
        self,
        rate_limiter: RateLimiter[T] | None = None,
        *,
        name: str = "",
        metrics: WorkqueueMetrics | None = None,
        clock: Clock | None = None,
        aging: float = DEFAULT_AGING_SECONDS,
    ) -> None:
        if aging < 0:
            raise ValueError(f"aging must be >= 0 seconds, got {aging}")
        self._aging = aging
        # Set before the base starts its delay thread, which may promote items at once.
        self._priority: dict[T, Priority] = {}
        """The priority each item was last added with, while it is dirty, processing or
        waiting for a delay: it picks the line on queueing and on a delayed re-add."""
        self._high: OrderedDict[T, None] = OrderedDict()
        self._low: OrderedDict[T, float] = OrderedDict()
        """Queued LOW items → when each was queued (the head is the oldest: aging)."""
        self._low_turn = True
        self._recent_high: OrderedDict[T, float] = OrderedDict()
        """Items no longer known above, last handed out at HIGH → when they finished."""
        super().__init__(rate_limiter, name=name, metrics=metrics, clock=clock)

    def add(self, item: T, priority: Priority = Priority.HIGH) -> None:
        """Mark ``item`` as needing processing at ``priority`` (or higher, if it already is)."""
        with self._lock:
            if self._shutting_down:
                return
            self._promote_ready_locked()
            self._add_with_priority_locked(item, priority)

    def add_as_before(self, item: T) -> None:
        """Add ``item`` at the priority it was last handed out at: HIGH if that was HIGH
        within :data:`FOLLOW_UP_WINDOW_SECONDS` (or it is still queued, processing or
        waiting at HIGH), LOW otherwise. For follow-ups of work already handed out, such as
        the watch event of the controller's own status write."""
        with self._lock:
            if self._shutting_down:
                return
            self._promote_ready_locked()
            self._forget_old_hand_outs_locked()
            before = self._priority.get(item)
            if before is None:
                before = Priority.HIGH if item in self._recent_high else Priority.LOW
            self._add_with_priority_locked(item, before)

    def len_of(self, priority: Priority) -> int:
        """Items of ``priority`` waiting to be handed out."""
        with self._lock:
            self._promote_ready_locked()
            return len(self._high if priority is Priority.HIGH else self._low)

    # --- the base queue's extension points; all run with the lock held ---

    def _new_instruments(self, metrics: WorkqueueMetrics) -> QueueInstruments[T]:
        return QueueInstruments(
            self._name,
            metrics,
            self._clock,
            self._lock,
            priority_of=lambda item: self._priority[item].label,
            priorities=[p.label for p in Priority],
        )

    def _add_locked(self, item: T) -> None:
        # A delayed item coming due, or add_after(<= 0): the priority it was last added with.
        self._add_with_priority_locked(item, self._priority.get(item, Priority.HIGH))

    def _add_with_priority_locked(self, item: T, priority: Priority) -> None:
        if item in self._dirty:
            current = self._priority[item]
            if priority > current:
                self._priority[item] = priority
                self._instruments.reprioritized(current.label, priority.label)
                if item in self._low:  # queued (not processing): move it to its new line
                    del self._low[item]
                    self._high[item] = None
            return
        self._priority[item] = priority
        self._recent_high.pop(item, None)  # known again: _priority says it
        super()._add_locked(item)

    def _push_locked(self, item: T) -> None:
        if self._priority[item] is Priority.HIGH:
            self._high[item] = None
        else:
            self._low[item] = self._clock.now()

    def _pop_locked(self) -> T:
        if self._high and self._low:
            oldest_low_queued_at = next(iter(self._low.values()))
            aged = self._clock.now() - oldest_low_queued_at > self._aging
            take_low = aged and self._low_turn
            self._low_turn = not take_low
        else:
            take_low = not self._high
        if take_low:
            return self._low.popitem(last=False)[0]
        return self._high.popitem(last=False)[0]

    def _ready_len_locked(self) -> int:
        return len(self._high) + len(self._low)

    def _finished_locked(self, item: T) -> None:
        if item not in self._dirty and item not in self._waiting:
            if self._priority.pop(item) is Priority.HIGH:
                self._recent_high[item] = self._clock.now()
            self._forget_old_hand_outs_locked()

    def _forget_old_hand_outs_locked(self) -> None:
        horizon = self._clock.now() - FOLLOW_UP_WINDOW_SECONDS
        recent = self._recent_high
        while recent and next(iter(recent.values())) < horizon:
            recent.popitem(last=False)

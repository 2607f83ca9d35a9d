"""Injectable monotonic time for schedulers and rate limiters.

Delays and backoff are scheduling decisions; tests of them must not sleep. Everything in
``controller.runtime`` that reasons about "when" asks a :class:`Clock` instead of the
``time`` module, so a :class:`FakeClock` can move time forward instantly and
deterministically.

A clock is also responsible for *waiting* until a point in its own time, because only the
clock knows how its time advances: the real clock waits with a timeout, the fake clock
waits until :meth:`FakeClock.step` moves time (it wakes every waiter so they can re-check).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Protocol


class Clock(Protocol):
    """A monotonic time source in seconds, plus a way to wait for a moment in it."""

    def now(self) -> float:
        """Seconds on a monotonic scale (only differences are meaningful)."""
        ...

    def wait_until(self, condition: threading.Condition, deadline: float | None) -> None:
        """Wait on ``condition`` (whose lock the caller holds) until notified or ``deadline``.

        ``deadline`` is on this clock's scale; ``None`` waits for a notification only.
        Like ``Condition.wait`` this may return early; callers re-check their state. An
        absolute deadline (not a relative timeout) lets the fake clock tell whether time
        already moved past it between the caller reading ``now()`` and waiting.
        """
        ...


class MonotonicClock:
    """The real clock: ``time.monotonic``, immune to wall-clock adjustments."""

    def now(self) -> float:
        return time.monotonic()

    def wait_until(self, condition: threading.Condition, deadline: float | None) -> None:
        if deadline is None:
            condition.wait()
            return
        remaining = deadline - time.monotonic()
        if remaining > 0:
            condition.wait(remaining)


SYSTEM_CLOCK: Clock = MonotonicClock()
"""Shared real clock; stateless, so one instance serves every queue and limiter."""


class FakeClock:
    """A clock that only moves when a test calls :meth:`step`.

    Waiters in :meth:`wait_until` ignore real time entirely: they wake when notified by their
    own code or when ``step`` advances time, so a test decides exactly when delays expire.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._now = start
        self._waiting: Counter[threading.Condition] = Counter()

    def now(self) -> float:
        with self._lock:
            return self._now

    def step(self, seconds: float) -> None:
        """Advance time and wake every waiter so it can re-check its deadline."""
        if seconds < 0:
            raise ValueError(f"a monotonic clock cannot go back; got step({seconds})")
        with self._lock:
            self._now += seconds
            conditions = list(self._waiting)
        # Notify outside our lock: waiters hold their condition's lock while calling now(),
        # so taking a condition lock while holding ours could deadlock.
        for condition in conditions:
            with condition:
                condition.notify_all()

    def has_waiters(self) -> bool:
        """Whether some thread is blocked in :meth:`wait_until` (lets tests await that)."""
        with self._lock:
            return bool(self._waiting)

    def wait_until(self, condition: threading.Condition, deadline: float | None) -> None:
        with self._lock:
            if deadline is not None and self._now >= deadline:
                return
            # Registered while still holding the condition's lock, so a step() that happens
            # after this point must wait for condition.wait() to release it: no lost wake-up.
            self._waiting[condition] += 1
        try:
            condition.wait()
        finally:
            with self._lock:
                self._waiting[condition] -= 1
                if self._waiting[condition] <= 0:
                    del self._waiting[condition]

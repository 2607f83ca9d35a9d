"""A delaying queue that retries failed items after a rate limiter's delay.

The worker reports outcomes: ``add_rate_limited(key)`` after a failure (the limiter picks the
delay and counts the failure), ``forget(key)`` after a success (so the next failure starts
again from the base delay).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TypeVar

from controller.runtime.clock import Clock
from controller.runtime.workqueue.delaying import DelayingQueue
from controller.runtime.workqueue.metrics import WorkqueueMetrics
from controller.runtime.workqueue.rate_limiters import RateLimiter, default_controller_rate_limiter

T = TypeVar("T", bound=Hashable)


class RateLimitingQueue(DelayingQueue[T]):
    """``rate_limiter`` defaults to :func:`default_controller_rate_limiter` on ``clock``."""

    def __init__(
        self,
        rate_limiter: RateLimiter[T] | None = None,
        *,
        name: str = "",
        metrics: WorkqueueMetrics | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(name=name, metrics=metrics, clock=clock)
        self._rate_limiter: RateLimiter[T] = (
            rate_limiter
            if rate_limiter is not None
            else default_controller_rate_limiter(clock=self._clock)
        )

    def add_rate_limited(self, item: T) -> float:
        """Re-add after the limiter's delay; returns that delay (for the log line)."""
        delay = self._rate_limiter.when(item)
        self.add_after(item, delay)
        return delay

    def forget(self, item: T) -> None:
        """Reset ``item``'s backoff; it does not remove the item from the queue."""
        self._rate_limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return self._rate_limiter.num_requeues(item)

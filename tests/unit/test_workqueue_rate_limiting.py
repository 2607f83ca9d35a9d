"""Rate-limited retries: failures back off on the queue's clock; success forgets."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from controller.runtime.clock import FakeClock
from controller.runtime.workqueue import (
    CounterMetric,
    ItemExponentialFailureRateLimiter,
    NoopWorkqueueMetrics,
    RateLimitingQueue,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queue(clock: FakeClock) -> Iterator[RateLimitingQueue[str]]:
    limiter: ItemExponentialFailureRateLimiter[str] = ItemExponentialFailureRateLimiter(
        base_delay=1.0, max_delay=60.0
    )
    q = RateLimitingQueue(limiter, name="test", clock=clock)
    yield q
    q.shut_down()


def fail_once(queue: RateLimitingQueue[str], key: str) -> None:
    """What a worker does when reconciling ``key`` failed."""
    assert queue.get(timeout=0) == key
    queue.add_rate_limited(key)
    queue.done(key)


def test_failed_item_is_retried_after_a_growing_delay(
    queue: RateLimitingQueue[str], clock: FakeClock
) -> None:
    queue.add("a")
    fail_once(queue, "a")
    clock.step(0.9)
    assert queue.len() == 0
    clock.step(0.1)
    assert queue.len() == 1

    fail_once(queue, "a")
    clock.step(1.9)
    assert queue.len() == 0
    clock.step(0.1)
    assert queue.len() == 1
    assert queue.num_requeues("a") == 2


def test_forget_resets_the_backoff_after_success(
    queue: RateLimitingQueue[str], clock: FakeClock
) -> None:
    queue.add("a")
    fail_once(queue, "a")
    clock.step(1.0)
    fail_once(queue, "a")
    clock.step(2.0)
    assert queue.get(timeout=0) == "a"
    queue.forget("a")
    queue.done("a")

    assert queue.num_requeues("a") == 0
    queue.add_rate_limited("a")
    clock.step(1.0)
    assert queue.get(timeout=0) == "a"


class _CountingCounter:
    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def inc(self) -> None:
        with self._lock:
            self.count += 1


class _RetryCountingMetrics(NoopWorkqueueMetrics):
    def __init__(self) -> None:
        self.retries = _CountingCounter()

    def new_retries_metric(self, name: str, /) -> CounterMetric:
        return self.retries


def test_each_rate_limited_add_counts_as_a_retry(clock: FakeClock) -> None:
    metrics = _RetryCountingMetrics()
    queue: RateLimitingQueue[str] = RateLimitingQueue(name="q", metrics=metrics, clock=clock)
    try:
        queue.add("a")
        queue.add_rate_limited("a")
        queue.add_rate_limited("b")
        queue.add_after("c", 5.0)

        assert metrics.retries.count == 3
    finally:
        queue.shut_down()


def test_default_limiter_uses_the_queue_clock(clock: FakeClock) -> None:
    queue: RateLimitingQueue[str] = RateLimitingQueue(clock=clock)
    try:
        queue.add_rate_limited("a")
        assert queue.len() == 0
        clock.step(0.1)  # default base delay
        assert queue.get(timeout=0) == "a"
    finally:
        queue.shut_down()

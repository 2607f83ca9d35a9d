"""Delayed adds, driven by a fake clock so nothing sleeps."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from controller.runtime.clock import FakeClock
from controller.runtime.workqueue import (
    DelayingQueue,
    GaugeMetric,
    NoopWorkqueueMetrics,
    ShutDown,
)

WAIT = 10.0  # real seconds a test may wait for a thread before it is declared stuck


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1000.0)


@pytest.fixture
def queue(clock: FakeClock) -> Iterator[DelayingQueue[str]]:
    q: DelayingQueue[str] = DelayingQueue(name="test", clock=clock)
    yield q
    q.shut_down()


def test_delayed_item_is_not_ready_before_its_delay(
    queue: DelayingQueue[str], clock: FakeClock
) -> None:
    queue.add_after("a", 5.0)
    clock.step(4.9)

    assert queue.len() == 0
    assert queue.waiting_len() == 1
    with pytest.raises(TimeoutError):
        queue.get(timeout=0)


def test_delayed_item_is_ready_once_its_delay_has_passed(
    queue: DelayingQueue[str], clock: FakeClock
) -> None:
    queue.add_after("a", 5.0)
    clock.step(5.0)

    assert queue.len() == 1
    assert queue.waiting_len() == 0
    assert queue.get(timeout=0) == "a"


@pytest.mark.parametrize("delay", [0.0, -1.0])
def test_non_positive_delay_adds_immediately(queue: DelayingQueue[str], delay: float) -> None:
    queue.add_after("a", delay)

    assert queue.get(timeout=0) == "a"


def test_earlier_ready_time_wins_when_the_later_one_comes_second(
    queue: DelayingQueue[str], clock: FakeClock
) -> None:
    queue.add_after("a", 2.0)
    queue.add_after("a", 10.0)
    clock.step(2.0)

    assert queue.get(timeout=0) == "a"
    queue.done("a")
    clock.step(10.0)
    assert queue.len() == 0  # the later request was absorbed, not scheduled separately


def test_earlier_ready_time_wins_when_the_earlier_one_comes_second(
    queue: DelayingQueue[str], clock: FakeClock
) -> None:
    queue.add_after("a", 10.0)
    queue.add_after("a", 2.0)
    clock.step(2.0)

    assert queue.get(timeout=0) == "a"
    queue.done("a")
    clock.step(10.0)
    assert queue.len() == 0
    assert queue.waiting_len() == 0


def test_delayed_items_become_ready_in_ready_time_order(
    queue: DelayingQueue[str], clock: FakeClock
) -> None:
    queue.add_after("c", 3.0)
    queue.add_after("a", 1.0)
    queue.add_after("b", 2.0)
    queue.add_after("a2", 1.0)  # same ready time as "a": insertion order breaks the tie
    clock.step(1.5)
    queue.add("direct")  # added after "a" and "a2" became due, before "b" did
    clock.step(10.0)

    assert [queue.get(timeout=0) for _ in range(5)] == ["a", "a2", "direct", "b", "c"]


def test_direct_add_does_not_cancel_a_pending_delayed_add(
    queue: DelayingQueue[str], clock: FakeClock
) -> None:
    queue.add_after("a", 5.0)
    queue.add("a")
    queue.done(queue.get(timeout=0))
    clock.step(5.0)

    assert queue.get(timeout=0) == "a"


def test_blocked_get_is_woken_when_the_clock_reaches_the_ready_time(
    queue: DelayingQueue[str], clock: FakeClock
) -> None:
    received: list[str] = []
    consumer = threading.Thread(target=lambda: received.append(queue.get(timeout=WAIT)))
    consumer.start()
    queue.add_after("a", 3.0)
    clock.step(3.0)
    consumer.join(WAIT)

    assert received == ["a"]


class _DepthSignal:
    """A depth gauge that signals each increment, to observe promotion from outside."""

    def __init__(self) -> None:
        self.increased = threading.Event()

    def inc(self) -> None:
        self.increased.set()

    def dec(self) -> None:
        pass


class _DepthWatchingMetrics(NoopWorkqueueMetrics):
    def __init__(self) -> None:
        self.depth = _DepthSignal()

    def new_depth_metric(self, name: str, /) -> GaugeMetric:
        return self.depth


def test_waiting_thread_promotes_due_items_without_any_queue_call(clock: FakeClock) -> None:
    """Depth must be right even when every worker is busy and nobody calls the queue."""
    metrics = _DepthWatchingMetrics()
    queue: DelayingQueue[str] = DelayingQueue(metrics=metrics, clock=clock)
    try:
        queue.add_after("a", 1.0)
        assert not metrics.depth.increased.is_set()
        clock.step(1.0)

        assert metrics.depth.increased.wait(WAIT)
    finally:
        queue.shut_down()


def test_with_the_real_clock_a_short_delay_expires_on_its_own() -> None:
    queue: DelayingQueue[str] = DelayingQueue()
    try:
        queue.add_after("a", 0.01)
        assert queue.get(timeout=WAIT) == "a"
    finally:
        queue.shut_down()


def test_shut_down_stops_the_waiting_thread_and_discards_pending_items(clock: FakeClock) -> None:
    queue: DelayingQueue[str] = DelayingQueue(name="stops-cleanly", clock=clock)
    queue.add_after("a", 1.0)
    queue.shut_down()
    queue.add_after("b", 0.0)
    clock.step(5.0)

    names = {thread.name for thread in threading.enumerate()}
    assert "workqueue-delay-stops-cleanly" not in names
    assert queue.waiting_len() == 0
    with pytest.raises(ShutDown):
        queue.get(timeout=0)

"""The priority queue: ordering, upgrades, aging on a fake clock, and the base guarantees."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from controller.runtime.clock import FakeClock
from controller.runtime.workqueue import (
    NoopWorkqueueMetrics,
    Priority,
    PriorityQueue,
    ShutDown,
)
from controller.runtime.workqueue.priority import FOLLOW_UP_WINDOW_SECONDS

HIGH, LOW = Priority.HIGH, Priority.LOW
AGING = 5.0
WAIT = 10.0  # real seconds a test may wait for a thread before it is declared stuck


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1000.0)


@pytest.fixture
def queue(clock: FakeClock) -> Iterator[PriorityQueue[str]]:
    q: PriorityQueue[str] = PriorityQueue(name="test", clock=clock, aging=AGING)
    yield q
    q.shut_down()


def drain(queue: PriorityQueue[str]) -> list[str]:
    """Hand out everything queued, one at a time, finishing each before the next."""
    order = []
    while queue.len():
        item = queue.get(timeout=0)
        order.append(item)
        queue.done(item)
    return order


def test_high_items_are_handed_out_before_low_ones_each_line_in_fifo_order(
    queue: PriorityQueue[str],
) -> None:
    for item, priority in [("l1", LOW), ("h1", HIGH), ("l2", LOW), ("h2", HIGH), ("l3", LOW)]:
        queue.add(item, priority)

    assert drain(queue) == ["h1", "h2", "l1", "l2", "l3"]


def test_add_without_a_priority_is_high_so_a_plain_caller_keeps_fifo(
    queue: PriorityQueue[str],
) -> None:
    queue.add("l", LOW)
    for item in ["c", "a", "b"]:
        queue.add(item)

    assert drain(queue) == ["c", "a", "b", "l"]


def test_item_added_many_times_while_queued_is_handed_out_once(
    queue: PriorityQueue[str],
) -> None:
    for priority in [LOW, HIGH, LOW, HIGH]:
        queue.add("a", priority)

    assert queue.len() == 1
    assert drain(queue) == ["a"]


def test_queued_low_item_added_as_high_moves_to_the_high_line(queue: PriorityQueue[str]) -> None:
    for item in ["l1", "l2", "l3"]:
        queue.add(item, LOW)
    queue.add("h1", HIGH)
    queue.add("l3", HIGH)

    assert (queue.len_of(HIGH), queue.len_of(LOW)) == (2, 2)
    assert drain(queue) == ["h1", "l3", "l1", "l2"]


def test_queued_high_item_added_as_low_stays_high(queue: PriorityQueue[str]) -> None:
    queue.add("l1", LOW)
    queue.add("h1", HIGH)
    queue.add("h1", LOW)

    assert (queue.len_of(HIGH), queue.len_of(LOW)) == (1, 1)
    assert drain(queue) == ["h1", "l1"]


def test_item_readded_while_processing_is_handed_out_again_only_when_done(
    queue: PriorityQueue[str],
) -> None:
    queue.add("a", HIGH)
    item = queue.get(timeout=0)
    queue.add("a", LOW)
    queue.add("a", HIGH)

    assert queue.len() == 0
    with pytest.raises(TimeoutError):
        queue.get(timeout=0)  # a second worker must not get "a" while it is processing
    queue.done(item)
    assert queue.len() == 1
    assert queue.get(timeout=0) == "a"


def test_item_readded_while_processing_is_queued_with_the_readd_priority(
    queue: PriorityQueue[str],
) -> None:
    queue.add("a", HIGH)
    a = queue.get(timeout=0)
    queue.add("b", HIGH)
    queue.add("a", LOW)  # e.g. the controller's own status write echoing back
    queue.done(a)

    assert (queue.len_of(HIGH), queue.len_of(LOW)) == (1, 1)
    assert drain(queue) == ["b", "a"]


def test_item_upgraded_while_processing_is_queued_high_when_done(
    queue: PriorityQueue[str],
) -> None:
    queue.add("a", LOW)
    a = queue.get(timeout=0)
    queue.add("l", LOW)
    queue.add("a", LOW)
    queue.add("a", HIGH)
    queue.done(a)

    assert drain(queue) == ["a", "l"]


def test_finished_items_are_forgotten_once_the_follow_up_window_has_passed(
    queue: PriorityQueue[str], clock: FakeClock
) -> None:
    for i in range(100):
        queue.add(f"k{i}", LOW if i % 2 else HIGH)
    drain(queue)
    assert queue.len() == 0
    assert queue._priority == {}  # LOW ones at once: no memory per converged key

    clock.step(FOLLOW_UP_WINDOW_SECONDS + 1)
    queue.add("later", HIGH)
    drain(queue)
    assert list(queue._recent_high) == ["later"]  # HIGH ones when the window has passed


# -- follow-ups: add_as_before -------------------------------------------------------------


@pytest.mark.parametrize("priority", [HIGH, LOW])
def test_a_follow_up_after_done_gets_the_priority_of_the_last_hand_out(
    queue: PriorityQueue[str], priority: Priority
) -> None:
    """The watch event of the controller's own status write, arriving after the reconcile."""
    queue.add("a", priority)
    queue.done(queue.get(timeout=0))
    queue.add_as_before("a")

    assert queue.len_of(priority) == 1


def test_a_follow_up_during_processing_is_queued_at_the_current_priority_when_done(
    queue: PriorityQueue[str],
) -> None:
    queue.add("bg", LOW)
    queue.add("user", HIGH)
    user = queue.get(timeout=0)
    queue.add_as_before("user")  # the write's event came back before the reconcile returned
    queue.done(user)

    assert drain(queue) == ["user", "bg"]


def test_a_follow_up_of_an_unknown_or_long_finished_item_is_low(
    queue: PriorityQueue[str], clock: FakeClock
) -> None:
    queue.add("old", HIGH)
    queue.done(queue.get(timeout=0))
    clock.step(FOLLOW_UP_WINDOW_SECONDS + 1)
    queue.add_as_before("old")
    queue.add_as_before("never-seen")

    assert (queue.len_of(HIGH), queue.len_of(LOW)) == (0, 2)


def test_a_follow_up_does_not_lower_a_queued_item(queue: PriorityQueue[str]) -> None:
    queue.add("l", LOW)
    queue.add("a", HIGH)
    queue.add_as_before("a")

    assert drain(queue) == ["a", "l"]


# -- aging ---------------------------------------------------------------------------------


def test_low_work_waiting_up_to_the_aging_bound_still_waits_for_high_work(
    queue: PriorityQueue[str], clock: FakeClock
) -> None:
    queue.add("l1", LOW)
    clock.step(AGING)  # waited exactly the bound: not longer
    for item in ["h1", "h2"]:
        queue.add(item, HIGH)

    assert drain(queue) == ["h1", "h2", "l1"]


def test_once_low_work_has_aged_the_lines_are_served_alternately(
    queue: PriorityQueue[str], clock: FakeClock
) -> None:
    for item in ["l1", "l2", "l3", "l4"]:
        queue.add(item, LOW)
    clock.step(AGING + 1)
    for item in ["h1", "h2", "h3"]:
        queue.add(item, HIGH)

    assert drain(queue) == ["l1", "h1", "l2", "h2", "l3", "h3", "l4"]


def test_aged_items_do_not_jump_ahead_of_a_high_item_by_more_than_one(
    queue: PriorityQueue[str], clock: FakeClock
) -> None:
    """The restart case: a large aged backlog, then a user's change arrives."""
    for i in range(1000):
        queue.add(f"bg{i}", LOW)
    clock.step(60.0)
    for _ in range(3):  # the backlog is being worked through
        queue.done(queue.get(timeout=0))
    queue.add("user", HIGH)

    served = [queue.get(timeout=0) for _ in range(2)]
    assert "user" in served


def test_alternation_stops_when_the_aged_low_items_are_gone(
    queue: PriorityQueue[str], clock: FakeClock
) -> None:
    queue.add("old", LOW)
    clock.step(AGING + 1)
    queue.add("fresh", LOW)
    for item in ["h1", "h2"]:
        queue.add(item, HIGH)

    # "old" gets its turn; "fresh" has not waited long: users' changes go first again.
    assert drain(queue) == ["old", "h1", "h2", "fresh"]


def test_low_work_is_not_starved_by_a_steady_stream_of_high_work(
    queue: PriorityQueue[str], clock: FakeClock
) -> None:
    for i in range(10):
        queue.add(f"bg{i}", LOW)
    served = []
    for i in range(20):  # a new user change for every item handed out, 1 s apart
        queue.add(f"user{i}", HIGH)
        clock.step(1.0)
        item = queue.get(timeout=0)
        served.append(item)
        queue.done(item)

    # Until the backlog has waited longer than AGING, users' changes go first; from then on
    # every other item is background work, however many users' changes keep coming.
    assert all(item.startswith("user") for item in served[:5])
    assert all(item.startswith("bg") for item in served[5::2])
    assert all(item.startswith("user") for item in served[6::2])


# -- delayed and rate-limited re-adds ------------------------------------------------------


@pytest.mark.parametrize("priority", [HIGH, LOW])
def test_delayed_readd_keeps_the_priority_the_item_was_added_with(
    queue: PriorityQueue[str], clock: FakeClock, priority: Priority
) -> None:
    queue.add("a", priority)
    a = queue.get(timeout=0)
    queue.add_after("a", 1.0)  # e.g. Result.after(1): poll again
    queue.done(a)
    clock.step(1.0)

    assert queue.len_of(priority) == 1
    assert queue.len_of(Priority(1 - priority)) == 0


def test_rate_limited_retry_of_a_low_item_stays_behind_high_work(
    queue: PriorityQueue[str], clock: FakeClock
) -> None:
    queue.add("bg", LOW)
    bg = queue.get(timeout=0)
    delay = queue.add_rate_limited("bg")  # the reconcile failed
    queue.done(bg)
    queue.add("user", HIGH)
    clock.step(delay)

    assert drain(queue) == ["user", "bg"]


def test_delayed_item_of_unknown_priority_comes_due_high(
    queue: PriorityQueue[str], clock: FakeClock
) -> None:
    queue.add("l", LOW)
    queue.add_after("a", 1.0)
    clock.step(1.0)

    assert drain(queue) == ["a", "l"]


# -- metrics and shutdown ------------------------------------------------------------------


class DepthByPriority(NoopWorkqueueMetrics):
    def __init__(self) -> None:
        self.depth: dict[tuple[str, str], int] = {}

    def new_depth_metric_with_priority(self, name: str, priority: str, /) -> _Gauge:
        self.depth[(name, priority)] = 0
        return _Gauge(self.depth, (name, priority))


class _Gauge:
    def __init__(self, values: dict[tuple[str, str], int], key: tuple[str, str]) -> None:
        self._values, self._key = values, key

    def inc(self) -> None:
        self._values[self._key] += 1

    def dec(self) -> None:
        self._values[self._key] -= 1


def test_depth_is_reported_per_priority_and_follows_upgrades() -> None:
    metrics = DepthByPriority()
    queue: PriorityQueue[str] = PriorityQueue(name="q", metrics=metrics, clock=FakeClock())
    assert metrics.depth == {("q", "high"): 0, ("q", "low"): 0}  # both series from the start

    for item in ["a", "b", "c"]:
        queue.add(item, LOW)
    queue.add("d", HIGH)
    queue.add("c", HIGH)  # upgrade
    assert metrics.depth == {("q", "high"): 2, ("q", "low"): 2}

    d = queue.get(timeout=0)
    queue.add(d, LOW)  # re-added while processing counts as depth, at its new priority
    assert metrics.depth == {("q", "high"): 1, ("q", "low"): 3}

    queue.done(d)
    drain(queue)
    assert metrics.depth == {("q", "high"): 0, ("q", "low"): 0}
    queue.shut_down()


def test_shut_down_wakes_a_blocked_get_and_refuses_new_items(queue: PriorityQueue[str]) -> None:
    raised = threading.Event()

    def worker() -> None:
        try:
            queue.get()
        except ShutDown:
            raised.set()

    thread = threading.Thread(target=worker)
    thread.start()
    queue.shut_down()
    thread.join(WAIT)

    assert raised.is_set()
    queue.add("a", HIGH)
    assert queue.len() == 0
    with pytest.raises(ShutDown):
        queue.get(timeout=0)


def test_shut_down_with_drain_waits_for_in_flight_items(queue: PriorityQueue[str]) -> None:
    queue.add("a", LOW)
    queue.add("b", HIGH)
    b = queue.get(timeout=0)
    result: list[bool] = []
    drainer = threading.Thread(target=lambda: result.append(queue.shut_down_with_drain(WAIT)))
    drainer.start()
    with pytest.raises(ShutDown):
        queue.get()  # "a" is still queued, but a shut-down queue hands out nothing more

    queue.done(b)
    drainer.join(WAIT)
    assert result == [True]


def test_negative_aging_is_refused() -> None:
    with pytest.raises(ValueError, match="aging"):
        PriorityQueue(aging=-1.0)

"""Behaviour of the base work queue: dedup, per-item exclusivity, shutdown and metrics."""

from __future__ import annotations

import random
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from controller.runtime.clock import FakeClock
from controller.runtime.workqueue import ShutDown, WorkQueue

WAIT = 10.0  # real seconds a test may wait for a thread before it is declared stuck


def wait_for(predicate: Callable[[], bool], condition: threading.Condition) -> None:
    with condition:
        assert condition.wait_for(predicate, WAIT), "condition not reached in time"


def test_item_added_many_times_while_queued_is_handed_out_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for _ in range(3):
        queue.add("default/a")

    assert queue.len() == 1
    assert queue.get(timeout=0) == "default/a"
    with pytest.raises(TimeoutError):
        queue.get(timeout=0)


def test_items_are_handed_out_in_fifo_order() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ["c", "a", "b", "a"]:
        queue.add(key)

    assert [queue.get(timeout=0) for _ in range(3)] == ["c", "a", "b"]


def test_item_readded_while_processing_is_requeued_only_when_done() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    item = queue.get(timeout=0)

    queue.add("a")
    queue.add("a")
    assert queue.len() == 0
    with pytest.raises(TimeoutError):
        queue.get(timeout=0)  # a second worker must not get "a" while it is processing

    queue.done(item)
    assert queue.len() == 1
    assert queue.get(timeout=0) == "a"


def test_done_without_readd_does_not_requeue() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.done(queue.get(timeout=0))

    assert queue.len() == 0


def test_done_for_an_item_not_being_processed_is_ignored() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.done("a")  # queued, not processing: must not be queued twice

    assert queue.get(timeout=0) == "a"
    with pytest.raises(TimeoutError):
        queue.get(timeout=0)


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    """Make the interpreter switch threads often, so races have a chance to show."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


@pytest.mark.usefixtures("frequent_thread_switches")
def test_concurrent_workers_never_share_a_key_and_never_lose_an_add() -> None:
    """8 workers, 1000 adds over 50 keys racing with processing.

    Each add bumps the key's version before calling ``add``; a worker reads the version
    when it starts processing. If an add that raced with processing were dropped, the last
    processing would have seen an older version than the final one.
    """
    queue: WorkQueue[str] = WorkQueue()
    keys = [f"ns/worker-{i}" for i in range(50)]
    state = threading.Condition()
    version = dict.fromkeys(keys, 0)
    seen_version = dict.fromkeys(keys, 0)
    in_flight: set[str] = set()
    overlaps: list[str] = []
    worker_errors: list[BaseException] = []

    def work() -> None:
        try:
            while True:
                try:
                    key = queue.get()
                except ShutDown:
                    return
                with state:
                    if key in in_flight:
                        overlaps.append(key)
                    in_flight.add(key)
                    observed = version[key]
                sum(range(200))  # a little work while the key is in flight
                with state:
                    in_flight.discard(key)
                    seen_version[key] = max(seen_version[key], observed)
                    state.notify_all()
                queue.done(key)
        except BaseException as error:  # surfaced by the assertions below
            worker_errors.append(error)

    def produce(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(500):
            key = rng.choice(keys)
            with state:
                version[key] += 1
            queue.add(key)

    workers = [threading.Thread(target=work) for _ in range(8)]
    producers = [threading.Thread(target=produce, args=(seed,)) for seed in (1, 2)]
    for thread in workers + producers:
        thread.start()
    for thread in producers:
        thread.join(WAIT)

    wait_for(lambda: seen_version == version, state)
    queue.shut_down()
    for thread in workers:
        thread.join(WAIT)

    assert not worker_errors
    assert overlaps == []
    assert sum(version.values()) == 1000
    assert not any(thread.is_alive() for thread in workers + producers)


def test_get_blocked_on_an_empty_queue_is_released_by_shut_down() -> None:
    queue: WorkQueue[str] = WorkQueue()
    outcome: list[object] = []

    def consume() -> None:
        try:
            outcome.append(queue.get(timeout=WAIT))
        except (ShutDown, TimeoutError) as error:
            outcome.append(error)

    consumer = threading.Thread(target=consume)
    consumer.start()
    queue.shut_down()
    consumer.join(WAIT)

    assert not consumer.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], ShutDown)


def test_shut_down_refuses_new_items_and_stops_handing_out_queued_ones() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("queued")
    queue.shut_down()
    queue.add("late")

    assert queue.shutting_down()
    with pytest.raises(ShutDown):
        queue.get(timeout=0)


def test_shut_down_with_drain_waits_for_in_flight_items_to_finish() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("in-flight")
    queue.add("never-started")
    item = queue.get(timeout=0)
    events: list[str] = []
    events_lock = threading.Lock()
    drained: list[bool] = []

    assert queue.shut_down_with_drain(timeout=0) is False  # the item is still in flight

    def drain() -> None:
        drained.append(queue.shut_down_with_drain(timeout=WAIT))
        with events_lock:
            events.append("drained")

    drainer = threading.Thread(target=drain)
    drainer.start()
    queue.add(item)  # refused: shutting down
    with pytest.raises(ShutDown):
        queue.get(timeout=0)  # other workers stop instead of taking the queued item
    with events_lock:
        events.append("finished")
    queue.done(item)
    drainer.join(WAIT)

    assert drained == [True]
    assert events == ["finished", "drained"]
    assert queue.len() == 1  # the never-started item stays behind; a relist will find it


def test_shut_down_with_drain_returns_at_once_when_nothing_is_in_flight() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("queued-only")

    assert queue.shut_down_with_drain(timeout=0) is True


class RecordingMetrics:
    """Records every instrument call, per signal, for one or more named queues."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float | None]] = []
        self.callbacks: dict[tuple[str, str], Callable[[], float]] = {}

    def _instrument(self, signal: str, name: str) -> _RecordingInstrument:
        return _RecordingInstrument(self, signal, name)

    def new_depth_metric(self, name: str, /) -> _RecordingInstrument:
        return self._instrument("depth", name)

    def new_depth_metric_with_priority(self, name: str, priority: str, /) -> _RecordingInstrument:
        return self._instrument(f"depth[{priority}]", name)

    def new_adds_metric(self, name: str, /) -> _RecordingInstrument:
        return self._instrument("adds", name)

    def new_latency_metric(self, name: str, /) -> _RecordingInstrument:
        return self._instrument("latency", name)

    def new_work_duration_metric(self, name: str, /) -> _RecordingInstrument:
        return self._instrument("work_duration", name)

    def new_unfinished_work_seconds_metric(self, name: str, /) -> _RecordingInstrument:
        return self._instrument("unfinished", name)

    def new_longest_running_processor_seconds_metric(self, name: str, /) -> _RecordingInstrument:
        return self._instrument("longest", name)

    def new_retries_metric(self, name: str, /) -> _RecordingInstrument:
        return self._instrument("retries", name)

    def of(self, signal: str) -> list[tuple[str, float | None]]:
        return [(name, value) for s, name, value in self.calls if s == signal]


class _RecordingInstrument:
    def __init__(self, sink: RecordingMetrics, signal: str, name: str) -> None:
        self._sink, self._signal, self._name = sink, signal, name

    def inc(self) -> None:
        self._sink.calls.append((self._signal, self._name, 1))

    def dec(self) -> None:
        self._sink.calls.append((self._signal, self._name, -1))

    def observe(self, value: float, /) -> None:
        self._sink.calls.append((self._signal, self._name, value))

    def set_function(self, fn: Callable[[], float], /) -> None:
        self._sink.callbacks[(self._signal, self._name)] = fn


def test_metrics_follow_an_item_through_add_get_and_done() -> None:
    clock = FakeClock()
    metrics = RecordingMetrics()
    queue: WorkQueue[str] = WorkQueue(name="labworkers", metrics=metrics, clock=clock)
    unfinished = metrics.callbacks[("unfinished", "labworkers")]
    longest = metrics.callbacks[("longest", "labworkers")]

    queue.add("a")
    queue.add("a")  # deduplicated: not an add
    queue.add("b")
    clock.step(2.0)
    a = queue.get(timeout=0)
    clock.step(1.0)
    b = queue.get(timeout=0)
    clock.step(3.0)

    assert unfinished() == pytest.approx(4.0 + 3.0)
    assert longest() == pytest.approx(4.0)
    queue.done(a)
    queue.done(b)

    assert metrics.of("adds") == [("labworkers", 1), ("labworkers", 1)]
    assert sum(value or 0 for _, value in metrics.of("depth")) == 0
    assert metrics.of("latency") == [("labworkers", 2.0), ("labworkers", 3.0)]
    assert metrics.of("work_duration") == [("labworkers", 4.0), ("labworkers", 3.0)]
    assert unfinished() == 0.0
    assert longest() == 0.0


def test_depth_counts_an_item_readded_while_processing() -> None:
    metrics = RecordingMetrics()
    queue: WorkQueue[str] = WorkQueue(name="q", metrics=metrics)
    queue.add("a")
    item = queue.get(timeout=0)
    queue.add("a")

    assert sum(value or 0 for _, value in metrics.of("depth")) == 1
    queue.done(item)
    queue.get(timeout=0)
    assert sum(value or 0 for _, value in metrics.of("depth")) == 0

"""read_ahead: the same items in the same order, errors where they happened, bounded, and a
producer that ends when the consumer leaves."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from controller.storage.read_ahead import read_ahead

WAIT = 10.0  # seconds: a bound on awaiting a condition, never a measured duration


def test_items_arrive_in_order_and_the_source_ran_on_another_thread() -> None:
    threads: set[str] = set()

    def source() -> Iterator[int]:
        for i in range(50):
            threads.add(threading.current_thread().name)
            yield i

    assert list(read_ahead(source(), name="pages")) == list(range(50))
    assert threads == {"pages"}


def test_an_error_of_the_source_is_raised_after_the_items_before_it() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise ConnectionError("etcd went away")

    seen: list[int] = []
    with pytest.raises(ConnectionError, match="etcd went away"):
        for item in read_ahead(source()):
            seen.append(item)
    assert seen == [1, 2]


def test_the_producer_stays_at_most_depth_plus_one_items_ahead() -> None:
    produced = 0
    progress = threading.Condition()

    def source() -> Iterator[int]:
        nonlocal produced
        for i in range(100):
            with progress:
                produced += 1
                progress.notify_all()
            yield i

    items = read_ahead(source(), depth=2)
    assert next(items) == 0
    with progress:  # one taken, two queued, one held by the blocked producer
        assert progress.wait_for(lambda: produced == 4, WAIT)
        assert not progress.wait_for(lambda: produced > 4, 0.3)
    items.close()


def test_a_consumer_that_stops_early_ends_the_producer_and_closes_the_source() -> None:
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    items = read_ahead(source(), name="abandoned")
    assert [next(items), next(items)] == [0, 1]
    items.close()
    assert closed.wait(WAIT)
    for thread in threading.enumerate():
        if thread.name == "abandoned":
            thread.join(WAIT)
            assert not thread.is_alive()

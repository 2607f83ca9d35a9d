"""Write health: the failing window on a fake clock, and the alarm monitor's decisions."""

from __future__ import annotations

import logging
import threading

import pytest

from controller.runtime.clock import FakeClock
from controller.runtime.write_health import AlarmMonitor, WriteFailureTracker
from controller.storage import (
    Conflict,
    Fenced,
    InvalidRequest,
    PermissionDenied,
    QuotaExceeded,
    Unavailable,
)

PREFIX = "/lab-resource-manager"
DENIED = PermissionDenied("127.0.0.1:2379: /kv/txn: etcdserver: permission denied")
NOSPACE = QuotaExceeded("127.0.0.1:2379: /kv/txn: etcdserver: mvcc: database space exceeded")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(100.0)


def tracker(clock: FakeClock, changes: list[bool] | None = None) -> WriteFailureTracker:
    return WriteFailureTracker(
        prefix=PREFIX,
        username="reader",
        clock=clock.now,
        on_change=changes.append if changes is not None else None,
    )


def fail_every(
    t: WriteFailureTracker, clock: FakeClock, n: int, step: float, error: Exception
) -> None:
    for _ in range(n):
        t.record("/kv/txn", 0.001, error)
        clock.step(step)


def test_no_writes_at_all_is_ready(clock: FakeClock) -> None:
    # A standby never writes: no data must not read as failing.
    t = tracker(clock)
    clock.step(3600)
    assert t.check()[0] and not t.failing


def test_failing_needs_three_failures_spanning_five_seconds(clock: FakeClock) -> None:
    changes: list[bool] = []
    t = tracker(clock, changes)
    fail_every(t, clock, 10, 0.1, DENIED)  # many failures, but within one second
    assert t.check()[0]
    clock.step(4.2)
    t.record("/kv/put", 0.001, DENIED)  # now the streak spans > 5 s
    ok, detail = t.check()
    assert not ok and changes == [True]
    assert detail.startswith("writes failing for 5s (11 consecutive failures): PermissionDenied")
    assert f"the etcd user 'reader' cannot write under {PREFIX}" in detail


def test_two_slow_failures_are_not_enough(clock: FakeClock) -> None:
    t = tracker(clock)
    fail_every(t, clock, 2, 30.0, Unavailable("etcd unavailable"))
    assert t.check()[0]
    t.record("/kv/txn", 0.001, Unavailable("etcd unavailable"))
    assert not t.check()[0]


def test_conflicts_fencing_and_bad_requests_are_not_failures(clock: FakeClock) -> None:
    t = tracker(clock)
    for error in (Conflict("k", 1, None), Fenced("k"), InvalidRequest("too large")) * 5:
        t.record("/kv/txn", 0.001, error)
        clock.step(1.0)
    assert t.check() == (True, "writes succeeding (no failure since the last success)")


def test_a_txn_whose_compare_failed_is_a_successful_write(clock: FakeClock) -> None:
    changes: list[bool] = []
    t = tracker(clock, changes)
    fail_every(t, clock, 3, 3.0, NOSPACE)
    assert t.failing
    t.record("/kv/txn", 0.001, None)  # the RPC succeeded (whatever its compare said)
    assert t.check()[0] and changes == [True, False]
    # And the next streak starts from zero.
    fail_every(t, clock, 2, 3.0, NOSPACE)
    assert t.check()[0]


def test_success_resets_a_streak_before_it_fails(clock: FakeClock) -> None:
    t = tracker(clock)
    for _ in range(5):
        fail_every(t, clock, 2, 3.0, DENIED)
        t.record("/kv/deleterange", 0.001, None)
    assert t.check()[0]


def test_a_granted_lease_does_not_prove_writes_but_a_refused_one_fails(clock: FakeClock) -> None:
    # A read-only user may grant leases; the elector grants one per attempt, then its txn
    # is denied: the grants must not keep resetting the streak.
    t = tracker(clock)
    for _ in range(4):
        t.record("/lease/grant", 0.001, None)
        t.record("/kv/txn", 0.001, DENIED)
        clock.step(2.0)
    assert not t.check()[0]
    t2 = tracker(clock)
    fail_every(t2, clock, 3, 3.0, NOSPACE)
    t2.record("/lease/grant", 0.001, NOSPACE)
    assert t2.failing


def test_reads_are_ignored(clock: FakeClock) -> None:
    t = tracker(clock)
    for _ in range(5):
        t.record("/kv/range", 0.001, Unavailable("down"))
        clock.step(3.0)
    assert t.check()[0]
    fail_every(t, clock, 3, 3.0, DENIED)
    t.record("/kv/range", 0.001, None)  # a read succeeding says nothing about writes
    assert not t.check()[0]


def test_transitions_are_logged_once_each(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    t = tracker(clock)
    with caplog.at_level(logging.INFO, logger="controller.runtime.write_health"):
        fail_every(t, clock, 50, 1.0, NOSPACE)
        t.record("/kv/put", 0.001, None)
        t.record("/kv/put", 0.001, None)
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert len(messages) == 2
    assert messages[0][0] == logging.WARNING
    assert messages[0][1].startswith("etcd writes failing: 6 consecutive writes refused over 5s")
    assert "compact and defragment etcd, then disarm the alarm" in messages[0][1]
    assert messages[1] == (
        logging.INFO,
        "etcd writes succeed again after 50s of failures (50 failed writes); "
        "the etcd-writes readiness check passes",
    )


def test_quota_exceeded_asks_for_an_alarm_poll(clock: FakeClock) -> None:
    asked: list[int] = []
    t = WriteFailureTracker(clock=clock.now, on_quota_exceeded=lambda: asked.append(1))
    t.record("/kv/txn", 0.001, DENIED)
    t.record("/kv/txn", 0.001, NOSPACE)
    assert asked == [1]


# -- alarms -------------------------------------------------------------------------------


def test_alarm_detail_names_the_alarm_the_member_and_the_remedy() -> None:
    alarms: list[tuple[int, str]] = []
    changes: list[frozenset[str]] = []
    monitor = AlarmMonitor(lambda: alarms, on_change=changes.append)
    assert monitor.check()[0]  # not polled yet: nothing known against us
    monitor.poll()
    assert monitor.check() == (True, "no etcd alarm")
    alarms[:] = [(0x7D69540730913F95, "NOSPACE")]
    monitor.poll()
    ok, detail = monitor.check()
    assert not ok
    assert detail == (
        "etcd NOSPACE alarm active (member 7d69540730913f95): the backend quota is full and "
        "etcd refuses writes; compact and defragment etcd, then disarm the alarm "
        "(etcdctl alarm disarm)"
    )
    monitor.poll()  # unchanged: no second notification
    alarms[:] = []
    monitor.poll()
    assert monitor.check()[0]
    assert changes == [frozenset({"NOSPACE"}), frozenset()]


def test_a_failed_poll_keeps_the_last_known_alarms() -> None:
    answers: list[object] = [[(1, "CORRUPT")], Unavailable("etcd unavailable")]

    def list_alarms() -> list[tuple[int, str]]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    monitor = AlarmMonitor(list_alarms)
    monitor.poll()
    monitor.poll()
    ok, detail = monitor.check()
    assert not ok and detail.startswith("etcd CORRUPT alarm active (member 1)")


def test_alarm_list_refused_falls_back_to_write_outcomes(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def refused() -> list[tuple[int, str]]:
        calls.append(1)
        raise PermissionDenied("127.0.0.1:2379: /maintenance/alarm: etcdserver: permission denied")

    monitor = AlarmMonitor(refused, interval=0.01, min_gap=0.0)
    with caplog.at_level(logging.INFO, logger="controller.runtime.write_health"):
        monitor.start()
        assert monitor._thread is not None
        monitor._thread.join(5.0)
        assert not monitor._thread.is_alive()  # polling stopped for good
        monitor.poll_soon()
    monitor.stop()
    assert calls == [1]
    assert monitor.check() == (
        True,
        "etcd refuses to list alarms to this user: relying on write outcomes",
    )
    assert [r.levelno for r in caplog.records] == [logging.INFO]


def test_poll_soon_wakes_the_monitor_before_its_interval() -> None:
    polls = threading.Semaphore(0)

    def list_alarms() -> list[tuple[int, str]]:
        polls.release()
        return []

    monitor = AlarmMonitor(list_alarms, interval=3600.0, min_gap=0.0)
    monitor.start()
    try:
        assert polls.acquire(timeout=5.0)  # the first poll, at start
        monitor.poll_soon()
        assert polls.acquire(timeout=5.0)  # long before the hour-long interval
    finally:
        monitor.stop()

"""Recording events never fails or blocks a reconcile, whatever etcd does: while etcd is
stopped (SIGSTOP) or killed, `event()` returns at once, failed writes are logged and counted,
a full queue drops and counts, and once etcd is back new events are written again."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.events.kind import EVENT
from controller.events.model import Event
from controller.events.recorder import EventRecorder
from controller.labworker.model import LabWorker
from controller.runtime.repository import Repository
from controller.storage import EtcdClient, connect
from tests.etcdproc import EtcdProcess, wait_until

STOPPED_TIMEOUT = 10.0
"""The client's deadline in tests that stop etcd: a write to it (read timeout: half of this)
is surely still in flight when the test looks right after recording."""
KILLED_TIMEOUT = 2.0
"""A killed etcd refuses connections; the client retries that until its deadline."""


def worker(name: str = "w1", uid: str = "uid-1") -> LabWorker:
    return LabWorker.model_validate(
        {
            "metadata": {"name": name, "namespace": "emea", "uid": uid},
            "spec": {"labTrack": "ccna"},
        }
    )


@pytest.fixture
def root() -> str:
    return f"/events-faults/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def repo(etcd: EtcdProcess, root: str) -> Iterator[Repository[Event]]:
    """The test's own view of the stored Events (a separate client)."""
    client = connect(etcd.endpoint)
    yield Repository(client, EVENT, root)
    client.close()


@pytest.fixture
def make(etcd: EtcdProcess, root: str) -> Iterator[Any]:
    """A started recorder whose client has the given deadline."""
    made: list[tuple[EventRecorder, EtcdClient]] = []

    def build(timeout: float, **options: Any) -> EventRecorder:
        client = connect(etcd.endpoint, timeout=timeout)
        recorder = EventRecorder(
            Repository(client, EVENT, root), reporting_instance="replica-1", **options
        )
        recorder.start()
        made.append((recorder, client))
        return recorder

    yield build
    etcd.resume()  # a test that failed while etcd was stopped must not hang the teardown
    for recorder, client in made:
        recorder.stop(STOPPED_TIMEOUT)
        client.close()


def stop_etcd(etcd: EtcdProcess) -> None:
    """SIGSTOP, then wait until the kernel has stopped every thread of it: a request sent
    before that could still be answered."""
    etcd.pause()
    assert etcd.proc is not None
    tasks = Path(f"/proc/{etcd.proc.pid}/task")

    def stopped() -> bool:
        states = [
            (task / "stat").read_text().rpartition(")")[2].split()[0] for task in tasks.iterdir()
        ]
        return all(state == "T" for state in states)

    wait_until(stopped, timeout=10, what="every etcd thread to be stopped")


def reasons(repo: Repository[Event]) -> set[str]:
    return {e.reason for e in repo.list()}


def test_while_etcd_is_stopped_event_returns_at_once_and_failures_are_counted(
    make: Any, repo: Repository[Event], etcd: EtcdProcess, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = make(STOPPED_TIMEOUT, queue_size=2)
    w = worker()
    recorder.event(w, "Normal", "Before", "etcd is up")
    assert recorder.flush(10)  # the lease exists: the next write is one txn
    stop_etcd(etcd)
    try:
        for i in range(10):
            recorder.event(w, "Warning", "During", f"etcd is stopped ({i})")
        # Every call returned while the first write is still waiting for the stopped etcd.
        assert recorder.pending() > 0
        stats = recorder.stats()
        # The queue holds 2, and the batch in flight took at most the 2 it held.
        assert stats.dropped["queue_full"] >= 10 - 2 - 2
        wait_until(
            lambda: recorder.stats().write_failed >= 1,
            timeout=60,
            what="the write to the stopped etcd to fail",
        )
    finally:
        etcd.resume()
    recorder.event(w, "Normal", "After", "etcd is back")
    wait_until(lambda: "After" in reasons(repo), timeout=20, what="an event written after resume")
    failed = [r for r in caplog.records if "could not write event" in r.getMessage()]
    assert failed, "each failed write is logged"
    assert all(r.__dict__["event_name"].startswith("w1.") for r in failed)
    assert all(r.__dict__["object"] == "emea/w1" for r in failed)
    assert {r.__dict__["error_type"] for r in failed} <= {"Unavailable"}


def test_while_etcd_is_killed_writes_fail_and_after_restart_events_are_written(
    make: Any, repo: Repository[Event], etcd: EtcdProcess
) -> None:
    recorder = make(KILLED_TIMEOUT)
    w = worker()
    recorder.event(w, "Normal", "Before", "etcd is up")
    assert recorder.flush(10)
    etcd.kill()
    recorder.event(w, "Warning", "During", "etcd is down")
    recorder.event(w, "Normal", "Before", "etcd is up")  # a repeat: its update fails too
    wait_until(
        lambda: recorder.stats().write_failed == 2,
        timeout=30,
        what="both writes to the killed etcd to fail",
    )
    assert recorder.pending() == 0
    etcd.start()
    recorder.event(w, "Normal", "After", "etcd is back")
    recorder.event(w, "Normal", "Before", "etcd is up")  # the remembered Event counts on
    wait_until(lambda: "After" in reasons(repo), timeout=20, what="an event written after restart")
    assert recorder.flush(10)
    counts = {e.reason: e.count for e in repo.list()}
    assert counts == {"Before": 2, "After": 1}
    assert recorder.stats().write_failed == 2


def test_stop_gives_up_on_a_stopped_etcd_within_its_timeout(
    make: Any, repo: Repository[Event], etcd: EtcdProcess
) -> None:
    recorder = make(STOPPED_TIMEOUT)
    w = worker()
    recorder.event(w, "Normal", "Before", "etcd is up")
    assert recorder.flush(10)
    stop_etcd(etcd)
    try:
        for i in range(3):
            recorder.event(w, "Normal", "Queued", f"queued {i}")
        assert recorder.stop(0.2) is False  # a write is still waiting for etcd
        wait_until(
            lambda: recorder.pending() == 0,
            timeout=60,
            what="the writer to give up on the stopped etcd",
        )
    finally:
        etcd.resume()
    # Every queued event is accounted for: those of the one write in flight (events queued
    # together are written in one transaction) failed, the rest were dropped at shutdown
    # (all three, if the writer only woke after the stop deadline).
    stats = recorder.stats()
    assert stats.write_failed + stats.dropped.get("shutdown", 0) == 3

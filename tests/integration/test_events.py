"""The EventRecorder against a real etcd: aggregation, leases and expiry, the spam filter,
the bounded queue, reading an object's events back, and wiring into a Manager."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from controller import config, events
from controller.events.kind import EVENT
from controller.events.model import Event
from controller.events.query import events_for
from controller.events.recorder import REPORTING_CONTROLLER, EventRecorder
from controller.labworker.model import LabWorker
from controller.runtime.clock import FakeClock
from controller.runtime.controller import NoopReconcileMetrics
from controller.runtime.leader import LeaderElector
from controller.runtime.manager import Manager, ManagerOptions
from controller.runtime.repository import Repository
from controller.storage import EtcdClient, connect
from tests.etcdproc import EtcdProcess, wait_until


def worker(name: str = "w1", uid: str = "uid-1", namespace: str = "emea") -> LabWorker:
    return LabWorker.model_validate(
        {
            "metadata": {"name": name, "namespace": namespace, "uid": uid},
            "spec": {"labTrack": "ccna"},
        }
    )


@pytest.fixture
def client(shared_etcd: EtcdProcess) -> Iterator[EtcdClient]:
    c = connect(shared_etcd.endpoint)
    yield c
    c.close()


@pytest.fixture
def root() -> str:
    return f"/events-test/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def repo(client: EtcdClient, root: str) -> Repository[Event]:
    return Repository(client, EVENT, root)


class Recorders:
    """Builds recorders on the test's prefix and stops them all at teardown."""

    def __init__(self, repo: Repository[Event]) -> None:
        self.repo = repo
        self.made: list[EventRecorder] = []

    def __call__(self, *, start: bool = True, **options: Any) -> EventRecorder:
        recorder = EventRecorder(self.repo, reporting_instance="replica-1", **options)
        self.made.append(recorder)
        if start:
            recorder.start()
        return recorder


@pytest.fixture
def recorders(repo: Repository[Event]) -> Iterator[Recorders]:
    made = Recorders(repo)
    yield made
    for recorder in made.made:
        recorder.stop(10)


def stored(repo: Repository[Event]) -> list[Event]:
    return repo.list()


# -- aggregation -------------------------------------------------------------------------------


def test_the_same_event_five_times_is_one_event_with_count_5(
    recorders: Recorders, repo: Repository[Event]
) -> None:
    recorder = recorders()
    w = worker()
    for _ in range(5):
        recorder.event(w, "Normal", "Provisioning", "instance i-1 requested")
    found = wait_until(
        lambda: [e for e in stored(repo) if e.count == 5], timeout=10, what="one Event, count 5"
    )
    assert len(stored(repo)) == 1
    event = found[0]
    assert re.fullmatch(r"w1\.[0-9a-f]{16}", event.metadata.name)
    assert event.metadata.namespace == "emea"
    assert event.involved_object.model_dump() == {
        "apiVersion": "lab.neuroglia.io/v1",
        "kind": "LabWorker",
        "name": "w1",
        "namespace": "emea",
        "uid": "uid-1",
    }
    assert (event.type, event.reason, event.message) == (
        "Normal",
        "Provisioning",
        "instance i-1 requested",
    )
    assert event.first_timestamp <= event.last_timestamp
    assert event.reporting_controller == REPORTING_CONTROLLER
    assert event.reporting_instance == "replica-1"
    stats = recorder.stats()
    assert (stats.recorded, stats.aggregated, stats.write_failed) == (1, 4, 0)


def test_a_different_message_is_a_second_event(
    recorders: Recorders, repo: Repository[Event]
) -> None:
    recorder = recorders()
    w = worker()
    recorder.event(w, "Normal", "Provisioning", "instance i-1 requested")
    recorder.event(w, "Normal", "Provisioning", "instance i-2 requested")
    recorder.event(w, "Normal", "Provisioning", "instance i-1 requested")
    assert recorder.flush(10)
    by_message = {e.message: e.count for e in stored(repo)}
    assert by_message == {"instance i-1 requested": 2, "instance i-2 requested": 1}


def test_a_recreated_object_gets_its_own_events(
    recorders: Recorders, repo: Repository[Event]
) -> None:
    recorder = recorders()
    recorder.event(worker(uid="uid-1"), "Normal", "Provisioning", "m")
    recorder.event(worker(uid="uid-2"), "Normal", "Provisioning", "m")
    assert recorder.flush(10)
    assert sorted(e.involved_object.uid or "" for e in stored(repo)) == ["uid-1", "uid-2"]


# -- leases ------------------------------------------------------------------------------------


def test_every_event_is_stored_with_a_lease(
    recorders: Recorders, repo: Repository[Event], client: EtcdClient
) -> None:
    recorder = recorders(event_ttl=120, lease_window=60)
    recorder.event(worker(), "Warning", "InstanceLost", "instance i-1 is gone")
    assert recorder.flush(10)
    (event,) = stored(repo)
    kv = client.get(EVENT.etcd_key(repo.root, _key(event)))
    assert kv is not None and kv.lease != 0
    assert 0 < client.lease_time_to_live(kv.lease) <= 120 + 60


def test_one_lease_serves_a_window_then_a_new_one_is_granted(
    recorders: Recorders, repo: Repository[Event], client: EtcdClient
) -> None:
    clock = FakeClock()
    recorder = recorders(event_ttl=120, lease_window=60, clock=clock)
    w = worker()
    recorder.event(w, "Normal", "A", "first")
    recorder.event(w, "Normal", "B", "second")
    assert recorder.flush(10)
    leases = {e.reason: _lease(client, repo, e) for e in stored(repo)}
    assert leases["A"] == leases["B"] != 0
    clock.step(60)
    recorder.event(w, "Normal", "C", "third")
    recorder.event(w, "Normal", "A", "first")  # the repeat moves A onto the new lease
    assert recorder.flush(10)
    after = {e.reason: _lease(client, repo, e) for e in stored(repo)}
    assert after["C"] != leases["A"]
    assert after["A"] == after["C"]
    assert recorder.leases.granted == 2


def test_events_expire_with_their_lease_and_a_repeat_starts_a_new_one(
    recorders: Recorders, repo: Repository[Event]
) -> None:
    recorder = recorders(event_ttl=2, lease_window=0)
    w = worker()
    recorder.event(w, "Normal", "Provisioning", "m")
    assert recorder.flush(10)
    (first,) = stored(repo)
    wait_until(lambda: not stored(repo), timeout=20, what="the Event to expire with its lease")
    recorder.event(w, "Normal", "Provisioning", "m")
    assert recorder.flush(10)
    (second,) = stored(repo)
    assert second.metadata.name != first.metadata.name and second.count == 1
    stats = recorder.stats()
    assert (stats.recorded, stats.aggregated, stats.write_failed) == (2, 0, 0)


def test_a_lease_that_expired_under_the_recorder_is_replaced_and_nothing_is_lost(
    recorders: Recorders, repo: Repository[Event]
) -> None:
    # The fake clock never leaves the window, so the recorder keeps offering the old lease
    # after etcd expired it (as after a long etcd outage): etcd refuses it, a new one is used.
    recorder = recorders(event_ttl=2, lease_window=1, clock=FakeClock())
    w = worker()
    recorder.event(w, "Normal", "First", "m")
    assert recorder.flush(10)
    wait_until(lambda: not stored(repo), timeout=20, what="the lease to expire")
    recorder.event(w, "Normal", "Second", "m")
    assert recorder.flush(10)
    assert [e.reason for e in stored(repo)] == ["Second"]
    assert recorder.leases.granted == 2
    stats = recorder.stats()
    assert (stats.recorded, stats.write_failed) == (2, 0)


# -- spam filter, queue, bad input -------------------------------------------------------------


def test_an_object_spamming_events_is_rate_limited(
    recorders: Recorders, repo: Repository[Event]
) -> None:
    clock = FakeClock()
    recorder = recorders(clock=clock)
    w, other = worker("w1"), worker("w2", uid="uid-2")
    for _ in range(30):
        recorder.event(w, "Warning", "HealthCheckFailed", "host does not answer")
    recorder.event(other, "Normal", "Ready", "host answers")  # its own budget
    assert recorder.flush(10)
    assert recorder.stats().dropped == {"rate_limited": 5}
    counts = {e.involved_object.name: e.count for e in stored(repo)}
    assert counts == {"w1": 25, "w2": 1}
    clock.step(300)  # one token back
    recorder.event(w, "Warning", "HealthCheckFailed", "host does not answer")
    recorder.event(w, "Warning", "HealthCheckFailed", "host does not answer")
    assert recorder.flush(10)
    assert recorder.stats().dropped == {"rate_limited": 6}
    assert {e.involved_object.name: e.count for e in stored(repo)}["w1"] == 26


def test_a_full_queue_drops_and_counts_then_writes_what_it_holds(
    recorders: Recorders, repo: Repository[Event]
) -> None:
    recorder = recorders(start=False, queue_size=3)
    w = worker()
    for i in range(5):
        recorder.event(w, "Normal", "Step", f"step {i}")  # nothing writes yet: the queue fills
    stats = recorder.stats()
    assert stats.dropped == {"queue_full": 2} and stats.queued == 3
    recorder.start()
    assert recorder.flush(10)
    assert sorted(e.message for e in stored(repo)) == ["step 0", "step 1", "step 2"]
    recorder.event(w, "Normal", "Step", "step 5")  # room again
    assert recorder.flush(10)
    assert len(stored(repo)) == 4 and recorder.stats().dropped == {"queue_full": 2}


def test_an_invalid_event_is_refused_logged_and_counted_never_raised(
    recorders: Recorders, repo: Repository[Event], caplog: pytest.LogCaptureFixture
) -> None:
    recorder = recorders()
    w = worker()
    recorder.event(w, "Normal", "", "no reason")
    recorder.event(w, "Error", "Oops", "not a type")  # type: ignore[arg-type]
    recorder.event(w, "Normal", "Fine", "valid")
    assert recorder.flush(10)
    assert [e.reason for e in stored(repo)] == ["Fine"]
    assert recorder.stats().write_failed == 2
    refused = [r for r in caplog.records if "refused to record event" in r.getMessage()]
    assert len(refused) == 2 and all(r.__dict__["object"] == "emea/w1" for r in refused)


def test_a_long_message_is_shortened_not_refused(
    recorders: Recorders, repo: Repository[Event]
) -> None:
    recorder = recorders()
    recorder.event(worker(), "Normal", "Chatty", "x" * 10_000)
    assert recorder.flush(10)
    (event,) = stored(repo)
    assert len(event.message) == 1024 and event.message.endswith("…")


def test_stop_writes_what_is_queued_and_later_events_are_dropped(
    recorders: Recorders, repo: Repository[Event]
) -> None:
    recorder = recorders(start=False)
    w = worker()
    for i in range(3):
        recorder.event(w, "Normal", "Step", f"step {i}")
    recorder.start()
    assert recorder.stop(10)
    assert len(stored(repo)) == 3
    recorder.event(w, "Normal", "Step", "after stop")
    assert recorder.stats().dropped == {"shutdown": 1}
    assert len(stored(repo)) == 3


# -- reading back ------------------------------------------------------------------------------


def test_events_for_lists_an_objects_events_newest_last(
    recorders: Recorders, repo: Repository[Event], client: EtcdClient, root: str
) -> None:
    recorder = recorders()
    w1, w2 = worker("w1"), worker("w2", uid="uid-2")
    for reason in ("Provisioning", "Starting", "Ready"):
        recorder.event(w1, "Normal", reason, f"{reason} w1")
        recorder.event(w2, "Normal", reason, f"{reason} w2")
    assert recorder.flush(10)
    recorder.event(w1, "Normal", "Provisioning", "Provisioning w1")  # a repeat: now the newest
    assert recorder.flush(10)
    found = events_for(client, root, "emea", "w1")
    assert [e.reason for e in found] == ["Starting", "Ready", "Provisioning"]
    assert events_for(repo, "ignored", "emea", "w1") == found
    assert events_for(client, root, "emea", "w1", "uid-1") == found
    assert events_for(client, root, "emea", "w1", "an-earlier-w1") == []
    assert events_for(client, root, "emea", "w1", kind="LabPool") == []
    assert events_for(client, root, "apac", "w1") == []
    assert [e.reason for e in events_for(client, root, "emea", "w2")] == [
        "Provisioning",
        "Starting",
        "Ready",
    ]


# -- wiring ------------------------------------------------------------------------------------


class MetricsWithEvents(NoopReconcileMetrics):
    """A reconcile-metrics object that also implements EventMetrics (as the lead's
    ControllerMetrics will): setup must hand it to the recorder."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def event_recorded(self, type: str) -> None:
        self.calls.append(("recorded", type))

    def event_aggregated(self, type: str) -> None:
        self.calls.append(("aggregated", type))

    def event_dropped(self, reason: str) -> None:
        self.calls.append(("dropped", reason))

    def event_write_failed(self) -> None:
        self.calls.append(("write_failed", ""))


def test_setup_installs_an_unfenced_recorder_on_the_manager(
    client: EtcdClient, root: str, repo: Repository[Event]
) -> None:
    metrics = MetricsWithEvents()
    # A leader elector that never campaigned: every fenced write of this manager would fail.
    elector = LeaderElector(client, f"{root}/leader/test", identity="replica-7")
    manager = Manager(client, ManagerOptions(root=root, reconcile_metrics=metrics), elector=elector)
    settings = replace(config.load(None, {}), events=config.EventSettings(ttl=600))
    events.setup(manager, settings)
    recorder = manager.recorder
    assert isinstance(recorder, EventRecorder)
    assert recorder in manager.runnables
    assert (recorder.name, recorder.needs_leader) == ("event-recorder", False)
    assert recorder.reporting_instance == "replica-7"
    assert recorder.leases.ttl == 600
    recorder.start()
    try:
        w = worker()
        recorder.event(w, "Normal", "Provisioning", "m")
        recorder.event(w, "Normal", "Provisioning", "m")
        assert recorder.flush(10)
    finally:
        assert recorder.stop(10)
    (event,) = stored(repo)
    assert event.count == 2 and event.reporting_instance == "replica-7"
    assert metrics.calls == [("recorded", "Normal"), ("aggregated", "Normal")]


def test_setup_without_event_metrics_uses_none(client: EtcdClient, root: str) -> None:
    manager = Manager(client, ManagerOptions(root=root))
    events.setup(manager, config.load(None, {}))
    assert isinstance(manager.recorder, EventRecorder)
    assert manager.recorder.leases.ttl == 3600


def _key(event: Event) -> Any:
    from controller.resources import ObjectKey

    return ObjectKey(event.metadata.namespace, event.metadata.name)


def _lease(client: EtcdClient, repo: Repository[Event], event: Event) -> int:
    kv = client.get(EVENT.etcd_key(repo.root, _key(event)))
    assert kv is not None
    return kv.lease


def test_a_burst_of_new_events_is_written_in_few_transactions_and_repeats_fold(
    recorders: Recorders, repo: Repository[Event]
) -> None:
    """Events queued while the writer is busy are written together (one transaction per
    batch), and a repeat queued beside its first occurrence becomes one Event, count 2."""
    recorder = recorders(start=False)  # the queue fills before the writer runs
    workers = [worker(f"burst-{i}", uid=f"uid-{i}") for i in range(40)]
    for w in workers:
        recorder.event(w, "Normal", "Burst", "one of many")
    recorder.event(workers[0], "Normal", "Burst", "one of many")
    methods: list[str] = []
    hook = lambda method, _seconds, _error: methods.append(method)  # noqa: E731
    repo.client.request_hooks.append(hook)
    try:
        recorder.start()
        assert recorder.flush(30)
    finally:
        repo.client.request_hooks.remove(hook)
    found = {e.involved_object.name: e for e in stored(repo)}
    assert len(found) == 40
    assert found["burst-0"].count == 2
    assert all(e.count == 1 for name, e in found.items() if name != "burst-0")
    assert methods.count("/kv/txn") == 1, methods
    assert recorder.stats().recorded == 40

"""The quota controller against a real etcd: status from the usage record, and drift healed
when workers were written around the repository (etcdctl).

The reconciler is called directly (no Manager) for the precise cases, then the whole
controller runs in the app `labctl run` builds, beside the LabWorker controller.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from dataclasses import dataclass, field

import pytest

from controller.app import App, repositories
from controller.labworker.kind import LABWORKER
from controller.labworker.model import LabWorker
from controller.quota.kind import LABQUOTA
from controller.quota.model import LabQuota
from controller.quota.reconciler import QuotaReconciler
from controller.quota.usage import usage_key
from controller.resources import ObjectKey, Resource, find_condition
from controller.runtime.clock import FakeClock
from controller.runtime.recorder import EventType
from controller.runtime.repository import RepositorySet
from controller.runtime.result import Result
from controller.storage import EtcdClient, connect
from tests.etcdproc import EtcdProcess, wait_until

NS = "team-a"
QUOTA = ObjectKey(NS, "team-a")


@dataclass
class RecordedEvents:
    """A Recorder that keeps what it is told (the events package stores them in etcd)."""

    events: list[tuple[str, str, str, str]] = field(default_factory=list)

    def event(self, obj: Resource, type: EventType, reason: str, message: str) -> None:
        self.events.append((obj.metadata.name, type, reason, message))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def recorded() -> RecordedEvents:
    return RecordedEvents()


@pytest.fixture
def reconciler(
    client: EtcdClient, root: str, repos: RepositorySet, clock: FakeClock, recorded: RecordedEvents
) -> QuotaReconciler:
    return QuotaReconciler(client, root, repos.for_kind(LABQUOTA), recorder=recorded, clock=clock)


def worker(name: str, instance_type: str = "m5zn.metal", namespace: str = NS) -> LabWorker:
    return LabWorker.model_validate(
        {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"labTrack": "ccna", "instance": {"type": instance_type}},
        }
    )


def quota(hard: dict[str, int], name: str = "team-a") -> LabQuota:
    return LabQuota.model_validate(
        {"metadata": {"name": name, "namespace": NS}, "spec": {"hard": hard}}
    )


def etcdctl_put_worker(etcd: EtcdProcess, root: str, w: LabWorker) -> None:
    """What an operator with etcdctl does: a valid worker, no admission, no usage record."""
    w.metadata.uid = w.metadata.uid or str(uuid.uuid4())
    w.metadata.generation = 1
    etcd.put(
        LABWORKER.etcd_key(root, ObjectKey(w.metadata.namespace, w.metadata.name)),
        w.to_storage_json(),
    )


def usage(client: EtcdClient, root: str) -> dict[str, int] | None:
    kv = client.get(usage_key(root, NS))
    return None if kv is None else dict(json.loads(kv.value))


def stored_quota(repos: RepositorySet, key: ObjectKey = QUOTA) -> LabQuota:
    q = repos.for_kind(LABQUOTA).get_by_key(key)
    assert q is not None
    return q


def test_status_reports_hard_and_used_from_the_usage_record(
    repos: RepositorySet, reconciler: QuotaReconciler, recorded: RecordedEvents
) -> None:
    repos.for_kind(LABQUOTA).create(quota({"labworkers": 5, "labworkers/m5zn.metal": 2}))
    workers = repos.for_kind(LABWORKER)
    workers.create(worker("w1"))
    workers.create(worker("w2", "c5.metal"))

    assert reconciler.reconcile(QUOTA) == Result.done()

    q = stored_quota(repos)
    assert q.status.hard == {"labworkers": 5, "labworkers/m5zn.metal": 2}
    assert q.status.used == {"labworkers": 2, "labworkers/m5zn.metal": 1}
    assert q.status.observed_generation == 1
    full = find_condition(q.status.conditions, "Full")
    assert full is not None and (full.status, full.reason) == ("False", "WithinLimits")
    assert recorded.events == []  # nothing to correct

    # Nothing changed: no status write at all.
    reconciler.reconcile(QUOTA)
    assert stored_quota(repos).metadata.resource_version == q.metadata.resource_version

    workers.create(worker("w3"))
    reconciler.reconcile(QUOTA)
    q = stored_quota(repos)
    assert q.status.used == {"labworkers": 3, "labworkers/m5zn.metal": 2}
    full = find_condition(q.status.conditions, "Full")
    assert full is not None and (full.status, full.reason) == ("True", "LimitReached")
    assert "labworkers/m5zn.metal: 2/2" in full.message

    repos.for_kind(LABQUOTA).update_spec(NS, "team-a", lambda x: x.spec.hard.update(labworkers=1))
    reconciler.reconcile(QUOTA)
    q = stored_quota(repos)
    assert q.status.hard["labworkers"] == 1 and q.status.observed_generation == 2
    full = find_condition(q.status.conditions, "Full")
    assert full is not None and (full.status, full.reason) == ("True", "LimitExceeded")


def test_a_worker_written_with_etcdctl_is_counted_and_the_record_corrected(
    shared_etcd: EtcdProcess,
    client: EtcdClient,
    root: str,
    repos: RepositorySet,
    reconciler: QuotaReconciler,
    recorded: RecordedEvents,
    caplog: pytest.LogCaptureFixture,
) -> None:
    repos.for_kind(LABQUOTA).create(quota({"labworkers": 5}))
    workers = repos.for_kind(LABWORKER)
    workers.create(worker("w1"))
    workers.create(worker("w2"))
    reconciler.reconcile(QUOTA)
    assert stored_quota(repos).status.used == {"labworkers": 2}

    etcdctl_put_worker(shared_etcd, root, worker("sneaky", "c5.metal"))
    assert usage(client, root) == {"labworkers": 2, "labworkers/m5zn.metal": 2}

    with caplog.at_level(logging.WARNING, logger="controller.quota.reconciler"):
        assert reconciler.reconcile(QUOTA) == Result.done()

    assert usage(client, root) == {
        "labworkers": 3,
        "labworkers/c5.metal": 1,
        "labworkers/m5zn.metal": 2,
    }
    assert stored_quota(repos).status.used == {"labworkers": 3}
    warning = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert f"quota usage record {usage_key(root, NS)} of namespace {NS} disagreed" in warning
    assert "labworkers recorded 2, counted 3" in warning
    assert "labworkers/c5.metal recorded 0, counted 1" in warning
    ((name, type_, reason, message),) = recorded.events
    assert (name, type_, reason) == ("team-a", "Warning", "UsageCorrected")
    assert "labworkers recorded 2, counted 3" in message

    # Enforcement now counts the sneaked-in worker.
    repos.for_kind(LABQUOTA).update_spec(NS, "team-a", lambda x: x.spec.hard.update(labworkers=3))
    with pytest.raises(Exception, match="labworkers limited to 3, used 3, requested 1"):
        workers.create(worker("w4"))


def test_a_worker_deleted_with_etcdctl_is_given_back(
    shared_etcd: EtcdProcess,
    client: EtcdClient,
    root: str,
    repos: RepositorySet,
    reconciler: QuotaReconciler,
) -> None:
    repos.for_kind(LABQUOTA).create(quota({"labworkers": 2}))
    workers = repos.for_kind(LABWORKER)
    workers.create(worker("w1"))
    workers.create(worker("w2"))
    reconciler.reconcile(QUOTA)  # the first look at a namespace is a full recount

    shared_etcd.etcdctl("del", LABWORKER.etcd_key(root, ObjectKey(NS, "w1")))
    reconciler.reconcile(QUOTA)  # the worker total moved: recounted at once

    assert usage(client, root) == {"labworkers": 1, "labworkers/m5zn.metal": 1}
    assert stored_quota(repos).status.used == {"labworkers": 1}
    workers.create(worker("w3"))


def test_a_type_changed_with_etcdctl_is_found_by_the_periodic_recount(
    shared_etcd: EtcdProcess,
    client: EtcdClient,
    root: str,
    repos: RepositorySet,
    reconciler: QuotaReconciler,
    clock: FakeClock,
) -> None:
    repos.for_kind(LABQUOTA).create(quota({"labworkers/c5.metal": 1}))
    workers = repos.for_kind(LABWORKER)
    stored = workers.create(worker("w1"))
    reconciler.reconcile(QUOTA)

    stored.spec.instance.type = "c5.metal"
    etcdctl_put_worker(shared_etcd, root, stored)
    reconciler.reconcile(QUOTA)  # same total: the cheap look sees nothing
    assert usage(client, root) == {"labworkers": 1, "labworkers/m5zn.metal": 1}

    clock.step(reconciler.recount_interval)
    reconciler.reconcile(QUOTA)
    assert usage(client, root) == {"labworkers": 1, "labworkers/c5.metal": 1}
    assert stored_quota(repos).status.used == {"labworkers/c5.metal": 1}


def test_an_unreadable_record_is_rewritten_from_a_recount(
    shared_etcd: EtcdProcess,
    client: EtcdClient,
    root: str,
    repos: RepositorySet,
    reconciler: QuotaReconciler,
    recorded: RecordedEvents,
) -> None:
    repos.for_kind(LABQUOTA).create(quota({"labworkers": 5}))
    workers = repos.for_kind(LABWORKER)
    workers.create(worker("w1"))
    shared_etcd.put(usage_key(root, NS), b'{"labworkers": "lots"}')

    reconciler.reconcile(QUOTA)

    assert usage(client, root) == {"labworkers": 1, "labworkers/m5zn.metal": 1}
    ((_, _, reason, message),) = recorded.events
    assert reason == "UsageCorrected"
    assert "was unreadable ('labworkers' is" in message
    workers.create(worker("w2"))


def test_workers_without_a_record_get_one(
    shared_etcd: EtcdProcess,
    client: EtcdClient,
    root: str,
    repos: RepositorySet,
    reconciler: QuotaReconciler,
) -> None:
    etcdctl_put_worker(shared_etcd, root, worker("old"))
    repos.for_kind(LABQUOTA).create(quota({"labworkers": 5}))
    assert usage(client, root) is None
    reconciler.reconcile(QUOTA)
    assert usage(client, root) == {"labworkers": 1, "labworkers/m5zn.metal": 1}


def test_an_empty_namespace_writes_no_record_and_a_gone_quota_is_done(
    client: EtcdClient, root: str, repos: RepositorySet, reconciler: QuotaReconciler
) -> None:
    repos.for_kind(LABQUOTA).create(quota({"labworkers": 5}))
    reconciler.reconcile(QUOTA)
    assert usage(client, root) is None
    assert stored_quota(repos).status.used == {"labworkers": 0}
    assert reconciler.reconcile(ObjectKey(NS, "nope")) == Result.done()


# -- the controller in the app `labctl run` builds ---------------------------------------------


def test_the_quota_controller_follows_workers_and_heals_drift(etcd: EtcdProcess, app: App) -> None:
    manager = app.manager
    root = manager.options.root
    runner = threading.Thread(target=manager.run, daemon=True)
    runner.start()
    assert manager.started.wait(30)
    client = connect(etcd.endpoint)
    try:
        cli = repositories(client, root)  # what labctl writes through
        cli.for_kind(LABQUOTA).create(quota({"labworkers": 3}))
        cli.for_kind(LABWORKER).create(worker("w1"))
        cli.for_kind(LABWORKER).create(worker("w2"))

        def used() -> dict[str, int]:
            q = cli.for_kind(LABQUOTA).get_by_key(QUOTA)
            return q.status.used if q is not None else {}

        wait_until(lambda: used() == {"labworkers": 2}, timeout=30, what="status.used = 2")

        etcdctl_put_worker(etcd, root, worker("sneaky"))
        wait_until(lambda: used() == {"labworkers": 3}, timeout=30, what="drift healed")
        assert usage(client, root) == {"labworkers": 3, "labworkers/m5zn.metal": 3}

        # labctl delete: the LabWorker controller tears the worker down, removes its
        # finalizer, and that final delete gives the count back.
        cli.for_kind(LABWORKER).mark_for_deletion(NS, "w1")
        wait_until(lambda: used() == {"labworkers": 2}, timeout=60, what="w1's count given back")
        assert cli.for_kind(LABWORKER).get(NS, "w1") is None
        assert usage(client, root) == {"labworkers": 2, "labworkers/m5zn.metal": 2}
        cli.for_kind(LABWORKER).create(worker("w3"))
    finally:
        client.close()
        manager.stop()
        runner.join(30)
    assert not runner.is_alive()

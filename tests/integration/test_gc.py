"""Garbage collection on a real etcd: a dependent is deleted exactly when every owner it names
(by uid) is gone — never on the word of a cache that may be behind.

The manager here runs nothing but the collector (no LabWorker controller, no pool
controller), so a collected worker, which has no finalizer, leaves etcd at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from controller.labworker.kind import LABWORKER
from controller.labworker.model import LabWorker
from controller.pool.kind import POOL
from controller.pool.model import LabWorkerPool
from controller.resources import ObjectKey, Resource
from controller.runtime.gc import COLLECTED_REASON, GarbageCollector, add_garbage_collector
from controller.runtime.manager import Manager, ManagerOptions
from controller.runtime.repository import Repository
from controller.storage import EtcdClient, connect
from tests.etcdproc import EtcdProcess, wait_until

ROOT = "/gc-test"


class ListRecorder:
    """Keeps the Events the collector records, to assert on them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str]] = []
        self._lock = threading.Lock()

    def event(self, obj: Resource, type: Any, reason: str, message: str) -> None:
        with self._lock:
            self.events.append((obj.metadata.name, type, reason, message))


def pool_doc(name: str, namespace: str = "default") -> LabWorkerPool:
    return LabWorkerPool.model_validate(
        {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "replicas": 0,
                "template": {"metadata": {"labels": {"pool": name}}, "spec": {"labTrack": "t"}},
            },
        }
    )


def worker_doc(name: str, *owners: dict[str, Any], namespace: str = "default") -> LabWorker:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if owners:
        metadata["ownerReferences"] = list(owners)
    return LabWorker.model_validate({"metadata": metadata, "spec": {"labTrack": "t"}})


@dataclass
class Env:
    client: EtcdClient
    manager: Manager
    collector: GarbageCollector
    pools: Repository[LabWorkerPool]
    workers: Repository[LabWorker]
    recorder: ListRecorder

    def exists(self, name: str, namespace: str = "default") -> bool:
        return self.workers.get(namespace, name) is not None


@pytest.fixture
def env(etcd: EtcdProcess) -> Iterator[Env]:
    client = connect(etcd.endpoint, timeout=5.0)
    manager = Manager(client, ManagerOptions(root=ROOT, watch_idle_timeout=2.0))
    recorder = ListRecorder()
    manager.recorder = recorder
    collector = add_garbage_collector(manager, LABWORKER, [POOL])
    runner = threading.Thread(target=manager.run, daemon=True)
    runner.start()
    assert manager.started.wait(30)
    try:
        yield Env(
            client,
            manager,
            collector,
            manager.repository(POOL),
            manager.repository(LABWORKER),
            recorder,
        )
    finally:
        manager.stop()
        runner.join(30)
        client.close()


def test_deleting_the_owner_collects_its_dependents_and_only_them(env: Env) -> None:
    pool = env.pools.create(pool_doc("ccna"))
    other = env.pools.create(pool_doc("other"))
    owned = [env.workers.create(worker_doc(f"w{i}", POOL.owner_ref(pool))) for i in range(3)]
    env.workers.create(worker_doc("kept", POOL.owner_ref(other)))
    env.workers.create(worker_doc("loner"))
    # Two owners: collected only once both are gone.
    env.workers.create(
        worker_doc("shared", POOL.owner_ref(pool), POOL.owner_ref(other, controller=False))
    )

    env.pools.mark_for_deletion("default", "ccna")  # no finalizers: the key goes at once
    wait_until(
        lambda: not any(env.exists(w.metadata.name) for w in owned),
        timeout=30,
        what="the deleted pool's workers to be collected",
    )
    assert env.exists("kept") and env.exists("loner") and env.exists("shared")
    assert env.collector.collected == 3
    assert sorted(e[0] for e in env.recorder.events if e[2] == COLLECTED_REASON) == [
        "w0",
        "w1",
        "w2",
    ]

    env.pools.mark_for_deletion("default", "other")
    wait_until(lambda: not env.exists("shared") and not env.exists("kept"), timeout=30)
    assert env.exists("loner")


def test_an_owner_recreated_under_the_same_name_does_not_keep_the_old_ones_dependents(
    env: Env,
) -> None:
    old = env.pools.create(pool_doc("ccna"))
    orphan = worker_doc("orphan", POOL.owner_ref(old))
    env.pools.mark_for_deletion("default", "ccna")
    new = env.pools.create(pool_doc("ccna"))
    assert new.metadata.uid != old.metadata.uid
    # The dependent appears only now, naming the old uid; the owner's name is taken again.
    env.workers.create(orphan)
    env.workers.create(worker_doc("child", POOL.owner_ref(new)))
    wait_until(lambda: not env.exists("orphan"), timeout=30, what="the orphan to be collected")
    # The collector has seen `child` (it sees every worker); a live owner keeps it.
    wait_until(lambda: env.manager.informer(LABWORKER).get("default/child") is not None, timeout=10)
    assert env.collector.reconcile(ObjectKey("default", "child")).requeue_after == 0
    assert env.exists("child")


def test_absence_is_confirmed_in_etcd_not_taken_from_a_cache(etcd: EtcdProcess) -> None:
    """A collector whose owner cache is empty (as behind as a cache can be) deletes nothing
    whose owner exists in etcd."""
    client = connect(etcd.endpoint, timeout=5.0)
    try:
        manager = Manager(client, ManagerOptions(root=ROOT))
        collector = GarbageCollector(manager, LABWORKER, [POOL])
        pools, workers = manager.repository(POOL), manager.repository(LABWORKER)
        pool = pools.create(pool_doc("ccna"))
        workers.create(worker_doc("alive", POOL.owner_ref(pool)))
        workers.create(
            worker_doc(
                "dead",
                {**POOL.owner_ref(pool), "uid": "0f0f0f0f-gone"},
            )
        )
        worker_informer = manager.informer(LABWORKER)
        worker_informer.start()  # the pool informer is never started: its cache stays empty
        try:
            assert worker_informer.wait_synced(10)
            assert manager.informer(POOL).get("default/ccna") is None
            collector.reconcile(ObjectKey("default", "alive"))
            collector.reconcile(ObjectKey("default", "dead"))
            assert workers.get("default", "alive") is not None
            assert workers.get("default", "dead") is None
            assert collector.collected == 1
        finally:
            worker_informer.stop()
    finally:
        client.close()


def test_owners_of_unknown_kinds_and_unreadable_owners_keep_their_dependents(
    etcd: EtcdProcess, caplog: pytest.LogCaptureFixture
) -> None:
    client = connect(etcd.endpoint, timeout=5.0)
    try:
        manager = Manager(client, ManagerOptions(root=ROOT))
        collector = GarbageCollector(manager, LABWORKER, [POOL])
        workers = manager.repository(LABWORKER)
        foreign = {
            "apiVersion": "toys.example.com/v1",
            "kind": "Widget",
            "name": "w",
            "uid": "widget-uid",
            "controller": True,
        }
        workers.create(worker_doc("foreign1", foreign))
        workers.create(worker_doc("foreign2", foreign))
        # A pool key holding a value that is not a valid pool: its absence is not proven.
        garbage_owner = {**POOL.owner_ref(pool_doc("broken").model_copy()), "uid": "b-uid"}
        client.put(f"{ROOT}/lab-worker-pools/default/broken", b'{"not": "a pool"}')
        workers.create(worker_doc("unsure", garbage_owner))
        informer = manager.informer(LABWORKER)
        informer.start()
        try:
            assert informer.wait_synced(10)
            with caplog.at_level(logging.WARNING, logger="controller.runtime.gc"):
                for name in ("foreign1", "foreign2", "unsure"):
                    collector.reconcile(ObjectKey("default", name))
            assert all(workers.get("default", n) for n in ("foreign1", "foreign2", "unsure"))
            assert collector.collected == 0
            unknown = [r for r in caplog.records if "does not watch" in r.getMessage()]
            assert len(unknown) == 1  # logged once per kind, not once per object
            assert any("cannot be read" in r.getMessage() for r in caplog.records)
        finally:
            informer.stop()
    finally:
        client.close()


def test_a_dependent_orphaned_while_no_collector_ran_is_collected_at_start(
    etcd: EtcdProcess,
) -> None:
    client = connect(etcd.endpoint, timeout=5.0)
    pools = Repository(client, POOL, ROOT)
    workers = Repository(client, LABWORKER, ROOT)
    pool = pools.create(pool_doc("ccna"))
    workers.create(worker_doc("w", POOL.owner_ref(pool)))
    workers.create(worker_doc("live", POOL.owner_ref(pools.create(pool_doc("live")))))
    pools.delete("default", "ccna")
    manager = Manager(client, ManagerOptions(root=ROOT))
    collector = add_garbage_collector(manager, LABWORKER, [POOL])
    runner = threading.Thread(target=manager.run, daemon=True)
    runner.start()
    try:
        assert manager.started.wait(30)
        wait_until(lambda: workers.get("default", "w") is None, timeout=30, what="collection")
        assert workers.get("default", "live") is not None
        assert collector.collected == 1
    finally:
        manager.stop()
        runner.join(30)
        client.close()

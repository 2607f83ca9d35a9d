"""A pool write whose answer is lost: the pool recounts from etcd, never creates blindly.

The reconciler's etcd client goes through a FaultProxy that drops etcd's answers: the first
create reaches etcd and is applied, but the controller only learns that it *may* have been
(`Unavailable(maybe_applied=True)`). The reconcile is called directly, with a fake clock, so
the test decides when the backoff has passed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from controller.labworker.kind import LABWORKER
from controller.labworker.model import LabWorker
from controller.pool.kind import POOL
from controller.pool.model import LabWorkerPool
from controller.pool.reconciler import PoolReconciler
from controller.resources import ObjectKey
from controller.runtime.clock import FakeClock
from controller.runtime.informer import Informer
from controller.runtime.manager import Manager, ManagerOptions
from controller.runtime.repository import Repository
from controller.storage import connect
from tests.etcdproc import EtcdProcess, wait_until
from tests.faultproxy import FaultProxy

ROOT = "/pool-lost"
KEY = ObjectKey("default", "p")


@pytest.fixture
def proxy(etcd: EtcdProcess) -> Iterator[FaultProxy]:
    with FaultProxy(etcd.endpoint) as p:
        yield p


def test_a_create_with_a_lost_answer_is_recounted_from_etcd_not_repeated(
    etcd: EtcdProcess, proxy: FaultProxy
) -> None:
    client = connect(proxy.endpoint, timeout=1.0)
    direct = connect(etcd.endpoint, timeout=5.0)
    manager = Manager(client, ManagerOptions(root=ROOT, watch_idle_timeout=1.0))
    clock = FakeClock()
    reconciler = PoolReconciler(manager, clock=clock)
    informers: list[Informer[Any]] = [manager.informer(POOL), manager.informer(LABWORKER)]
    pools = Repository(direct, POOL, ROOT)
    workers: Repository[LabWorker] = Repository(direct, LABWORKER, ROOT)
    for informer in informers:
        informer.start()
    try:
        assert all(i.wait_synced(10) for i in informers)
        pools.create(
            LabWorkerPool.model_validate(
                {
                    "metadata": {"name": "p"},
                    "spec": {
                        "replicas": 3,
                        "template": {
                            "metadata": {"labels": {"pool": "p"}},
                            "spec": {"labTrack": "t"},
                        },
                    },
                }
            )
        )
        wait_until(lambda: manager.informer(POOL).get(str(KEY)) is not None, timeout=10)

        proxy.drop_responses()
        result = reconciler.reconcile(KEY)
        proxy.pass_through()
        assert result.requeue_after > 0  # backing off, not failing hot
        assert len(workers.list("default")) == 1  # applied, though the answer was lost

        # Before the backoff has passed: nothing is written, whatever requeues the pool.
        assert reconciler.reconcile(KEY).requeue_after > 0
        assert len(workers.list("default")) == 1

        clock.step(60)
        reconciler.reconcile(KEY)  # counts from etcd: one exists, two are created
        assert len(workers.list("default")) == 3

        def settled() -> bool:
            # The cache catches up with the writes (its watch was cut too) before it is
            # trusted again; until then the reconcile only asks to be called again.
            reconciler.reconcile(KEY)
            return manager.informer(LABWORKER).revision >= max(
                w.metadata.resource_version or 0 for w in workers.list("default")
            )

        wait_until(settled, timeout=30, what="the worker cache to catch up")
        reconciler.reconcile(KEY)
        names = [w.metadata.name for w in workers.list("default")]
        assert len(names) == 3 and len(set(names)) == 3
    finally:
        for informer in informers:
            informer.stop()
        client.close()
        direct.close()

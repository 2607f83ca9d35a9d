"""The priority queue on a real etcd: a new object overtakes the initial list's backlog.

A controller with ONE worker starts on 2,000 existing objects (the initial list: background
work). While the first of them is being reconciled, a user creates a new object. With the
priority queue its key is reconciled next (or right after one aged background key); in a
FIFO queue it waits behind the whole backlog. A sharded replica hands its keys over once more
when it acquires their shards: that, too, is background work. Order is asserted, never time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, Literal

import pytest

from controller.resources import Kind, ObjectKey, Resource
from controller.resources.meta import ObjectMeta
from controller.runtime.controller import ControllerOptions
from controller.runtime.informer import InformerEvent
from controller.runtime.manager import Manager, ManagerOptions
from controller.runtime.result import Result
from controller.runtime.sharding import ShardCoordinator
from controller.storage import MAX_BATCH_OPS, BatchPut, EtcdStorageBackend, connect
from tests.etcdproc import EtcdProcess

BACKLOG = 2_000
WAIT = 30.0


class Item(Resource):
    status_field = None
    api_version: Literal["prio.example.com/v1"] = "prio.example.com/v1"
    kind: Literal["Item"] = "Item"
    metadata: ObjectMeta


ITEM: Kind[Item] = Kind(
    api_version="prio.example.com/v1", kind="Item", plural="items", segment="items", model=Item
)


def stored(name: str) -> dict[str, Any]:
    return {
        "apiVersion": ITEM.api_version,
        "kind": "Item",
        "metadata": {"name": name, "namespace": "default", "uid": name, "generation": 1},
    }


@pytest.fixture
def manager(shared_etcd: EtcdProcess, request: pytest.FixtureRequest) -> Iterator[Manager]:
    mode: str = request.param
    priority_queue = mode != "fifo"
    root = f"/prio-{mode}"
    client = connect(shared_etcd.endpoint, timeout=10.0)
    backend = EtcdStorageBackend(client, ITEM.prefix(root))
    names = [f"old-{i:05d}" for i in range(BACKLOG)]
    for start in range(0, BACKLOG, MAX_BATCH_OPS):
        batch = names[start : start + MAX_BATCH_OPS]
        backend.apply_batch([BatchPut(f"default/{n}", stored(n)) for n in batch])
    sharder = None
    if mode == "sharded":  # one replica: it acquires every shard once its caches listed
        sharder = ShardCoordinator(client, root, "only", count=16, ttl=5, poll_interval=0.05)
    built = Manager(
        client, ManagerOptions(root=root, priority_queue=priority_queue), sharder=sharder
    )
    yield built
    built.stop()
    client.close()


def run_until_new_item_reconciled(manager: Manager) -> list[str]:
    """Reconcile order of every key, the new one created while the first key reconciles."""
    order: list[str] = []
    first_started, release = threading.Event(), threading.Event()
    new_item_reconciled = threading.Event()

    def reconcile(key: ObjectKey) -> Result:
        order.append(key.name)
        if len(order) == 1:
            first_started.set()
            release.wait(WAIT)  # hold the only worker: the backlog stays queued
        if key.name == "new":
            new_item_reconciled.set()
        return Result.done()

    manager.controller("items").for_(ITEM).with_options(ControllerOptions(workers=1)).complete(
        reconcile
    )
    new_item_queued = threading.Event()

    def after_the_controller(event: InformerEvent[Any]) -> None:
        if event.key == "default/new":
            new_item_queued.set()

    manager.informer(ITEM).add_handler(after_the_controller)  # runs after the controller's
    runner = threading.Thread(target=manager.run, name="manager", daemon=True)
    runner.start()
    assert first_started.wait(WAIT), "the controller did not start reconciling"

    manager.repository(ITEM).create(Item.model_validate({"metadata": {"name": "new"}}))
    assert new_item_queued.wait(WAIT), "the new item's watch event did not arrive"
    release.set()
    assert new_item_reconciled.wait(WAIT), "the new item was never reconciled"
    manager.stop()
    runner.join(WAIT)
    return order


@pytest.mark.parametrize("manager", ["priority", "sharded"], indirect=True)
def test_a_new_object_is_reconciled_before_the_initial_lists_backlog(manager: Manager) -> None:
    order = run_until_new_item_reconciled(manager)

    # Next, or right after one background key if the backlog had already aged: either way
    # with ~2,000 background keys still queued.
    assert order.index("new") <= 2


@pytest.mark.parametrize("manager", ["fifo"], indirect=True)
def test_without_the_priority_queue_the_new_object_waits_for_the_backlog(
    manager: Manager,
) -> None:
    order = run_until_new_item_reconciled(manager)

    assert order.index("new") == BACKLOG

"""ShardCoordinator on a real etcd: hand-off waits for in-flight work, fencing follows the
shard lease (docs/architecture.md, Sharding)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from controller.runtime.fencing import NotOwner
from controller.runtime.sharding import CURRENT_SHARD, ShardCoordinator, rendezvous_owner
from controller.storage import Compare, EtcdClient, Op, connect
from tests.etcdproc import EtcdProcess, wait_until

COUNT = 8
ROOT = "/shard-test"


@pytest.fixture
def client(etcd: EtcdProcess) -> Iterator[EtcdClient]:
    c = connect(etcd.endpoint)
    try:
        yield c
    finally:
        c.close()


def coordinator(client: EtcdClient, identity: str) -> ShardCoordinator:
    return ShardCoordinator(client, ROOT, identity, count=COUNT, ttl=3, poll_interval=0.05)


def test_a_moving_shard_is_released_only_after_its_in_flight_reconcile_ends(
    client: EtcdClient,
) -> None:
    first = coordinator(client, "first")
    first.join()
    first.start()
    second = coordinator(client, "second")
    try:
        wait_until(lambda: first.held == frozenset(range(COUNT)), what="first holds all")
        moving = next(
            s for s in range(COUNT) if rendezvous_owner(s, ["first", "second"]) == "second"
        )
        in_flight = threading.Event()
        finish = threading.Event()
        captured: list[list[Compare]] = []

        def reconcile() -> None:
            with first.reconciling(moving) as mine:
                assert mine
                captured.append(first.fence() or [])
                in_flight.set()
                finish.wait(30)

        worker = threading.Thread(target=reconcile)
        worker.start()
        assert in_flight.wait(10)
        second.join()
        second.start()
        others = second.desired - {moving}
        wait_until(lambda: others <= second.held, what="second takes the idle shards over")
        # The busy shard stays with first, and first takes no NEW reconcile of it.
        assert moving in first.held and moving not in second.held
        with first.reconciling(moving) as mine:
            assert not mine
        assert not second.ready()[0]
        finish.set()
        worker.join(10)
        wait_until(lambda: moving in second.held, what="second holds the shard once drained")
        assert second.ready()[0]
        # A write first prepared while it held the shard is refused by etcd now.
        late = client.txn(captured[0], [Op.put(f"{ROOT}/late", b"x")], [])
        assert not late.succeeded
        with second.reconciling(moving) as mine:
            assert mine
            assert client.txn(second.fence() or [], [Op.put(f"{ROOT}/ok", b"x")], []).succeeded
    finally:
        second.leave()
        first.leave()


def test_a_replica_whose_lease_is_gone_is_refused_and_told(client: EtcdClient) -> None:
    only = coordinator(client, "only")
    told = threading.Event()
    only.on_lost.append(told.set)
    only.join()
    only.start()
    try:
        wait_until(lambda: len(only.held) == COUNT, what="all shards held")
        token = CURRENT_SHARD.set(0)
        try:
            only.check("provider provision")  # held, lease fresh: allowed
            fence = only.fence() or []
            assert client.txn(fence, [], []).succeeded
            assert only._keeper is not None
            client.lease_revoke(only._keeper.id)  # as if etcd had expired it during a stall
            assert told.wait(10), "the coordinator did not notice its lease was gone"
            with pytest.raises(NotOwner):
                only.check("provider provision")
            assert not client.txn(fence, [], []).succeeded
        finally:
            CURRENT_SHARD.reset(token)
        assert not only.ready()[0]
        with only.reconciling(0) as mine:
            assert not mine
    finally:
        only.leave()


def test_outside_a_shard_reconcile_there_is_no_shard_fence(client: EtcdClient) -> None:
    only = coordinator(client, "solo")
    only.join()
    try:
        assert only.fence() is None
        with pytest.raises(NotOwner):
            only.check("provider start")
    finally:
        only.leave()

"""Leader election with fencing against a real etcd: one leader, fast handover, and a
stale leader's writes refused by etcd itself."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from controller.labworker.fenced import FencedProvider
from controller.labworker.model import InstanceSpec, LabWorker
from controller.labworker.repository import LabWorkerRepository
from controller.labworker.sim import SimProvider
from controller.runtime.controller import NoopReconcileMetrics
from controller.runtime.fencing import NotOwner
from controller.runtime.leader import LeaderElector
from controller.storage import EtcdClient, Fenced, Unavailable, connect
from tests.etcdproc import EtcdProcess, wait_until

KEY = "/lab-resource-manager/leader/labworker-controller"


def worker() -> LabWorker:
    return LabWorker.model_validate({"metadata": {"name": "w"}, "spec": {"labTrack": "ccna"}})


def test_one_leader_then_handover_on_resign(etcd: EtcdProcess) -> None:
    a = LeaderElector(connect(etcd.endpoint), KEY, identity="a", ttl=5)
    b = LeaderElector(connect(etcd.endpoint), KEY, identity="b", ttl=5)
    stop = threading.Event()
    assert a.campaign(stop)
    b_won = threading.Event()
    t = threading.Thread(target=lambda: b.campaign(stop) and b_won.set())
    t.start()
    try:
        assert not b_won.wait(1.5)  # a leads; b stands by
        assert a.is_leader and not b.is_leader
        first_token = a.token
        a.resign()
        assert b_won.wait(10), "the standby takes over as soon as the leader resigns"
        assert b.is_leader and b.token > first_token
        assert etcd.get_raw(KEY) == b"b"
    finally:
        stop.set()
        t.join(10)
        b.resign()


def test_a_stale_leader_is_fenced_after_its_lease_expires(etcd: EtcdProcess) -> None:
    client = connect(etcd.endpoint)
    repo = LabWorkerRepository.for_prefix(client)
    repo.create(worker())
    old = LeaderElector(client, KEY, identity="old", ttl=2)
    stop = threading.Event()
    assert old.campaign(stop)
    repo.status_guards = old.fence

    def bump(w: LabWorker) -> None:
        w.status.hosted_labs += 1

    assert repo.update_status("default", "w", bump).written  # the leader may write
    # The old leader stalls (as in a long GC pause): its lease is no longer kept alive.
    assert old._keeper is not None
    old._keeper._stop.set()
    wait_until(lambda: etcd.get_raw(KEY) is None, timeout=15, what="the lease to expire")
    new = LeaderElector(connect(etcd.endpoint), KEY, identity="new", ttl=5)
    assert new.campaign(stop)
    # The stale leader wakes up and writes: etcd refuses, nothing changes.
    with pytest.raises(Fenced):
        repo.update_status("default", "w", bump)
    stored = repo.get("default", "w")
    assert stored is not None and stored.status.hosted_labs == 1
    # The new leader's writes go through.
    repo.status_guards = new.fence
    assert repo.update_status("default", "w", bump).written
    new.resign()
    old.resign()


def test_losing_the_key_is_noticed(etcd: EtcdProcess) -> None:
    client = connect(etcd.endpoint)
    elector = LeaderElector(client, KEY, identity="x", ttl=5)
    lost = threading.Event()
    elector.on_lost(lost.set)
    assert elector.campaign(threading.Event())
    etcd.etcdctl("del", KEY)  # an operator (or a bug) removes the election key
    assert lost.wait(10)
    assert not elector.is_leader


def test_a_stalled_leader_is_refused_side_effects_before_its_lease_can_expire(
    etcd: EtcdProcess,
) -> None:
    """Cloud calls cannot carry an etcd compare: the local lease bound must refuse them first."""
    client = connect(etcd.endpoint)
    elector = LeaderElector(client, KEY, identity="stalling", ttl=3)
    assert elector.campaign(threading.Event())
    sim = SimProvider(client, "/lab-resource-manager", step_delay=0)
    refused: list[str] = []

    class Refusals(NoopReconcileMetrics):
        def provider_call_refused(self, controller: str, call: str) -> None:
            refused.append(call)

    provider = FencedProvider(sim, elector, metrics=Refusals())
    assert provider.provision("uid-1", "w1", InstanceSpec()).instance_id  # leader: allowed

    # The leader stalls: its lease is no longer renewed (a GC pause, SIGSTOP, a partition).
    assert elector._keeper is not None
    elector._keeper._stop.set()

    def start_refused() -> bool:
        try:
            provider.start("uid-1")  # idempotent on a running instance: a harmless probe
        except NotOwner:
            return True
        return False

    wait_until(start_refused, timeout=10, what="side effects to be refused")
    # The refusal came while the election key still exists: before etcd could expire the lease
    # and elect a successor, so the two leaders' cloud calls never overlap.
    assert etcd.get_raw(KEY) is not None
    assert elector.is_leader, "it has not noticed the loss yet: only the bound protects us"
    for call in (
        lambda: provider.provision("uid-2", "w2", InstanceSpec()),
        lambda: provider.stop("uid-1"),
        lambda: provider.terminate("uid-1"),
        lambda: provider.license("uid-1", None),
    ):
        with pytest.raises(NotOwner):
            call()
    assert sim.describe("uid-2") is None, "a refused provision never reached the cloud"
    assert set(refused) == {"start", "provision", "stop", "terminate", "license"}
    assert provider.describe("uid-1") is not None  # reads are not side effects
    elector.resign()


class _LosesOneTxnAnswer(EtcdClient):
    """A real client whose first txn applies in etcd but whose answer is lost on the way
    back, exactly as a dropped response looks to the caller (the proxy cannot pick one RPC)."""

    lost = False

    def txn(self, *args: Any, **kwargs: Any) -> Any:
        result = super().txn(*args, **kwargs)
        if not self.lost:
            self.lost = True
            raise Unavailable("answer lost", maybe_applied=True)
        return result


def test_a_campaign_whose_acquire_answer_is_lost_does_not_wedge_the_election(
    etcd: EtcdProcess,
) -> None:
    client = _LosesOneTxnAnswer([etcd.endpoint])
    elector = LeaderElector(client, KEY, identity="unlucky", ttl=3)
    stop = threading.Event()
    won = threading.Event()
    t = threading.Thread(target=lambda: elector.campaign(stop, retry=0.2) and won.set())
    t.start()
    try:
        # The lost answer created the key; the elector, not knowing, must not leave it held by
        # a lease it keeps alive: it revokes and campaigns again, and wins.
        assert won.wait(15), "the election wedged on an orphaned election key"
        assert elector.is_leader and etcd.get_raw(KEY) == b"unlucky"
    finally:
        stop.set()
        t.join(10)
        elector.resign()

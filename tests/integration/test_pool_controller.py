"""The pool controller in-process on a real etcd, beside the real LabWorker controller and the
sim provider: scaling, graceful and forced scale-down, adoption, quota refusals, a roll.

Everything is awaited as a condition on etcd; the sim takes 50 ms per step.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from controller import config, labworker
from controller.config import Settings
from controller.labworker.kind import LABWORKER
from controller.labworker.model import LabWorker
from controller.labworker.phase import DesiredPhase, Phase
from controller.labworker.sim import HOSTED_LABS_ANNOTATION
from controller.pool.kind import POOL
from controller.pool.model import TEMPLATE_HASH_ANNOTATION, LabWorkerPool
from controller.pool.reconciler import BACKOFF_MAX, PoolReconciler
from controller.pool.status import QUOTA_EXCEEDED, REPLICA_FAILURE
from controller.pool.template import template_hash
from controller.pool.wiring import setup_pools
from controller.resources import Resource, find_condition
from controller.runtime.clock import SYSTEM_CLOCK, Clock, FakeClock
from controller.runtime.manager import Manager, ManagerOptions
from controller.runtime.repository import NO_PARTS, AdmissionRefused, Repository, TxnParts
from controller.storage import EtcdClient, connect
from tests.etcdproc import EtcdProcess, wait_until

ROOT = "/pool-test"


class ListRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str]] = []
        self._lock = threading.Lock()

    def event(self, obj: Resource, type: Any, reason: str, message: str) -> None:
        with self._lock:
            self.events.append((obj.metadata.name, type, reason, message))

    def reasons(self, name: str) -> list[str]:
        with self._lock:
            return [e[2] for e in self.events if e[0] == name]


class WorkerLimit:
    """A quota as simple as it gets: at most `limit` workers per namespace (admission)."""

    def __init__(self, client: EtcdClient, limit: int) -> None:
        self.client = client
        self.limit = limit
        self.refusals = 0

    def on_create(self, obj: LabWorker) -> TxnParts:
        prefix = f"{ROOT}/lab-workers/{obj.metadata.namespace}/"
        used = self.client.range(prefix, prefix[:-1] + "0", count_only=True).count
        if used >= self.limit:
            self.refusals += 1
            raise AdmissionRefused(
                f'labworkers "{obj.metadata.name}" is forbidden: exceeded quota test: '
                f"labworkers {used}/{self.limit}"
            )
        return NO_PARTS

    def on_update(self, old: LabWorker, new: LabWorker) -> TxnParts:
        return NO_PARTS

    def on_delete(self, obj: LabWorker) -> TxnParts:
        return NO_PARTS


def pool_doc(name: str, replicas: int, *, track: str = "ccna", **spec: Any) -> LabWorkerPool:
    return LabWorkerPool.model_validate(
        {
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "template": {
                    "metadata": {"labels": {"pool": name}},
                    "spec": {"labTrack": track},
                },
                **spec,
            },
        }
    )


@dataclass
class Env:
    client: EtcdClient
    manager: Manager
    pools: Repository[LabWorkerPool]
    workers: Repository[LabWorker]
    recorder: ListRecorder
    reconciler: PoolReconciler

    def owned(self, pool: str) -> list[LabWorker]:
        current = self.pools.get("default", pool)
        uid = current.metadata.uid if current else None
        return [
            w
            for w in self.workers.list("default")
            if (ref := w.metadata.controller_ref()) is not None and ref.uid == uid
        ]

    def phases(self, pool: str) -> list[Phase | None]:
        return sorted((w.status.phase for w in self.owned(pool)), key=str)

    def pool(self, name: str) -> LabWorkerPool:
        found = self.pools.get("default", name)
        assert found is not None
        return found

    def scale(self, name: str, replicas: int) -> None:
        self.pools.update_spec("default", name, lambda p: setattr(p.spec, "replicas", replicas))

    def hosted(self, name: str, labs: int | None) -> None:
        def annotate(w: LabWorker) -> None:
            if labs is None:
                w.metadata.annotations.pop(HOSTED_LABS_ANNOTATION, None)
            else:
                w.metadata.annotations[HOSTED_LABS_ANNOTATION] = str(labs)

        self.workers.update_spec("default", name, annotate)


def settings_for(etcd: EtcdProcess) -> Settings:
    return config.load(
        None,
        environ={
            "ETCD_ENDPOINTS": etcd.endpoint,
            "ETCD_PREFIX": ROOT,
            "LAB_SIM_DELAY": "0.05",
            "HEALTH_CHECK_INTERVAL": "0.2",
            "CONTROLLER_WORKERS": "4",
        },
    )


def start(
    etcd: EtcdProcess, limit: int | None = None, clock: Clock = SYSTEM_CLOCK
) -> tuple[Env, threading.Thread]:
    settings = settings_for(etcd)
    client = connect(etcd.endpoint, timeout=5.0)
    manager = Manager(
        client, ManagerOptions(root=ROOT, watch_idle_timeout=2.0, controller_workers=4)
    )
    recorder = ListRecorder()
    manager.recorder = recorder
    if limit is not None:
        manager.repositories.admit(LABWORKER, WorkerLimit(client, limit))
    labworker.setup(manager, settings)
    reconciler, _ = setup_pools(manager, settings, clock=clock)
    runner = threading.Thread(target=manager.run, daemon=True)
    runner.start()
    assert manager.started.wait(30)
    env = Env(
        client,
        manager,
        manager.repository(POOL),
        manager.repository(LABWORKER),
        recorder,
        reconciler,
    )
    return env, runner


@pytest.fixture
def env(etcd: EtcdProcess) -> Iterator[Env]:
    env, runner = start(etcd)
    try:
        yield env
    finally:
        env.manager.stop()
        runner.join(30)
        env.client.close()


def converged(env: Env, name: str, replicas: int) -> bool:
    pool = env.pools.get("default", name)
    if pool is None:
        return False
    owned = env.owned(name)
    s = pool.status
    return (
        len(owned) == replicas
        and all(w.status.phase in (Phase.READY, Phase.ACTIVE) for w in owned)
        and (s.replicas, s.ready_replicas, s.updated_replicas, s.retiring_replicas)
        == (replicas, replicas, replicas, 0)
        and s.observed_generation == pool.metadata.generation
    )


def test_scale_up_then_down_gracefully_keeping_busy_workers_until_drained(env: Env) -> None:
    pool = env.pools.create(pool_doc("ccna", 3))
    wait_until(lambda: converged(env, "ccna", 3), timeout=60, what="3 Ready workers")
    workers = env.owned("ccna")
    hash_ = template_hash(pool.spec.template)
    for w in workers:
        assert w.metadata.name.startswith("ccna-") and len(w.metadata.name) == len("ccna-") + 5
        assert w.metadata.labels == {"pool": "ccna"}
        assert w.metadata.annotations[TEMPLATE_HASH_ANNOTATION] == hash_
        ref = w.metadata.controller_ref()
        assert ref is not None and ref.block_owner_deletion and ref.uid == pool.metadata.uid
    status = env.pool("ccna").status
    available = find_condition(status.conditions, "Available")
    progressing = find_condition(status.conditions, "Progressing")
    assert available is not None and available.status == "True"
    assert progressing is not None and progressing.reason == "Complete"
    assert "ScaledUp" in env.recorder.reasons("ccna")

    busy = workers[0].metadata.name
    env.hosted(busy, 2)
    wait_until(lambda: env.pool("ccna").status.active_replicas == 1, timeout=30, what="one Active")
    env.scale("ccna", 1)  # the two idle workers go; the busy one stays, untouched
    wait_until(lambda: converged(env, "ccna", 1), timeout=60, what="1 worker left")
    (left,) = env.owned("ccna")
    assert left.metadata.name == busy and left.spec.desired_phase is DesiredPhase.READY

    env.scale("ccna", 0)  # now the busy one must go: it drains, and waits for its students
    wait_until(
        lambda: [w.status.phase for w in env.owned("ccna")] == [Phase.DRAINING],
        timeout=30,
        what="the busy worker Draining",
    )
    wait_until(
        lambda: (
            env.pool("ccna").status.retiring_replicas == 1 and env.pool("ccna").status.replicas == 0
        ),
        timeout=30,
    )
    assert env.workers.get("default", busy) is not None
    env.hosted(busy, None)  # the last student leaves
    wait_until(lambda: not env.owned("ccna"), timeout=60, what="the drained worker deleted")
    wait_until(lambda: env.pool("ccna").status.retiring_replicas == 0, timeout=30)
    reasons = env.recorder.reasons("ccna")
    assert "ScaledDown" in reasons and "WorkerDeleted" in reasons


def test_force_scale_down_deletes_busy_workers_at_once(env: Env) -> None:
    env.pools.create(pool_doc("lab", 2, scaleDown="Force"))
    wait_until(lambda: converged(env, "lab", 2), timeout=60, what="2 Ready workers")
    names = [w.metadata.name for w in env.owned("lab")]
    for name in names:
        env.hosted(name, 3)
    wait_until(lambda: env.pool("lab").status.active_replicas == 2, timeout=30)
    env.scale("lab", 0)
    wait_until(lambda: not env.owned("lab"), timeout=60, what="both workers deleted")
    (scaled_down,) = [e[3] for e in env.recorder.events if e[0] == "lab" and e[2] == "ScaledDown"]
    assert "draining 0, deleting 2" in scaled_down


def test_matching_orphans_are_adopted_and_counted(env: Env) -> None:
    for name in ("manual-1", "manual-2"):
        env.workers.create(
            LabWorker.model_validate(
                {
                    "metadata": {"name": name, "labels": {"pool": "ccna"}},
                    "spec": {"labTrack": "ccna"},
                }
            )
        )
    env.workers.create(
        LabWorker.model_validate(
            {
                "metadata": {"name": "stranger", "labels": {"pool": "other"}},
                "spec": {"labTrack": "x"},
            }
        )
    )
    env.pools.create(pool_doc("ccna", 3))
    wait_until(lambda: converged(env, "ccna", 3), timeout=60, what="3 Ready workers")
    names = sorted(w.metadata.name for w in env.owned("ccna"))
    # The adopted workers look exactly like the template's: counted as updated, not replaced.
    assert {"manual-1", "manual-2"} <= set(names)
    stranger = env.workers.get("default", "stranger")
    assert stranger is not None and stranger.metadata.owner_references is None
    assert env.recorder.reasons("ccna").count("Adopted") == 2


def test_a_quota_refusal_is_reported_backed_off_and_cleared(etcd: EtcdProcess) -> None:
    clock = FakeClock()  # the pool's backoff only passes when the test says so
    env, runner = start(etcd, limit=2, clock=clock)
    limit = env.manager.repositories.for_kind(LABWORKER).admission[0]
    assert isinstance(limit, WorkerLimit)
    try:
        env.pools.create(pool_doc("big", 3))
        wait_until(
            lambda: (
                (c := find_condition(env.pool("big").status.conditions, REPLICA_FAILURE))
                is not None
                and c.reason == QUOTA_EXCEEDED
                and "exceeded quota" in c.message
            ),
            timeout=30,
            what="ReplicaFailure QuotaExceeded",
        )
        wait_until(
            lambda: sum(1 for w in env.owned("big") if w.status.phase is Phase.READY) == 2,
            timeout=60,
            what="the two admitted workers Ready",
        )
        # Every step of both workers requeued the pool; none retried the create before
        # the backoff passed.
        assert limit.refusals == 1
        clock.step(BACKOFF_MAX)
        wait_until(lambda: limit.refusals == 2, timeout=30, what="a retry after the backoff")
        warnings = [e for e in env.recorder.events if e[0] == "big" and e[1] == "Warning"]
        assert [e[2] for e in warnings] == [QUOTA_EXCEEDED]  # one Event, not one per retry
        assert len(env.owned("big")) == 2
        env.scale("big", 2)
        wait_until(lambda: converged(env, "big", 2), timeout=30)
        wait_until(
            lambda: find_condition(env.pool("big").status.conditions, REPLICA_FAILURE) is None,
            timeout=30,
            what="ReplicaFailure cleared",
        )
        assert limit.refusals == 2
    finally:
        env.manager.stop()
        runner.join(30)
        env.client.close()


def test_a_template_change_replaces_every_worker(env: Env) -> None:
    env.pools.create(pool_doc("roll", 2))
    wait_until(lambda: converged(env, "roll", 2), timeout=60, what="2 Ready workers")
    before = {w.metadata.name for w in env.owned("roll")}

    def retrack(p: LabWorkerPool) -> None:
        p.spec.template.spec.lab_track = "ccnp"

    env.pools.update_spec("default", "roll", retrack)
    wait_until(
        lambda: (
            converged(env, "roll", 2) and not before & {w.metadata.name for w in env.owned("roll")}
        ),
        timeout=90,
        what="both workers replaced",
    )
    assert all(w.spec.lab_track == "ccnp" for w in env.owned("roll"))
    assert "RollingUpdate" in env.recorder.reasons("roll")


def test_deleting_the_pool_deletes_its_workers(env: Env) -> None:
    env.pools.create(pool_doc("gone", 2))
    wait_until(lambda: converged(env, "gone", 2), timeout=60)
    uids = {w.metadata.uid for w in env.owned("gone")}
    env.pools.mark_for_deletion("default", "gone")
    wait_until(
        lambda: not any(w.metadata.uid in uids for w in env.workers.list("default")),
        timeout=60,
        what="the pool's workers terminated and deleted",
    )

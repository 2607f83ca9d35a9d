"""End-to-end: LabWorkerPools against `labctl run` as a process, the sim cloud in etcd.

Pools are written through the same repositories `labctl` uses (controller.app.repositories);
the test reads workers, pools and the sim's instance records straight from etcd. Every wait
is a condition on etcd.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controller.app import repositories
from controller.labworker.kind import LABWORKER
from controller.labworker.model import LabWorker
from controller.labworker.phase import Phase
from controller.labworker.sim import HOSTED_LABS_ANNOTATION, instances_prefix
from controller.pool.kind import POOL
from controller.pool.model import LabWorkerPool
from controller.runtime.repository import Repository
from controller.storage import EtcdClient, connect
from tests.e2e.harness import PREFIX, ControllerProcess
from tests.etcdproc import EtcdProcess, wait_until

READY = (Phase.READY, Phase.ACTIVE)
SETTINGS = {"LAB_SIM_DELAY": "0.1", "HEALTH_CHECK_INTERVAL": "0.5"}


@dataclass
class Fleet:
    """The test's view of etcd: pools, workers, sim instances."""

    client: EtcdClient
    pools: Repository[LabWorkerPool]
    workers: Repository[LabWorker]

    def pool(self, name: str) -> LabWorkerPool:
        found = self.pools.get("default", name)
        assert found is not None, f"pool {name} is gone"
        return found

    def owned(self, name: str) -> list[LabWorker]:
        uid = self.pool(name).metadata.uid
        return [
            w
            for w in self.workers.list("default")
            if (ref := w.metadata.controller_ref()) is not None and ref.uid == uid
        ]

    def ready(self, name: str, replicas: int) -> bool:
        """Exactly `replicas` workers, all Ready/Active, and the pool's status says so."""
        owned = self.owned(name)
        status = self.pool(name).status
        return (
            len(owned) == replicas
            and all(w.status.phase in READY for w in owned)
            and (status.replicas, status.ready_replicas, status.retiring_replicas)
            == (replicas, replicas, 0)
        )

    def scale(self, name: str, replicas: int) -> None:
        self.pools.update_spec("default", name, lambda p: setattr(p.spec, "replicas", replicas))

    def host_labs(self, worker: str, labs: int | None) -> None:
        def annotate(w: LabWorker) -> None:
            if labs is None:
                w.metadata.annotations.pop(HOSTED_LABS_ANNOTATION, None)
            else:
                w.metadata.annotations[HOSTED_LABS_ANNOTATION] = str(labs)

        self.workers.update_spec("default", worker, annotate)

    def instances(self) -> dict[str, dict[str, Any]]:
        """The sim cloud: uid → instance record."""
        prefix = instances_prefix(PREFIX)
        kvs, _ = self.client.list_prefix(prefix)
        return {kv.key[len(prefix) :]: json.loads(kv.value) for kv in kvs}


def pool_manifest(name: str, replicas: int, track: str = "ccna", **spec: Any) -> LabWorkerPool:
    return LabWorkerPool.model_validate(
        {
            "apiVersion": "lab.neuroglia.io/v1",
            "kind": "LabWorkerPool",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "replicas": replicas,
                "template": {
                    "metadata": {"labels": {"lab.neuroglia.io/pool": name}},
                    "spec": {"labTrack": track},
                },
                **spec,
            },
        }
    )


@pytest.fixture
def fleet(etcd: EtcdProcess) -> Iterator[Fleet]:
    client = connect(etcd.endpoint, timeout=5.0)
    repos = repositories(client, PREFIX)
    try:
        yield Fleet(client, repos.for_kind(POOL), repos.for_kind(LABWORKER))
    finally:
        client.close()


@pytest.fixture
def controller(etcd: EtcdProcess, tmp_path: Path) -> Iterator[ControllerProcess]:
    ctl = ControllerProcess(etcd, tmp_path, env_extra=dict(SETTINGS))
    try:
        yield ctl
    finally:
        ctl.kill()


def test_scale_0_10_3_0_keeps_workers_with_labs_until_they_drain(
    fleet: Fleet, controller: ControllerProcess
) -> None:
    controller.start().wait_ready()
    fleet.pools.create(pool_manifest("ccna-pool", 0))
    wait_until(lambda: fleet.pool("ccna-pool").status.observed_generation == 1, timeout=30)
    assert fleet.owned("ccna-pool") == []

    fleet.scale("ccna-pool", 10)
    wait_until(lambda: fleet.ready("ccna-pool", 10), timeout=90, what="10 Ready workers")
    uids = {w.metadata.uid or "" for w in fleet.owned("ccna-pool")}
    busy = sorted(w.metadata.name for w in fleet.owned("ccna-pool"))[:2]
    for name in busy:
        fleet.host_labs(name, 2)
    wait_until(
        lambda: fleet.pool("ccna-pool").status.active_replicas == 2,
        timeout=30,
        what="two workers Active",
    )

    fleet.scale("ccna-pool", 3)  # seven idle workers go; the two hosting labs stay
    wait_until(lambda: fleet.ready("ccna-pool", 3), timeout=90, what="3 workers left")
    left = {w.metadata.name for w in fleet.owned("ccna-pool")}
    assert set(busy) <= left

    fleet.scale("ccna-pool", 0)  # the idle one goes; the busy ones drain, and wait
    wait_until(
        lambda: (
            sorted(w.metadata.name for w in fleet.owned("ccna-pool")) == busy
            and all(w.status.phase is Phase.DRAINING for w in fleet.owned("ccna-pool"))
        ),
        timeout=60,
        what="only the two busy workers left, Draining",
    )
    wait_until(
        lambda: (
            (
                fleet.pool("ccna-pool").status.replicas,
                fleet.pool("ccna-pool").status.retiring_replicas,
            )
            == (0, 2)
        ),
        timeout=30,
        what="the pool to count them as retiring",
    )
    for name in busy:
        fleet.host_labs(name, None)  # the students leave
    wait_until(lambda: not fleet.owned("ccna-pool"), timeout=60, what="the drained workers gone")

    instances = fleet.instances()
    assert uids <= set(instances)
    assert all(instances[uid]["target"] == "terminated" for uid in uids)
    assert all(len(instances[uid]["created"]) == 1 for uid in uids)
    assert controller.terminate() == 0


def test_template_roll_replaces_every_worker_without_losing_availability(
    fleet: Fleet, controller: ControllerProcess
) -> None:
    replicas, max_unavailable = 4, 1
    controller.start().wait_ready()
    fleet.pools.create(pool_manifest("roll", replicas, maxUnavailable=max_unavailable))
    wait_until(lambda: fleet.ready("roll", replicas), timeout=90, what="4 Ready workers")
    before = {w.metadata.name for w in fleet.owned("roll")}

    samples: list[int] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def sample() -> None:
        try:
            while not stop.is_set():
                samples.append(sum(1 for w in fleet.owned("roll") if w.status.phase in READY))
                stop.wait(0.02)
        except BaseException as exc:  # surfaced below, not lost in the thread
            errors.append(exc)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    def retrack(p: LabWorkerPool) -> None:
        p.spec.template.spec.lab_track = "ccnp"

    fleet.pools.update_spec("default", "roll", retrack)
    try:
        wait_until(
            lambda: (
                fleet.ready("roll", replicas)
                and not before & {w.metadata.name for w in fleet.owned("roll")}
                and all(w.spec.lab_track == "ccnp" for w in fleet.owned("roll"))
            ),
            timeout=120,
            what="every worker replaced by a ccnp one",
        )
    finally:
        stop.set()
        sampler.join(10)
    assert not errors, errors
    assert len(samples) > 10, "the roll was not observed"
    assert min(samples) >= replicas - max_unavailable, samples
    wait_until(lambda: fleet.pool("roll").status.updated_replicas == replicas, timeout=30)
    steps = [line for line in controller.logs() if line.get("event") == "pool rolling update step"]
    assert steps and all(len(step["created"]) <= max_unavailable for step in steps)
    assert controller.terminate() == 0


def test_sigkill_while_scaling_up_leaves_exactly_the_replicas(
    fleet: Fleet, controller: ControllerProcess
) -> None:
    controller.start().wait_ready()
    fleet.pools.create(pool_manifest("kill", 10))
    seen = wait_until(
        lambda: len(fleet.workers.list("default")), timeout=30, interval=0.005, what="a worker"
    )
    controller.kill()
    at_kill = len(fleet.workers.list("default"))
    controller.start().wait_ready()
    wait_until(lambda: fleet.ready("kill", 10), timeout=90, what="10 Ready workers")
    workers = fleet.workers.list("default")
    assert len(workers) == 10, f"{len(workers)} workers (saw {seen}, {at_kill} at the kill)"
    uids = {w.metadata.uid for w in workers}
    instances = fleet.instances()
    assert set(instances) == uids  # one instance per worker, none for a worker that is gone
    assert all(len(record["created"]) == 1 for record in instances.values())
    assert controller.terminate() == 0


def test_deleting_a_pool_of_10_releases_10_instances_and_deletes_its_workers(
    fleet: Fleet, controller: ControllerProcess
) -> None:
    controller.start().wait_ready()
    fleet.pools.create(pool_manifest("cascade", 10))
    wait_until(lambda: fleet.ready("cascade", 10), timeout=90, what="10 Ready workers")
    uids = {w.metadata.uid or "" for w in fleet.owned("cascade")}
    assert len(uids) == 10
    fleet.pools.mark_for_deletion("default", "cascade")  # no finalizer: gone at once
    assert fleet.pools.get("default", "cascade") is None

    def released() -> bool:
        instances = fleet.instances()
        return all(instances.get(uid, {}).get("target") == "terminated" for uid in uids)

    wait_until(released, timeout=90, what="10 sim instances terminated")
    wait_until(lambda: not fleet.workers.list("default"), timeout=60, what="10 workers deleted")
    collected = [
        line
        for line in controller.logs()
        if "no longer exists" in str(line.get("event", "")) and "LabWorker" in line["event"]
    ]
    assert len(collected) == 10
    assert controller.terminate() == 0

"""The LabWorker reconciler against a real etcd and the simulator (step delay 0).

Workers are driven by calling `reconcile(key)` in a bounded loop, the way the manager's
workers would, until a reconcile leaves the stored object untouched.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from controller.labworker import reasons
from controller.labworker.model import FINALIZER, LabWorker
from controller.labworker.observation import observe
from controller.labworker.phase import DesiredPhase, Phase
from controller.labworker.provider import InstanceState
from controller.labworker.reconciler import LabWorkerReconciler
from controller.labworker.repository import LabWorkerRepository
from controller.labworker.sim import FAIL_ANNOTATION, HOSTED_LABS_ANNOTATION, SimProvider
from controller.resources import ObjectKey, find_condition
from controller.runtime.result import ReconcileError, Result
from controller.storage import connect
from tests.etcdproc import EtcdProcess

NAMESPACE = "labs"
MAX_ROUNDS = 40


@pytest.fixture
def repository(etcd: EtcdProcess) -> LabWorkerRepository:
    return LabWorkerRepository.for_prefix(connect(etcd.endpoint), "/reconciler-test")


@pytest.fixture
def sim(repository: LabWorkerRepository) -> SimProvider:
    return SimProvider(repository.client, "/reconciler-test", step_delay=0.0, seed=11)


@pytest.fixture
def reconciler(repository: LabWorkerRepository, sim: SimProvider) -> LabWorkerReconciler:
    return LabWorkerReconciler(repository, sim)


def create(
    repository: LabWorkerRepository,
    name: str,
    *,
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> str:
    document = {
        "metadata": {"name": name, "namespace": NAMESPACE, "annotations": annotations or {}},
        "spec": {"labTrack": "ccna", **spec},
    }
    worker = repository.create(LabWorker.from_dict(document))
    return worker.metadata.namespaced_name


def get(repository: LabWorkerRepository, key: str) -> LabWorker:
    worker = repository.get_by_key(key)
    assert worker is not None, f"{key} is gone"
    return worker


def converge(
    reconciler: LabWorkerReconciler, repository: LabWorkerRepository, key: str
) -> tuple[LabWorker | None, Result]:
    """Reconcile until a round writes nothing; returns the stored worker and last Result."""
    before = repository.get_by_key(key)
    for _ in range(MAX_ROUNDS):
        result = reconciler.reconcile(ObjectKey.parse(key))
        after = repository.get_by_key(key)
        if after is None:
            return None, result
        if (
            before is not None
            and after.metadata.resource_version == before.metadata.resource_version
        ):
            return after, result
        before = after
    raise AssertionError(f"{key} did not converge in {MAX_ROUNDS} rounds: {before}")


def set_spec(repository: LabWorkerRepository, key: str, **changes: Any) -> None:
    namespace, name = key.split("/")

    def mutate(worker: LabWorker) -> None:
        worker.spec = worker.spec.model_copy(update=changes)

    repository.update_spec(namespace, name, mutate)


def set_annotations(repository: LabWorkerRepository, key: str, annotations: dict[str, str]) -> None:
    namespace, name = key.split("/")

    def mutate(worker: LabWorker) -> None:
        worker.metadata.annotations = dict(annotations)

    repository.update_spec(namespace, name, mutate)


def condition_reason(worker: LabWorker, type: str) -> tuple[str, str] | None:
    found = find_condition(worker.status.conditions, type)
    return (found.status, found.reason) if found else None


# -- creation to Ready ----------------------------------------------------------------------


def test_workers_go_from_creation_to_ready_with_one_instance_each(
    reconciler: LabWorkerReconciler, repository: LabWorkerRepository, sim: SimProvider
) -> None:
    plain = create(repository, "plain")
    licensed = create(
        repository, "licensed", host={"autoLicense": True, "licenseSecretRef": "cml-license"}
    )
    busy = create(repository, "busy", annotations={HOSTED_LABS_ANNOTATION: "2"})

    for key, phase in ((plain, Phase.READY), (licensed, Phase.READY), (busy, Phase.ACTIVE)):
        worker, result = converge(reconciler, repository, key)
        assert worker is not None
        assert worker.status.phase is phase, worker.status
        assert worker.metadata.finalizers == [FINALIZER]
        assert worker.status.observed_generation == worker.metadata.generation == 1
        assert worker.status.instance_id and worker.status.address
        assert worker.status.provisioning_started_at and worker.status.provisioning_completed_at
        assert worker.status.last_health_check is not None
        assert condition_reason(worker, reasons.READY) == ("True", reasons.HOST_READY_REASON)
        assert condition_reason(worker, reasons.PROVISIONED) == ("True", reasons.INSTANCE_RUNNING)
        assert result == Result.after(reconciler.intervals.health_check)

    assert get(repository, licensed).status.licensed
    assert condition_reason(get(repository, licensed), reasons.LICENSED) == (
        "True",
        reasons.LICENSE_APPLIED,
    )
    assert get(repository, busy).status.hosted_labs == 2
    assert sorted(sim.instances_per_uid().values()) == [1, 1, 1]


def test_a_converged_worker_is_checked_without_a_write(
    reconciler: LabWorkerReconciler, repository: LabWorkerRepository, etcd: EtcdProcess
) -> None:
    key = create(repository, "steady")
    worker, _ = converge(reconciler, repository, key)
    assert worker is not None and worker.status.phase is Phase.READY
    revision = etcd.revision()

    for _ in range(3):
        assert reconciler.reconcile(ObjectKey.parse(key)) == Result.after(
            reconciler.intervals.health_check
        )

    assert get(repository, key).metadata.resource_version == worker.metadata.resource_version
    assert etcd.revision() == revision, "a converged reconcile must send no transaction"


def test_no_license_available_keeps_the_worker_starting(
    reconciler: LabWorkerReconciler, repository: LabWorkerRepository
) -> None:
    key = create(
        repository,
        "unlicensed",
        annotations={"sim.lab.neuroglia.io/no-license": "true"},
        host={"autoLicense": True, "licenseSecretRef": "cml-license"},
    )
    worker, result = converge(reconciler, repository, key)
    assert worker is not None and worker.status.phase is Phase.STARTING
    assert condition_reason(worker, reasons.LICENSED) == ("False", reasons.NO_LICENSE_AVAILABLE)
    assert result == Result.after(reconciler.intervals.license_retry)

    set_annotations(repository, key, {})
    worker, _ = converge(reconciler, repository, key)
    assert worker is not None and worker.status.phase is Phase.READY


# -- lifecycle --------------------------------------------------------------------------------


def test_drain_stop_and_start_again(
    reconciler: LabWorkerReconciler, repository: LabWorkerRepository, sim: SimProvider
) -> None:
    key = create(repository, "cycled", annotations={HOSTED_LABS_ANNOTATION: "1"})
    worker, _ = converge(reconciler, repository, key)
    assert worker is not None and worker.status.phase is Phase.ACTIVE

    set_spec(repository, key, desired_phase=DesiredPhase.STOPPED)
    worker, _ = converge(reconciler, repository, key)
    assert worker is not None and worker.status.phase is Phase.DRAINING, "a lab is still running"
    assert worker.status.observed_generation == 2

    set_annotations(repository, key, {})  # the last student leaves
    worker, result = converge(reconciler, repository, key)
    assert worker is not None and worker.status.phase is Phase.STOPPED
    assert result == Result.done()
    assert worker.status.address is None
    uid = worker.metadata.uid
    assert uid is not None
    described = sim.describe(uid)
    assert described is not None and described.state is InstanceState.STOPPED

    set_spec(repository, key, desired_phase=DesiredPhase.READY)
    worker, _ = converge(reconciler, repository, key)
    assert worker is not None and worker.status.phase is Phase.READY
    assert worker.status.observed_generation == 3
    described = sim.describe(uid)
    assert described is not None and described.state is InstanceState.RUNNING
    assert sim.instances_per_uid() == {uid: 1}


def test_desired_terminated_tears_down_and_keeps_the_object(
    reconciler: LabWorkerReconciler, repository: LabWorkerRepository, sim: SimProvider
) -> None:
    key = create(repository, "retired")
    converge(reconciler, repository, key)
    set_spec(repository, key, desired_phase=DesiredPhase.TERMINATED)

    worker, result = converge(reconciler, repository, key)
    assert worker is not None and worker.status.phase is Phase.TERMINATED
    assert result == Result.done()
    assert worker.metadata.finalizers == []
    assert worker.status.address is None
    assert condition_reason(worker, reasons.PROVISIONED) == ("False", reasons.DEPROVISIONED)
    assert worker.metadata.uid is not None
    described = sim.describe(worker.metadata.uid)
    assert described is not None and described.state is InstanceState.TERMINATED

    # Nothing leaves Terminated; a later delete has no finalizer to wait for.
    set_spec(repository, key, desired_phase=DesiredPhase.READY)
    worker, _ = converge(reconciler, repository, key)
    assert worker is not None and worker.status.phase is Phase.TERMINATED
    assert repository.mark_for_deletion(NAMESPACE, "retired").deleted


def test_deleting_a_ready_worker_terminates_it_then_removes_the_key(
    reconciler: LabWorkerReconciler, repository: LabWorkerRepository, sim: SimProvider
) -> None:
    key = create(repository, "doomed")
    worker, _ = converge(reconciler, repository, key)
    assert worker is not None and worker.metadata.uid is not None
    uid = worker.metadata.uid

    marked = repository.mark_for_deletion(NAMESPACE, "doomed")
    assert not marked.deleted, "the finalizer holds the key until the instance is gone"
    reconciler.reconcile(ObjectKey.parse(key))
    assert get(repository, key).status.phase is Phase.TERMINATING

    gone, result = converge(reconciler, repository, key)
    assert gone is None
    assert result == Result.done()
    described = sim.describe(uid)
    assert described is not None and described.state is InstanceState.TERMINATED
    assert reconciler.reconcile(ObjectKey.parse(key)) == Result.done()


def test_deleting_a_pending_worker_removes_it_without_provider_calls(
    reconciler: LabWorkerReconciler, repository: LabWorkerRepository, sim: SimProvider
) -> None:
    key = create(repository, "short-lived")
    reconciler.reconcile(ObjectKey.parse(key))
    assert get(repository, key).status.phase is Phase.PENDING
    repository.mark_for_deletion(NAMESPACE, "short-lived")

    assert reconciler.reconcile(ObjectKey.parse(key)) == Result.done()
    assert repository.get_by_key(key) is None
    assert sim.instances_per_uid() == {}


# -- failures -------------------------------------------------------------------------------


def test_a_fatal_provider_error_fails_the_worker_until_its_spec_changes(
    reconciler: LabWorkerReconciler, repository: LabWorkerRepository
) -> None:
    key = create(repository, "fragile", annotations={FAIL_ANNOTATION: "health"})
    worker, result = converge(reconciler, repository, key)
    assert worker is not None and worker.status.phase is Phase.FAILED
    assert result == Result.done()
    assert worker.status.error_count == 1
    assert "health" in (worker.status.error_message or "")
    assert condition_reason(worker, reasons.READY) == ("False", reasons.PROVIDER_ERROR)

    set_annotations(repository, key, {})  # fixed, but annotations are not spec: still Failed
    worker, _ = converge(reconciler, repository, key)
    assert worker is not None and worker.status.phase is Phase.FAILED

    set_spec(
        repository, key, instance=worker.spec.instance.model_copy(update={"tags": {"retry": "1"}})
    )
    worker, _ = converge(reconciler, repository, key)
    assert worker is not None and worker.status.phase is Phase.READY
    assert worker.status.error_message is None
    assert worker.status.error_count == 1


def test_an_invalid_spec_fails_with_the_reason(
    reconciler: LabWorkerReconciler, repository: LabWorkerRepository, sim: SimProvider
) -> None:
    key = create(repository, "misconfigured", host={"autoLicense": True})
    worker, _ = converge(reconciler, repository, key)
    assert worker is not None and worker.status.phase is Phase.FAILED
    assert condition_reason(worker, reasons.READY) == ("False", reasons.INVALID_SPEC)
    assert "licenseSecretRef" in (worker.status.error_message or "")
    assert sim.instances_per_uid() == {}


def test_transient_provider_errors_are_retried_without_writing(
    repository: LabWorkerRepository, etcd: EtcdProcess
) -> None:
    key = create(repository, "unlucky")
    flaky = SimProvider(repository.client, "/reconciler-test", step_delay=0.0, failure_rate=1.0)
    reconciler = LabWorkerReconciler(repository, flaky)
    reconciler.reconcile(ObjectKey.parse(key))  # -> Pending: no provider call yet
    reconciler.reconcile(ObjectKey.parse(key))  # -> Provisioning
    assert get(repository, key).status.phase is Phase.PROVISIONING
    revision = etcd.revision()

    for _ in range(3):
        with pytest.raises(ReconcileError, match="transiently"):
            reconciler.reconcile(ObjectKey.parse(key))
    assert etcd.revision() == revision


def test_a_restart_between_provision_and_status_write_reuses_the_instance(
    repository: LabWorkerRepository, sim: SimProvider
) -> None:
    key = create(repository, "crashy")
    first = LabWorkerReconciler(repository, sim)
    first.reconcile(ObjectKey.parse(key))
    first.reconcile(ObjectKey.parse(key))
    provisioning = get(repository, key)
    assert provisioning.status.phase is Phase.PROVISIONING
    observe(sim, provisioning)  # provision happened, then the process "died" before writing

    restarted = LabWorkerReconciler(repository, sim)
    worker, _ = converge(restarted, repository, key)
    assert worker is not None and worker.status.phase is Phase.READY
    assert worker.metadata.uid is not None
    assert sim.instances_per_uid() == {worker.metadata.uid: 1}


# -- concurrency ----------------------------------------------------------------------------


def test_a_stale_cached_copy_costs_a_conflict_not_a_wrong_write(
    repository: LabWorkerRepository, sim: SimProvider, etcd: EtcdProcess
) -> None:
    key = create(repository, "cached")
    stale = get(repository, key)  # what a lagging informer still holds: no status at all
    LabWorkerReconciler(repository, sim).reconcile(
        ObjectKey.parse(key)
    )  # someone else moved it to Pending
    assert get(repository, key).status.phase is Phase.PENDING
    revision = etcd.revision()

    lagging = LabWorkerReconciler(repository, sim, reader=lambda _: stale)
    result = lagging.reconcile(ObjectKey.parse(key))
    assert result == Result.after(lagging.intervals.stale_observation)
    assert etcd.revision() == revision


def test_spec_writers_and_the_reconciler_never_lose_each_others_changes(
    reconciler: LabWorkerReconciler, repository: LabWorkerRepository
) -> None:
    key = create(repository, "contended")
    bumps = 25
    writer_started = threading.Event()
    errors: list[BaseException] = []

    def write_specs() -> None:
        try:
            writer_started.set()
            for number in range(bumps):
                set_spec(
                    repository,
                    key,
                    instance=get(repository, key).spec.instance.model_copy(
                        update={"tags": {"revision": str(number)}}
                    ),
                )
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    writer = threading.Thread(target=write_specs, name="spec-writer")
    writer.start()
    writer_started.wait(10)
    retried = 0
    rounds = 0
    while writer.is_alive() and rounds < 10_000:
        rounds += 1
        try:
            reconciler.reconcile(ObjectKey.parse(key))
        except ReconcileError:
            retried += 1  # too many conflicts: the manager would back off and retry
    writer.join(30)
    assert not writer.is_alive()
    assert errors == []

    worker, _ = converge(reconciler, repository, key)
    assert worker is not None
    assert worker.spec.instance.tags == {"revision": str(bumps - 1)}, "a spec change was lost"
    assert worker.metadata.generation == 1 + bumps
    assert worker.status.observed_generation == worker.metadata.generation
    assert worker.status.phase is Phase.READY

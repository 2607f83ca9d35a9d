"""`observe`: which provider calls each phase makes (the only side effects of a reconcile)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from controller.labworker.model import FINALIZER, InstanceSpec, LabWorker
from controller.labworker.observation import observe
from controller.labworker.phase import DesiredPhase, Phase
from controller.labworker.provider import HostHealth, Instance, InstanceState, ProviderError
from controller.labworker.sim import FAIL_ANNOTATION, SimProvider
from controller.resources import DEFAULT_NAMESPACE
from controller.storage import EtcdClient, connect
from tests.etcdproc import EtcdProcess

P = Phase
D = DesiredPhase


class RecordingProvider:
    """The simulator (its own fresh cloud in etcd), with a log of the calls that reached it."""

    def __init__(self, client: EtcdClient, step_delay: float = 0.0) -> None:
        self.now = 1000.0
        prefix = f"/observe-test/{uuid.uuid4().hex[:12]}"
        self.sim = SimProvider(client, prefix, step_delay=step_delay, clock=lambda: self.now)
        self.calls: list[str] = []
        self.raise_on: dict[str, Exception] = {}

    def _record(self, call: str) -> None:
        self.calls.append(call)
        if call in self.raise_on:
            raise self.raise_on[call]

    def configure(self, uid: str, annotations: Mapping[str, str]) -> None:
        self.sim.configure(uid, annotations)

    def provision(
        self, uid: str, name: str, spec: InstanceSpec, *, namespace: str = DEFAULT_NAMESPACE
    ) -> Instance:
        self._record("provision")
        return self.sim.provision(uid, name, spec)

    def describe(self, uid: str) -> Instance | None:
        self._record("describe")
        return self.sim.describe(uid)

    def start(self, uid: str) -> None:
        self._record("start")
        self.sim.start(uid)

    def stop(self, uid: str) -> None:
        self._record("stop")
        self.sim.stop(uid)

    def terminate(self, uid: str) -> None:
        self._record("terminate")
        self.sim.terminate(uid)

    def host_health(self, uid: str) -> HostHealth:
        self._record("host_health")
        return self.sim.host_health(uid)

    def license(self, uid: str, secret_ref: str | None) -> bool:
        self._record(f"license:{secret_ref}")
        return self.sim.license(uid, secret_ref)


def worker(
    phase: Phase | None,
    *,
    desired: DesiredPhase = D.READY,
    deleting: bool = False,
    auto_license: bool = False,
    annotations: dict[str, str] | None = None,
    uid: str | None = "uid-1",
) -> LabWorker:
    metadata: dict[str, Any] = {
        "name": "w1",
        "uid": uid,
        "generation": 1,
        "finalizers": [FINALIZER],
        "annotations": annotations or {},
    }
    if deleting:
        metadata["deletionTimestamp"] = "2024-05-01T12:00:00.000Z"
    host: dict[str, Any] = {"autoLicense": auto_license, "licenseSecretRef": "cml"}
    document = {
        "metadata": metadata,
        "spec": {"labTrack": "ccna", "desiredPhase": desired.value, "host": host},
        "status": {"phase": phase.value if phase else None},
    }
    return LabWorker.from_dict(document)


@pytest.fixture(scope="module")
def client(shared_etcd: EtcdProcess) -> Iterator[EtcdClient]:
    c = connect(shared_etcd.endpoint)
    yield c
    c.close()


@pytest.fixture
def provider(client: EtcdClient) -> RecordingProvider:
    return RecordingProvider(client)


@pytest.fixture
def slow(client: EtcdClient) -> RecordingProvider:
    return RecordingProvider(client, step_delay=10)


def provisioned(provider: RecordingProvider, state: InstanceState | None = None) -> None:
    provider.sim.provision("uid-1", "w1", InstanceSpec())
    if state is InstanceState.STOPPED:
        provider.sim.stop("uid-1")


@pytest.mark.parametrize(
    ("phase", "desired", "deleting"),
    [
        (None, D.READY, False),
        (P.PENDING, D.READY, False),
        (P.STOPPED, D.READY, False),
        (P.FAILED, D.TERMINATED, False),
        (P.TERMINATED, D.READY, False),
        (P.READY, D.DRAINING, False),
        (P.ACTIVE, D.STOPPED, False),
        (P.DRAINING, D.READY, False),
        (P.READY, D.READY, True),
        (P.PROVISIONING, D.READY, True),
        (P.FAILED, D.READY, True),
    ],
)
def test_phases_decided_from_the_object_alone_call_nothing(
    provider: RecordingProvider, phase: Phase | None, desired: DesiredPhase, deleting: bool
) -> None:
    observation = observe(provider, worker(phase, desired=desired, deleting=deleting))
    assert provider.calls == []
    assert observation.instance is None and observation.health is None


def test_provisioning_provisions(provider: RecordingProvider) -> None:
    observation = observe(provider, worker(P.PROVISIONING))
    assert provider.calls == ["provision"]
    assert observation.instance is not None
    assert observation.instance.state is InstanceState.RUNNING
    assert provider.sim.instances_per_uid() == {"uid-1": 1}


def test_provisioning_starts_an_instance_found_stopped(provider: RecordingProvider) -> None:
    provisioned(provider, InstanceState.STOPPED)
    observation = observe(provider, worker(P.PROVISIONING))
    assert provider.calls == ["provision", "start", "describe"]
    assert observation.instance is not None
    assert observation.instance.state is InstanceState.RUNNING


def test_starting_starts_a_stopped_instance_then_checks_the_host(
    provider: RecordingProvider,
) -> None:
    provisioned(provider, InstanceState.STOPPED)
    observation = observe(provider, worker(P.STARTING))
    assert provider.calls == ["describe", "start", "describe", "host_health"]
    assert observation.health is not None and observation.health.ready
    assert observation.license_granted is None


def test_starting_licenses_when_auto_license_is_on(provider: RecordingProvider) -> None:
    provisioned(provider)
    observation = observe(provider, worker(P.STARTING, auto_license=True))
    # One health check: the grant itself says licensed (decide counts it), no second look.
    assert provider.calls == ["describe", "host_health", "license:cml"]
    assert observation.license_granted is True


def test_starting_does_not_check_the_host_of_an_instance_not_running(
    slow: RecordingProvider,
) -> None:
    provisioned(slow)
    observation = observe(slow, worker(P.STARTING))
    assert slow.calls == ["describe"]
    assert observation.instance is not None
    assert observation.instance.state is InstanceState.PENDING


@pytest.mark.parametrize(
    ("phase", "desired"),
    [(P.READY, D.READY), (P.ACTIVE, D.READY), (P.DRAINING, D.STOPPED), (P.DRAINING, D.DRAINING)],
)
def test_running_phases_check_host_health_only(
    provider: RecordingProvider, phase: Phase, desired: DesiredPhase
) -> None:
    provisioned(provider)
    observation = observe(provider, worker(phase, desired=desired))
    assert provider.calls == ["host_health"]
    assert observation.health is not None


def test_stopping_stops_a_running_instance_once(slow: RecordingProvider) -> None:
    provisioned(slow)
    slow.now += 30
    observe(slow, worker(P.STOPPING, desired=D.STOPPED))
    assert slow.calls == ["describe", "stop", "describe"]
    slow.calls.clear()
    observation = observe(slow, worker(P.STOPPING, desired=D.STOPPED))
    assert slow.calls == ["describe"], "an instance already stopping is not stopped again"
    assert observation.instance is not None
    assert observation.instance.state is InstanceState.STOPPING


@pytest.mark.parametrize("deleting", [True, False])
def test_terminating_terminates_once(slow: RecordingProvider, deleting: bool) -> None:
    provisioned(slow)
    terminating = worker(P.TERMINATING, desired=D.TERMINATED, deleting=deleting)
    observe(slow, terminating)
    assert slow.calls == ["describe", "terminate", "describe"]
    slow.calls.clear()
    observation = observe(slow, terminating)
    assert slow.calls == ["describe"]
    assert observation.instance is not None
    assert observation.instance.state is InstanceState.TERMINATING


def test_terminating_without_any_instance_reports_none(provider: RecordingProvider) -> None:
    observation = observe(provider, worker(P.TERMINATING, deleting=True))
    assert provider.calls == ["describe"]
    assert observation.instance_known and observation.instance is None


def test_annotations_reach_the_provider_and_fatal_errors_are_captured(
    provider: RecordingProvider,
) -> None:
    observation = observe(
        provider, worker(P.PROVISIONING, annotations={FAIL_ANNOTATION: "provision"})
    )
    assert observation.fatal_error is not None and "provision" in observation.fatal_error
    assert observation.transient_error is None
    assert provider.sim.instances_per_uid() == {}


def test_transient_errors_are_captured(provider: RecordingProvider) -> None:
    provider.raise_on["provision"] = ProviderError("throttled")
    observation = observe(provider, worker(P.PROVISIONING))
    assert observation.transient_error == "throttled"
    assert observation.fatal_error is None


def test_a_worker_without_uid_cannot_be_observed(provider: RecordingProvider) -> None:
    observation = observe(provider, worker(P.PROVISIONING, uid=None))
    assert provider.calls == []
    assert observation.fatal_error is not None and "uid" in observation.fatal_error


def test_the_observation_remembers_what_it_was_made_for(provider: RecordingProvider) -> None:
    observed_worker = worker(P.PROVISIONING)
    observation = observe(provider, observed_worker)
    assert observation.made_for(observed_worker)
    moved_on = observed_worker.model_copy(deep=True)
    moved_on.status.phase = P.STARTING
    assert not observation.made_for(moved_on)
    respecced = observed_worker.model_copy(deep=True)
    respecced.metadata.generation = 2
    assert not observation.made_for(respecced)

"""The `sim` provider: idempotency by uid, step timing on an injected clock, fault
injection through annotations and failure_rate, and state-file persistence."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from controller.labworker import (
    FAIL_ANNOTATION,
    HOSTED_LABS_ANNOTATION,
    NO_LICENSE_ANNOTATION,
    InstanceState,
    LabProvider,
    ProviderError,
    ProviderFatalError,
    SimProvider,
    UnknownProvider,
    make_provider,
    sim_settings_from_env,
)
from controller.labworker.provider import AnnotationAware
from controller.resources import InstanceSpec

SPEC = InstanceSpec()
STEP = 5.0


class FakeTime:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture
def sim(clock: FakeTime) -> SimProvider:
    return SimProvider(step_delay=STEP, clock=clock, seed=1)


def test_it_implements_the_provider_protocols(sim: SimProvider) -> None:
    assert isinstance(sim, LabProvider)
    assert isinstance(sim, AnnotationAware)


# -- idempotency ----------------------------------------------------------------------------


def test_provisioning_twice_with_one_uid_creates_one_instance(sim: SimProvider) -> None:
    first = sim.provision("uid-a", "w-a", SPEC)
    again = sim.provision("uid-a", "w-a", SPEC)
    other = sim.provision("uid-b", "w-b", SPEC)
    assert again.instance_id == first.instance_id
    assert other.instance_id != first.instance_id
    assert sim.created == {"uid-a": [first.instance_id], "uid-b": [other.instance_id]}
    assert sim.instances_per_uid() == {"uid-a": 1, "uid-b": 1}


def test_a_terminated_instance_is_returned_again_not_replaced(
    sim: SimProvider, clock: FakeTime
) -> None:
    first = sim.provision("uid-a", "w-a", SPEC)
    sim.terminate("uid-a")
    clock.advance(STEP)
    again = sim.provision("uid-a", "w-a", SPEC)
    assert again.instance_id == first.instance_id
    assert again.state is InstanceState.TERMINATED
    assert sim.instances_per_uid() == {"uid-a": 1}


def test_concurrent_provisioning_of_one_uid_creates_one_instance(clock: FakeTime) -> None:
    sim = SimProvider(step_delay=0, clock=clock)
    barrier = threading.Barrier(8)
    ids: list[str] = []
    lock = threading.Lock()

    def provision() -> None:
        barrier.wait()
        instance = sim.provision("uid-a", "w-a", SPEC)
        with lock:
            ids.append(instance.instance_id)

    threads = [threading.Thread(target=provision) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 1
    assert sim.instances_per_uid() == {"uid-a": 1}


def test_lost_responses_never_create_a_second_instance(clock: FakeTime) -> None:
    sim = SimProvider(step_delay=0, failure_rate=0.6, clock=clock, seed=7)
    failures = 0
    for number in range(20):
        for _ in range(200):
            try:
                sim.provision(f"uid-{number}", f"w-{number}", SPEC)
                break
            except ProviderError:
                failures += 1
        else:
            pytest.fail("provision never succeeded at a 60% failure rate")
    assert failures > 0
    assert sim.instances_per_uid() == {f"uid-{n}": 1 for n in range(20)}


# -- timing ---------------------------------------------------------------------------------


def test_an_instance_runs_one_step_after_provision_and_its_host_one_step_later(
    sim: SimProvider, clock: FakeTime
) -> None:
    created = sim.provision("uid-a", "w-a", SPEC)
    assert created.state is InstanceState.PENDING
    assert created.address is None
    assert created.ready_in == pytest.approx(STEP)

    clock.advance(STEP - 1)
    described = sim.describe("uid-a")
    assert described is not None and described.state is InstanceState.PENDING
    assert described.ready_in == pytest.approx(1.0)

    clock.advance(1)
    running = sim.describe("uid-a")
    assert running is not None and running.state is InstanceState.RUNNING
    assert running.address and running.ready_in is None

    booting = sim.host_health("uid-a")
    assert not booting.ready and booting.ready_in == pytest.approx(STEP)
    clock.advance(STEP)
    healthy = sim.host_health("uid-a")
    assert healthy.ready and healthy.version and healthy.hosted_labs == 0


def test_zero_step_delay_converges_at_once(clock: FakeTime) -> None:
    sim = SimProvider(step_delay=0, clock=clock)
    assert sim.provision("uid-a", "w-a", SPEC).state is InstanceState.RUNNING
    assert sim.host_health("uid-a").ready
    sim.stop("uid-a")
    described = sim.describe("uid-a")
    assert described is not None and described.state is InstanceState.STOPPED
    sim.terminate("uid-a")
    described = sim.describe("uid-a")
    assert described is not None and described.state is InstanceState.TERMINATED


def test_stop_and_start_take_a_step_each(sim: SimProvider, clock: FakeTime) -> None:
    sim.provision("uid-a", "w-a", SPEC)
    clock.advance(2 * STEP)
    sim.stop("uid-a")
    sim.stop("uid-a")  # idempotent: does not restart the clock
    described = sim.describe("uid-a")
    assert described is not None and described.state is InstanceState.STOPPING
    assert not sim.host_health("uid-a").ready
    with pytest.raises(ProviderError, match="still stopping"):
        sim.start("uid-a")

    clock.advance(STEP)
    described = sim.describe("uid-a")
    assert described is not None and described.state is InstanceState.STOPPED
    assert described.address is None

    sim.start("uid-a")
    sim.start("uid-a")
    described = sim.describe("uid-a")
    assert described is not None and described.state is InstanceState.PENDING
    clock.advance(STEP)
    described = sim.describe("uid-a")
    assert described is not None and described.state is InstanceState.RUNNING


def test_terminate_is_idempotent_and_fine_without_an_instance(
    sim: SimProvider, clock: FakeTime
) -> None:
    sim.terminate("never-provisioned")
    assert sim.describe("never-provisioned") is None

    sim.provision("uid-a", "w-a", SPEC)
    sim.terminate("uid-a")
    clock.advance(STEP - 1)
    sim.terminate("uid-a")  # does not push completion further out
    clock.advance(1)
    described = sim.describe("uid-a")
    assert described is not None and described.state is InstanceState.TERMINATED
    with pytest.raises(ProviderFatalError, match="terminated"):
        sim.start("uid-a")


@pytest.mark.parametrize("call", ["start", "stop"])
def test_operations_on_a_never_provisioned_uid_are_fatal(sim: SimProvider, call: str) -> None:
    with pytest.raises(ProviderFatalError, match="no instance"):
        getattr(sim, call)("nobody")


# -- faults and annotations -------------------------------------------------------------------


def test_fail_annotation_makes_exactly_the_named_calls_fatal(
    sim: SimProvider, clock: FakeTime
) -> None:
    sim.configure("uid-a", {FAIL_ANNOTATION: "provision"})
    with pytest.raises(ProviderFatalError, match="provision"):
        sim.provision("uid-a", "w-a", SPEC)
    assert sim.instances_per_uid() == {}

    sim.configure("uid-a", {FAIL_ANNOTATION: "health, stop"})
    sim.provision("uid-a", "w-a", SPEC)
    clock.advance(2 * STEP)
    with pytest.raises(ProviderFatalError):
        sim.host_health("uid-a")
    with pytest.raises(ProviderFatalError):
        sim.stop("uid-a")
    sim.start("uid-a")  # not named: fine

    sim.configure("uid-a", {"unrelated/annotation": "x"})
    assert sim.host_health("uid-a").ready


@pytest.mark.parametrize("call", ["start", "terminate"])
def test_fail_annotation_on_start_and_terminate(
    sim: SimProvider, clock: FakeTime, call: str
) -> None:
    sim.provision("uid-a", "w-a", SPEC)
    sim.configure("uid-a", {FAIL_ANNOTATION: call})
    with pytest.raises(ProviderFatalError, match=call):
        getattr(sim, call)("uid-a")


def test_hosted_labs_annotation(sim: SimProvider, clock: FakeTime) -> None:
    sim.provision("uid-a", "w-a", SPEC)
    clock.advance(2 * STEP)
    sim.configure("uid-a", {HOSTED_LABS_ANNOTATION: "3"})
    assert sim.host_health("uid-a").hosted_labs == 3
    sim.configure("uid-a", {HOSTED_LABS_ANNOTATION: "lots"})
    assert sim.host_health("uid-a").hosted_labs == 0
    sim.configure("uid-a", {})
    assert sim.host_health("uid-a").hosted_labs == 0


def test_licensing(sim: SimProvider, clock: FakeTime) -> None:
    sim.provision("uid-a", "w-a", SPEC)
    clock.advance(STEP)
    with pytest.raises(ProviderError, match="not up yet"):
        sim.license("uid-a", "secret")
    clock.advance(STEP)

    sim.configure("uid-a", {NO_LICENSE_ANNOTATION: "true"})
    assert sim.license("uid-a", "secret") is False
    assert not sim.host_health("uid-a").licensed

    sim.configure("uid-a", {})
    assert sim.license("uid-a", "secret") is True
    assert sim.host_health("uid-a").licensed

    sim.stop("uid-a")
    clock.advance(STEP)
    sim.start("uid-a")
    clock.advance(2 * STEP)
    assert not sim.host_health("uid-a").licensed, "a restarted host needs a new license"


def test_failure_rate_one_fails_every_call_transiently(clock: FakeTime) -> None:
    sim = SimProvider(step_delay=0, failure_rate=1.0, clock=clock)
    with pytest.raises(ProviderError, match="injected"):
        sim.provision("uid-a", "w-a", SPEC)
    with pytest.raises(ProviderError):
        sim.describe("uid-a")


@pytest.mark.parametrize(
    ("settings", "problem"),
    [({"step_delay": -1}, "step_delay"), ({"failure_rate": 1.5}, "failure_rate")],
)
def test_invalid_settings_are_refused(settings: dict[str, float], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        SimProvider(**settings)  # type: ignore[arg-type]


# -- persistence ------------------------------------------------------------------------------


def test_state_file_survives_a_restart(tmp_path: Path, clock: FakeTime) -> None:
    state = tmp_path / "sim" / "state.json"
    sim = SimProvider(step_delay=STEP, state_file=state, clock=clock, seed=3)
    a = sim.provision("uid-a", "w-a", SPEC)
    sim.provision("uid-b", "w-b", SPEC)
    clock.advance(2 * STEP)
    sim.license("uid-a", "secret")
    sim.stop("uid-b")

    on_disk = json.loads(state.read_text())
    assert on_disk["created"] == sim.created
    assert [p.name for p in state.parent.iterdir()] == ["state.json"], "no temp files left"

    restarted = SimProvider(step_delay=STEP, state_file=state, clock=clock, seed=3)
    assert restarted.created == sim.created
    again = restarted.provision("uid-a", "w-a", SPEC)
    assert again.instance_id == a.instance_id and again.state is InstanceState.RUNNING
    assert restarted.host_health("uid-a").licensed
    described = restarted.describe("uid-b")
    assert described is not None and described.state is InstanceState.STOPPING
    clock.advance(STEP)
    described = restarted.describe("uid-b")
    assert described is not None and described.state is InstanceState.STOPPED
    restarted.provision("uid-c", "w-c", SPEC)  # same seed: ids must still be fresh
    assert len({i for ids in restarted.created.values() for i in ids}) == 3


def test_an_unreadable_state_file_is_reported_with_its_path(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text("{not json")
    with pytest.raises(ValueError, match=r"state\.json"):
        SimProvider(state_file=state)


# -- factory and settings ---------------------------------------------------------------------


def test_make_provider_builds_the_simulator() -> None:
    provider = make_provider("sim", step_delay=0.0, seed=1)
    assert isinstance(provider, SimProvider)
    assert provider.step_delay == 0.0


def test_make_provider_refuses_unknown_names_and_lists_the_known_ones() -> None:
    with pytest.raises(UnknownProvider, match=r"'aws'.*sim"):
        make_provider("aws")


def test_settings_from_environment(tmp_path: Path) -> None:
    env = {
        "LAB_SIM_DELAY": "0.5",
        "LAB_SIM_FAILURE_RATE": "0.1",
        "LAB_SIM_SEED": "42",
        "LAB_SIM_STATE_FILE": str(tmp_path / "s.json"),
    }
    assert sim_settings_from_env(env) == {
        "step_delay": 0.5,
        "failure_rate": 0.1,
        "seed": 42,
        "state_file": tmp_path / "s.json",
    }
    assert sim_settings_from_env({}) == {}
    with pytest.raises(ValueError, match="LAB_SIM_DELAY"):
        sim_settings_from_env({"LAB_SIM_DELAY": "fast"})

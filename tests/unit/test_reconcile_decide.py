"""`decide` against the phase table (docs/architecture.md): every row of the phase table, the refusals, conditions,
observedGeneration, deletion from every phase, phase timeouts and determinism."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.labworker import reasons
from controller.labworker.decide import Decision, IllegalTransition, decide
from controller.labworker.model import FINALIZER, LabWorker
from controller.labworker.observation import Observation
from controller.labworker.phase import DesiredPhase, Phase, allowed_targets, can_transition
from controller.labworker.phases.draft import Draft
from controller.labworker.policy import Intervals, PhaseTimeouts
from controller.labworker.provider import HostHealth, Instance, InstanceState
from controller.resources import Condition, find_condition, format_timestamp, set_condition

P = Phase
D = DesiredPhase
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
NOW = T0 + timedelta(seconds=5)
INTERVALS = Intervals()

RUNNING = Instance("i-1", InstanceState.RUNNING, "10.0.0.1")
PENDING_INSTANCE = Instance("i-1", InstanceState.PENDING, None, ready_in=3.0)
STOPPING_INSTANCE = Instance("i-1", InstanceState.STOPPING, None, ready_in=2.0)
STOPPED = Instance("i-1", InstanceState.STOPPED, None)
TERMINATING_INSTANCE = Instance("i-1", InstanceState.TERMINATING, None, ready_in=4.0)
TERMINATED = Instance("i-1", InstanceState.TERMINATED, None)
HEALTHY = HostHealth(ready=True, version="2.7", licensed=False, hosted_labs=0)
HEALTHY_LICENSED = dataclasses.replace(HEALTHY, licensed=True)
BOOTING = HostHealth(ready=False, version=None, licensed=False, hosted_labs=0, ready_in=2.0)


def with_labs(count: int) -> HostHealth:
    return dataclasses.replace(HEALTHY, hosted_labs=count)


def make_worker(
    phase: Phase | None = None,
    *,
    desired: DesiredPhase = D.READY,
    generation: int = 1,
    observed: int | None = None,
    deleting: bool = False,
    finalizers: list[str] | None = None,
    entered: datetime = T0,
    auto_license: bool = False,
    secret: str | None = "cml-license",
    uid: str | None = "uid-1",
    conditions: list[Condition] | None = None,
    **status: Any,
) -> LabWorker:
    host: dict[str, Any] = {"autoLicense": auto_license}
    if secret is not None:
        host["licenseSecretRef"] = secret
    document: dict[str, Any] = {
        "metadata": {
            "name": "w1",
            "namespace": "default",
            "uid": uid,
            "generation": generation,
            "finalizers": finalizers
            if finalizers is not None
            else ([FINALIZER] if phase is not None else []),
        },
        "spec": {"labTrack": "ccna", "desiredPhase": desired.value, "host": host},
    }
    if deleting:
        document["metadata"]["deletionTimestamp"] = format_timestamp(T0)
    worker = LabWorker.from_dict(document)
    worker.status = worker.status.model_copy(
        update={
            "phase": phase,
            "phase_transition_time": format_timestamp(entered) if phase is not None else None,
            "observed_generation": generation if observed is None else observed,
            "conditions": conditions or [],
            **status,
        }
    )
    return worker


def observed(worker: LabWorker, **fields: Any) -> Observation:
    return dataclasses.replace(Observation.blank(worker), **fields)


def instance_seen(worker: LabWorker, instance: Instance | None, **fields: Any) -> Observation:
    return observed(worker, instance=instance, instance_known=True, **fields)


def teardown_failed_conditions() -> list[Condition]:
    return set_condition(
        [],
        reasons.PROVISIONED,
        "False",
        reasons.DEPROVISIONING,
        "terminating",
        1,
        "2024-05-01T11:00:00.000Z",
    )


def run(worker: LabWorker, observation: Observation | None = None, now: datetime = NOW) -> Decision:
    return decide(worker, observation or Observation.blank(worker), now)


# -- one case per row of the table ---------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    source: Phase | None
    target: Phase
    build: Callable[[], tuple[LabWorker, Observation, datetime]]
    check: Callable[[Decision], object] = lambda _: None


def case(
    id: str,
    source: Phase | None,
    target: Phase,
    worker: Callable[[], LabWorker],
    observation: Callable[[LabWorker], Observation] = Observation.blank,
    now: datetime = NOW,
    check: Callable[[Decision], object] = lambda _: None,
) -> Case:
    def build() -> tuple[LabWorker, Observation, datetime]:
        w = worker()
        return w, observation(w), now

    return Case(id, source, target, build, check)


def _condition(decision: Decision, type: str) -> Condition:
    found = find_condition(decision.status.conditions, type)
    assert found is not None, f"no {type} condition in {decision.status.conditions}"
    return found


def _expect_condition(type: str, status: str, reason: str) -> Callable[[Decision], object]:
    def check(decision: Decision) -> None:
        found = _condition(decision, type)
        assert (found.status, found.reason) == (status, reason)

    return check


def _expect_all(*checks: Callable[[Decision], object]) -> Callable[[Decision], object]:
    def check(decision: Decision) -> None:
        for each in checks:
            each(decision)

    return check


def _finalizer_added(decision: Decision) -> None:
    assert decision.finalizers == [FINALIZER]


def _finalizer_removed(decision: Decision) -> None:
    assert FINALIZER not in decision.finalizers


def _failed_with(reason: str, *, count: int = 1) -> Callable[[Decision], object]:
    def check(decision: Decision) -> None:
        assert decision.status.error_count == count
        assert decision.status.error_message
        assert _condition(decision, reasons.READY).reason == reason
        assert decision.requeue_after is None

    return check


FAIL_FROM = [P.PROVISIONING, P.STARTING, P.READY, P.ACTIVE, P.DRAINING, P.STOPPING, P.TERMINATING]
TIMEOUT_LIMITS = {P.PROVISIONING: 900, P.STARTING: 600, P.STOPPING: 600, P.TERMINATING: 900}


def _fatal_case(phase: Phase) -> Case:
    desired = D.STOPPED if phase is P.DRAINING else D.READY
    return case(
        f"{phase}->Failed:fatal",
        phase,
        P.FAILED,
        lambda: make_worker(phase, desired=desired, deleting=phase is P.TERMINATING),
        lambda w: observed(w, fatal_error="quota exceeded"),
        check=_failed_with(reasons.PROVIDER_ERROR),
    )


def _timeout_case(phase: Phase) -> Case:
    waiting = {
        P.PROVISIONING: lambda w: instance_seen(w, PENDING_INSTANCE),
        P.STARTING: lambda w: instance_seen(w, RUNNING, health=BOOTING),
        P.STOPPING: lambda w: instance_seen(w, STOPPING_INSTANCE),
        P.TERMINATING: lambda w: instance_seen(w, TERMINATING_INSTANCE),
    }[phase]
    return case(
        f"{phase}->Failed:timeout",
        phase,
        P.FAILED,
        lambda: make_worker(phase, desired=D.STOPPED if phase is P.STOPPING else D.READY),
        waiting,
        now=T0 + timedelta(seconds=TIMEOUT_LIMITS[phase]),
        check=_failed_with(reasons.PHASE_TIMEOUT),
    )


def _deletion_case(phase: Phase) -> Case:
    return case(
        f"{phase}->Terminating:deleted",
        phase,
        P.TERMINATING,
        lambda: make_worker(phase, deleting=True),
        check=_expect_all(
            _expect_condition(reasons.PROVISIONED, "False", reasons.DEPROVISIONING),
            lambda d: d.finalizers == [FINALIZER] or pytest.fail("finalizer dropped too early"),
        ),
    )


CASES: list[Case] = [
    case("new->Pending", None, P.PENDING, lambda: make_worker(None), check=_finalizer_added),
    case(
        "Pending->Provisioning",
        P.PENDING,
        P.PROVISIONING,
        lambda: make_worker(P.PENDING),
        check=_expect_all(
            _expect_condition(reasons.PROVISIONED, "False", reasons.PROVISIONING),
            lambda d: (
                d.status.provisioning_started_at == format_timestamp(NOW)
                or pytest.fail("provisioningStartedAt not set")
            ),
        ),
    ),
    case(
        "Pending->Failed:invalid-spec",
        P.PENDING,
        P.FAILED,
        lambda: make_worker(P.PENDING, auto_license=True, secret=None),
        check=_expect_all(
            _failed_with(reasons.INVALID_SPEC),
            lambda d: (
                "licenseSecretRef" in (d.status.error_message or "")
                or pytest.fail("message does not say what is wrong")
            ),
        ),
    ),
    case(
        "Provisioning->Starting",
        P.PROVISIONING,
        P.STARTING,
        lambda: make_worker(P.PROVISIONING),
        lambda w: instance_seen(w, RUNNING),
        check=_expect_all(
            _expect_condition(reasons.PROVISIONED, "True", reasons.INSTANCE_RUNNING),
            lambda d: (
                (d.status.instance_id, d.status.address) == ("i-1", "10.0.0.1")
                or pytest.fail("instance not recorded")
            ),
        ),
    ),
    case(
        "Starting->Ready",
        P.STARTING,
        P.READY,
        lambda: make_worker(P.STARTING),
        lambda w: instance_seen(w, RUNNING, health=HEALTHY),
        check=_expect_all(
            _expect_condition(reasons.READY, "True", reasons.HOST_READY_REASON),
            _expect_condition(reasons.HOST_READY, "True", reasons.HOST_HEALTHY),
            _expect_condition(reasons.LICENSED, "False", reasons.NOT_LICENSED),
        ),
    ),
    case(
        "Starting->Ready:auto-licensed",
        P.STARTING,
        P.READY,
        lambda: make_worker(P.STARTING, auto_license=True),
        lambda w: instance_seen(w, RUNNING, health=HEALTHY_LICENSED, license_granted=True),
        check=_expect_all(
            _expect_condition(reasons.LICENSED, "True", reasons.LICENSE_APPLIED),
            lambda d: d.status.licensed or pytest.fail("licensed not recorded"),
        ),
    ),
    case(
        "Ready->Active",
        P.READY,
        P.ACTIVE,
        lambda: make_worker(P.READY),
        lambda w: observed(w, health=with_labs(3)),
        check=lambda d: d.status.hosted_labs == 3 or pytest.fail("hostedLabs not recorded"),
    ),
    case(
        "Active->Ready",
        P.ACTIVE,
        P.READY,
        lambda: make_worker(P.ACTIVE, hosted_labs=2),
        lambda w: observed(w, health=with_labs(0)),
    ),
    *[
        case(
            f"{phase}->Draining:{desired}",
            phase,
            P.DRAINING,
            lambda phase=phase, desired=desired: make_worker(phase, desired=desired),  # type: ignore[misc]
            check=_expect_condition(reasons.READY, "False", reasons.DRAINING),
        )
        for phase in (P.READY, P.ACTIVE)
        for desired in (D.DRAINING, D.STOPPED, D.TERMINATED)
    ],
    case("Draining->Ready", P.DRAINING, P.READY, lambda: make_worker(P.DRAINING)),
    *[
        case(
            f"Draining->Stopping:{desired}",
            P.DRAINING,
            P.STOPPING,
            lambda desired=desired: make_worker(P.DRAINING, desired=desired),  # type: ignore[misc]
            lambda w: observed(w, health=with_labs(0)),
        )
        for desired in (D.STOPPED, D.TERMINATED)
    ],
    case(
        "Stopping->Stopped",
        P.STOPPING,
        P.STOPPED,
        lambda: make_worker(P.STOPPING, desired=D.STOPPED, address="10.0.0.1"),
        lambda w: instance_seen(w, STOPPED),
        check=lambda d: (
            (d.status.address is None and d.requeue_after is None)
            or pytest.fail("a stopped worker keeps no address and waits for nothing")
        ),
    ),
    case(
        "Stopped->Starting",
        P.STOPPED,
        P.STARTING,
        lambda: make_worker(P.STOPPED, desired=D.READY),
    ),
    case(
        "Stopped->Terminating",
        P.STOPPED,
        P.TERMINATING,
        lambda: make_worker(P.STOPPED, desired=D.TERMINATED),
    ),
    *[_fatal_case(phase) for phase in FAIL_FROM],
    *[_timeout_case(phase) for phase in TIMEOUT_LIMITS],
    case(
        "Pending->Failed:missing-uid",
        P.PENDING,
        P.FAILED,
        lambda: make_worker(P.PENDING, uid=None),
        check=_failed_with(reasons.INVALID_SPEC),
    ),
    case(
        "Failed->Terminating:desired",
        P.FAILED,
        P.TERMINATING,
        lambda: make_worker(P.FAILED, desired=D.TERMINATED),
    ),
    case(
        "Failed->Provisioning:new-generation",
        P.FAILED,
        P.PROVISIONING,
        lambda: make_worker(
            P.FAILED, generation=3, observed=2, error_message="boom", error_count=1
        ),
        check=lambda d: (
            (d.status.error_message is None and d.status.error_count == 1)
            or pytest.fail("a retry clears the message but keeps the count")
        ),
    ),
    *[
        _deletion_case(phase)
        for phase in (
            P.PROVISIONING,
            P.STARTING,
            P.READY,
            P.ACTIVE,
            P.DRAINING,
            P.STOPPING,
            P.STOPPED,
            P.FAILED,
        )
    ],
    case(
        "Terminating->Terminated:deleted",
        P.TERMINATING,
        P.TERMINATED,
        lambda: make_worker(P.TERMINATING, deleting=True),
        lambda w: instance_seen(w, TERMINATED),
        check=_expect_all(
            _finalizer_removed,
            _expect_condition(reasons.PROVISIONED, "False", reasons.DEPROVISIONED),
        ),
    ),
    case(
        "Terminating->Terminated:desired",
        P.TERMINATING,
        P.TERMINATED,
        lambda: make_worker(P.TERMINATING, desired=D.TERMINATED),
        lambda w: instance_seen(w, None),
        check=_finalizer_removed,
    ),
]


@pytest.mark.parametrize("row", CASES, ids=lambda row: row.id)
def test_table_row(row: Case) -> None:
    worker, observation, now = row.build()
    assert worker.status.phase is row.source
    decision = decide(worker, observation, now)
    assert decision.phase is row.target
    assert can_transition(row.source, row.target)
    assert decision.changed
    assert decision.status.phase_transition_time == format_timestamp(now)
    assert decision.status.observed_generation == worker.metadata.generation
    row.check(decision)


def test_cases_cover_every_transition_of_the_table() -> None:
    covered = {(row.source, row.target) for row in CASES}
    everything = {
        (source, target) for source in (None, *Phase) for target in allowed_targets(source)
    }
    # Legal but never taken: a Pending worker has no instance, so deletion removes the
    # finalizer directly (test_deleting_before_anything_was_provisioned); a Stopped worker
    # calls no provider and has no timeout, so nothing can fail it (a lost instance is found
    # when it is started again: test_instance_lost_while_starting_or_stopping_fails).
    assert everything - covered == {(P.PENDING, P.TERMINATING), (P.STOPPED, P.FAILED)}


# -- refusals: what decide must not do -------------------------------------------------------


def test_pending_with_a_running_instance_does_not_jump_ahead() -> None:
    worker = make_worker(P.PENDING)
    decision = decide(worker, instance_seen(worker, RUNNING, health=HEALTHY_LICENSED), NOW)
    assert decision.phase is P.PROVISIONING


def test_provisioning_waits_for_a_pending_instance_and_records_it() -> None:
    worker = make_worker(P.PROVISIONING)
    decision = run(worker, instance_seen(worker, PENDING_INSTANCE))
    assert decision.phase is P.PROVISIONING
    assert decision.status.instance_id == "i-1"
    assert decision.requeue_after == pytest.approx(3.0)  # the provider's ready_in hint


def test_provisioning_a_terminated_instance_fails_instead_of_reusing_it() -> None:
    worker = make_worker(P.PROVISIONING)
    decision = run(worker, instance_seen(worker, TERMINATED))
    assert decision.phase is P.FAILED
    assert _condition(decision, reasons.READY).reason == reasons.INSTANCE_TERMINATED


@pytest.mark.parametrize("instance", [None, TERMINATED, TERMINATING_INSTANCE])
@pytest.mark.parametrize("phase", [P.STARTING, P.STOPPING])
def test_instance_lost_while_starting_or_stopping_fails(
    phase: Phase, instance: Instance | None
) -> None:
    worker = make_worker(phase, desired=D.STOPPED if phase is P.STOPPING else D.READY)
    decision = run(worker, instance_seen(worker, instance))
    assert decision.phase is P.FAILED
    assert _condition(decision, reasons.READY).reason == reasons.INSTANCE_LOST


def test_starting_waits_for_the_host() -> None:
    worker = make_worker(P.STARTING)
    decision = run(worker, instance_seen(worker, RUNNING, health=BOOTING))
    assert decision.phase is P.STARTING
    assert _condition(decision, reasons.HOST_READY).reason == reasons.HOST_STARTING
    assert decision.requeue_after == pytest.approx(2.0)


def test_starting_waits_for_a_stopped_instance_being_started() -> None:
    worker = make_worker(P.STARTING)
    decision = run(worker, instance_seen(worker, PENDING_INSTANCE))
    assert decision.phase is P.STARTING
    assert _condition(decision, reasons.HOST_READY).reason == reasons.INSTANCE_NOT_RUNNING


def test_starting_without_an_available_license_stays_starting() -> None:
    worker = make_worker(P.STARTING, auto_license=True)
    decision = run(worker, instance_seen(worker, RUNNING, health=HEALTHY, license_granted=False))
    assert decision.phase is P.STARTING
    licensed = _condition(decision, reasons.LICENSED)
    assert (licensed.status, licensed.reason) == ("False", reasons.NO_LICENSE_AVAILABLE)
    assert decision.requeue_after == pytest.approx(INTERVALS.license_retry)
    assert _condition(decision, reasons.HOST_READY).status == "True"


def test_draining_with_labs_left_keeps_draining() -> None:
    worker = make_worker(P.DRAINING, desired=D.STOPPED)
    decision = run(worker, observed(worker, health=with_labs(2)))
    assert decision.phase is P.DRAINING
    assert decision.status.hosted_labs == 2
    assert decision.requeue_after == pytest.approx(INTERVALS.health_check)


def test_draining_as_desired_holds_even_without_labs() -> None:
    worker = make_worker(P.DRAINING, desired=D.DRAINING)
    assert run(worker, observed(worker, health=with_labs(0))).phase is P.DRAINING


@pytest.mark.parametrize("desired", [D.DRAINING, D.STOPPED])
def test_stopped_stays_stopped_unless_asked_to_start_or_terminate(desired: DesiredPhase) -> None:
    decision = run(make_worker(P.STOPPED, desired=desired))
    assert decision.phase is P.STOPPED
    assert decision.requeue_after is None


def test_nothing_leaves_terminated() -> None:
    worker = make_worker(P.TERMINATED, desired=D.READY, finalizers=[])
    decision = run(worker)
    assert decision.phase is P.TERMINATED
    assert not decision.changed


def test_failed_waits_for_a_spec_change() -> None:
    decision = run(make_worker(P.FAILED, desired=D.READY))
    assert decision.phase is P.FAILED
    assert not decision.changed
    assert decision.requeue_after is None


def test_failed_with_a_new_but_still_invalid_spec_stays_failed() -> None:
    worker = make_worker(P.FAILED, generation=2, observed=1, auto_license=True, secret=None)
    decision = run(worker)
    assert decision.phase is P.FAILED
    assert _condition(decision, reasons.READY).reason == reasons.INVALID_SPEC
    assert decision.status.observed_generation == 2
    assert not run(worker.model_copy(update={"status": decision.status})).changed


def test_pending_with_desired_terminated_provisions_nothing() -> None:
    decision = run(make_worker(P.PENDING, desired=D.TERMINATED))
    assert decision.phase is P.PENDING
    assert decision.requeue_after is None


def test_stale_observation_changes_nothing_and_asks_to_look_again() -> None:
    worker = make_worker(P.PROVISIONING, generation=2)
    made_for_old = dataclasses.replace(instance_seen(worker, RUNNING), generation=1)
    decision = run(worker, made_for_old)
    assert decision.stale and not decision.changed
    assert decision.status == worker.status
    assert decision.requeue_after == pytest.approx(INTERVALS.stale_observation)


def test_observation_for_another_phase_is_stale() -> None:
    worker = make_worker(P.STARTING)
    made_for_provisioning = dataclasses.replace(
        instance_seen(worker, RUNNING, health=HEALTHY), phase=P.PROVISIONING
    )
    assert run(worker, made_for_provisioning).stale


def test_transient_error_changes_nothing() -> None:
    worker = make_worker(P.PROVISIONING)
    decision = run(worker, observed(worker, transient_error="throttled"))
    assert not decision.changed
    assert decision.status == worker.status


def test_transient_error_past_the_phase_timeout_fails() -> None:
    worker = make_worker(P.PROVISIONING)
    decision = decide(
        worker, observed(worker, transient_error="throttled"), T0 + timedelta(seconds=900)
    )
    assert decision.phase is P.FAILED
    assert "throttled" in (decision.status.error_message or "")
    assert _condition(decision, reasons.READY).reason == reasons.PHASE_TIMEOUT


def test_the_guard_refuses_a_transition_outside_the_table() -> None:
    worker = make_worker(P.PENDING)
    draft = Draft(worker, Observation.blank(worker), NOW, INTERVALS)
    with pytest.raises(IllegalTransition, match="Pending -> Ready"):
        draft.move(P.READY, "a shortcut")


# -- conditions -------------------------------------------------------------------------------


def test_condition_transition_time_moves_only_when_the_status_flips() -> None:
    worker = make_worker(P.STARTING)
    ready = run(worker, instance_seen(worker, RUNNING, health=HEALTHY))
    ready_since = _condition(ready, reasons.READY).last_transition_time
    assert ready_since == format_timestamp(NOW)

    worker = worker.model_copy(update={"status": ready.status})
    later = NOW + timedelta(seconds=400)
    again = decide(worker, observed(worker, health=HEALTHY), later)
    assert _condition(again, reasons.READY).last_transition_time == ready_since

    worker = worker.model_copy(update={"status": again.status})
    sick = decide(worker, observed(worker, health=dataclasses.replace(HEALTHY, ready=False)), later)
    assert sick.phase is P.READY  # no transition back to Starting exists
    ready_condition = _condition(sick, reasons.READY)
    assert ready_condition.status == "False"
    assert ready_condition.reason == reasons.HOST_UNHEALTHY
    assert ready_condition.last_transition_time == format_timestamp(later)


def test_conditions_carry_the_generation_they_were_computed_for() -> None:
    worker = make_worker(P.READY, generation=4)
    decision = run(worker, observed(worker, health=HEALTHY))
    assert {c.observed_generation for c in decision.status.conditions} == {4}


# -- observedGeneration -------------------------------------------------------------------------


def test_a_spec_change_on_a_ready_worker_is_observed_once() -> None:
    worker = make_worker(P.READY, generation=2, observed=1)
    first = run(worker, observed(worker, health=HEALTHY))
    assert first.changed and first.phase is P.READY
    assert first.status.observed_generation == 2
    settled = worker.model_copy(update={"status": first.status})
    assert not run(settled, observed(settled, health=HEALTHY)).changed


# -- deletion -----------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", [None, P.PENDING])
def test_deleting_before_anything_was_provisioned(phase: Phase | None) -> None:
    decision = run(make_worker(phase, deleting=True, finalizers=[FINALIZER, "other/keep"]))
    assert decision.finalizers == ["other/keep"]
    assert decision.phase is phase
    assert decision.requeue_after is None


def test_deleting_a_terminated_worker_removes_the_finalizer() -> None:
    decision = run(make_worker(P.TERMINATED, deleting=True))
    assert decision.finalizers == []


def test_terminating_for_a_deletion_waits_for_the_instance() -> None:
    worker = make_worker(P.TERMINATING, deleting=True)
    decision = run(worker, instance_seen(worker, TERMINATING_INSTANCE))
    assert decision.phase is P.TERMINATING
    assert decision.finalizers == [FINALIZER]
    assert decision.requeue_after == pytest.approx(4.0)


@pytest.mark.parametrize("phase", [None, *Phase])
def test_deleting_without_our_finalizer_does_nothing(phase: Phase | None) -> None:
    worker = make_worker(phase, deleting=True, finalizers=["other/keep"])
    decision = run(worker)
    assert not decision.changed
    assert decision.finalizers == ["other/keep"]


def test_a_new_worker_being_deleted_gets_no_finalizer() -> None:
    decision = run(make_worker(None, deleting=True, finalizers=[]))
    assert not decision.changed
    assert decision.finalizers == []


def test_a_finalizer_removed_by_hand_is_restored_while_the_worker_lives() -> None:
    worker = make_worker(P.STOPPED, desired=D.STOPPED, finalizers=[])
    assert run(worker).finalizers == [FINALIZER]


def test_desired_terminated_ends_without_finalizer_and_the_object_stays() -> None:
    worker = make_worker(P.TERMINATING, desired=D.TERMINATED)
    decision = run(worker, instance_seen(worker, TERMINATED))
    assert decision.phase is P.TERMINATED
    assert decision.finalizers == []
    assert decision.status.address is None


def test_failed_teardown_is_retried_after_the_retry_interval_not_at_once() -> None:
    worker = make_worker(P.FAILED, deleting=True, conditions=teardown_failed_conditions())
    soon = run(worker, now=T0 + timedelta(seconds=10))
    assert soon.phase is P.FAILED and not soon.changed
    assert soon.requeue_after == pytest.approx(INTERVALS.teardown_retry - 10)

    later = run(worker, now=T0 + timedelta(seconds=INTERVALS.teardown_retry))
    assert later.phase is P.TERMINATING


def test_failed_teardown_is_retried_at_once_after_a_spec_change() -> None:
    worker = make_worker(
        P.FAILED,
        desired=D.TERMINATED,
        generation=2,
        observed=1,
        conditions=teardown_failed_conditions(),
    )
    assert run(worker, now=T0 + timedelta(seconds=1)).phase is P.TERMINATING


# -- phase timeouts ----------------------------------------------------------------------------


def test_waiting_is_capped_by_the_remaining_phase_time() -> None:
    worker = make_worker(P.PROVISIONING)
    slow = instance_seen(worker, dataclasses.replace(PENDING_INSTANCE, ready_in=60.0))
    decision = decide(worker, slow, T0 + timedelta(seconds=890))
    assert decision.phase is P.PROVISIONING
    assert decision.requeue_after == pytest.approx(10.0)


def test_timeouts_are_configurable() -> None:
    worker = make_worker(P.STARTING)
    booting = instance_seen(worker, RUNNING, health=BOOTING)
    at = T0 + timedelta(seconds=30)
    assert decide(worker, booting, at).phase is P.STARTING
    short = decide(worker, booting, at, PhaseTimeouts(starting=30))
    assert short.phase is P.FAILED
    assert "30s" in (short.status.error_message or "")


def test_draining_has_no_timeout_by_default() -> None:
    worker = make_worker(P.DRAINING, desired=D.STOPPED)
    decision = decide(worker, observed(worker, health=with_labs(1)), T0 + timedelta(days=30))
    assert decision.phase is P.DRAINING


def test_a_status_without_transition_time_gets_one_instead_of_timing_out() -> None:
    worker = make_worker(P.PROVISIONING)
    worker.status.phase_transition_time = None
    decision = decide(worker, instance_seen(worker, PENDING_INSTANCE), T0 + timedelta(days=1))
    assert decision.phase is P.PROVISIONING
    assert decision.status.phase_transition_time is not None


# -- determinism: a converged worker is not rewritten ----------------------------------------


def _converge(worker: LabWorker, observation_for: Callable[[LabWorker], Observation]) -> LabWorker:
    for _ in range(10):
        decision = decide(worker, observation_for(worker), NOW)
        if not decision.changed:
            return worker
        worker = worker.model_copy(
            update={
                "status": decision.status,
                "metadata": worker.metadata.model_copy(update={"finalizers": decision.finalizers}),
            }
        )
    raise AssertionError(f"did not converge: {worker.status}")


@pytest.mark.parametrize(
    ("phase", "desired", "health"),
    [
        (P.READY, D.READY, HEALTHY),
        (P.ACTIVE, D.READY, with_labs(4)),
        (P.DRAINING, D.DRAINING, with_labs(1)),
        (P.STOPPED, D.STOPPED, None),
        (P.FAILED, D.READY, None),
    ],
)
def test_deciding_again_on_a_converged_worker_changes_nothing(
    phase: Phase, desired: DesiredPhase, health: HostHealth | None
) -> None:
    worker = _converge(make_worker(phase, desired=desired), lambda w: observed(w, health=health))
    within = NOW + timedelta(seconds=INTERVALS.health_record - 1)
    first = decide(worker, observed(worker, health=health), within)
    second = decide(worker, observed(worker, health=health), within)
    assert not first.changed
    assert first.status == second.status == worker.status


def test_last_health_check_is_refreshed_only_after_the_record_interval() -> None:
    worker = _converge(make_worker(P.READY), lambda w: observed(w, health=HEALTHY))
    recorded = worker.status.last_health_check
    assert recorded == format_timestamp(NOW)
    late = NOW + timedelta(seconds=INTERVALS.health_record)
    decision = decide(worker, observed(worker, health=HEALTHY), late)
    assert decision.changed
    assert decision.status.last_health_check == format_timestamp(late)
    assert decision.status.model_copy(update={"last_health_check": recorded}) == worker.status


def test_decide_does_not_touch_its_input() -> None:
    worker = make_worker(P.STARTING)
    before = worker.model_copy(deep=True)
    decide(worker, instance_seen(worker, RUNNING, health=HEALTHY), NOW)
    assert worker == before


# -- property: whatever the provider says, only table moves are made --------------------------

instances = st.one_of(
    st.none(),
    st.builds(
        Instance,
        instance_id=st.just("i-9"),
        state=st.sampled_from(InstanceState),
        address=st.sampled_from([None, "10.0.0.9"]),
        ready_in=st.sampled_from([None, 0.0, 5.0]),
    ),
)
healths = st.builds(
    HostHealth,
    ready=st.booleans(),
    version=st.sampled_from([None, "2.7"]),
    licensed=st.booleans(),
    hosted_labs=st.integers(0, 3),
)


@settings(max_examples=400, deadline=None)
@given(
    phase=st.sampled_from([None, *Phase]),
    desired=st.sampled_from(DesiredPhase),
    deleting=st.booleans(),
    finalizer=st.booleans(),
    new_generation=st.booleans(),
    auto_license=st.booleans(),
    instance=instances,
    health=healths,
    granted=st.sampled_from([None, True, False]),
    error=st.sampled_from([None, "fatal", "transient"]),
    elapsed=st.sampled_from([0, 100, 1000, 100000]),
)
def test_any_observation_leads_only_to_legal_moves(
    phase: Phase | None,
    desired: DesiredPhase,
    deleting: bool,
    finalizer: bool,
    new_generation: bool,
    auto_license: bool,
    instance: Instance | None,
    health: HostHealth,
    granted: bool | None,
    error: str | None,
    elapsed: int,
) -> None:
    worker = make_worker(
        phase,
        desired=desired,
        deleting=deleting,
        finalizers=[FINALIZER] if finalizer else [],
        generation=2,
        observed=1 if new_generation else 2,
        auto_license=auto_license,
    )
    observation = instance_seen(
        worker,
        instance,
        health=health,
        license_granted=granted,
        fatal_error="boom" if error == "fatal" else None,
        transient_error="slow" if error == "transient" else None,
    )
    now = T0 + timedelta(seconds=elapsed)
    decision = decide(worker, observation, now)  # raises IllegalTransition on a bad move
    if decision.phase != phase:
        assert decision.phase is not None
        assert can_transition(phase, decision.phase)
    assert decide(worker, observation, now) == decision
    if deleting and not finalizer:
        assert not decision.changed

"""Step (c) of a reconcile: the next status, as a pure function of what is known.

`decide(worker, observation, now, ...)` reads nothing else and changes nothing: the same
inputs give the same Decision. That is what lets the repository re-run it on a fresher copy
after a CAS conflict, and what keeps a converged worker from being rewritten: a decision
that changes nothing leaves the status equal to the input, and no transaction is sent.

Every phase change goes through `can_transition` (docs/architecture.md, Phases); anything else is a bug and
raises instead of being written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from controller.labworker import reasons
from controller.labworker.observation import Observation
from controller.labworker.policy import (
    DEFAULT_INTERVALS,
    DEFAULT_TIMEOUTS,
    Intervals,
    PhaseTimeouts,
)
from controller.labworker.provider import HostHealth, Instance, InstanceState
from controller.resources import (
    FINALIZER,
    ConditionStatus,
    DesiredPhase,
    LabWorker,
    LabWorkerStatus,
    Phase,
    can_transition,
    find_condition,
    format_timestamp,
    parse_timestamp,
    set_condition,
)

MAX_TAG_KEY_LENGTH = 128
MAX_TAG_VALUE_LENGTH = 256


class IllegalTransition(AssertionError):
    """decide tried a phase change the phase table (docs/architecture.md, Phases) does not allow: a bug, never written."""


@dataclass(frozen=True, slots=True)
class Decision:
    status: LabWorkerStatus
    finalizers: list[str]
    requeue_after: float | None
    """None: nothing to wait for; the next event (or a spec change) brings the worker back."""
    summary: str
    """What was decided and why, in words for an operator's log."""
    stale: bool = False
    """The observation was made for another phase/generation: nothing was decided."""
    changed: bool = field(default=False)
    """Status or finalizers differ from the input: a write is needed."""

    @property
    def phase(self) -> Phase | None:
        return self.status.phase


def spec_problems(worker: LabWorker) -> list[str]:
    """Semantic checks the schema cannot express; each problem says how to fix it."""
    problems: list[str] = []
    if not worker.metadata.uid:
        problems.append(
            "metadata.uid is missing: create workers with labctl or the repository, which "
            "assign the uid the provider uses as its client token"
        )
    host = worker.spec.host
    if host.auto_license and not host.license_secret_ref:
        problems.append(
            "spec.host.autoLicense is true but spec.host.licenseSecretRef is not set: "
            "name the secret holding the license, or set autoLicense to false"
        )
    for key, value in worker.spec.instance.tags.items():
        if not key.strip():
            problems.append("spec.instance.tags: a tag key is empty")
        elif len(key) > MAX_TAG_KEY_LENGTH:
            problems.append(
                f"spec.instance.tags: key {key[:20]!r}... is longer than "
                f"{MAX_TAG_KEY_LENGTH} characters"
            )
        if len(value) > MAX_TAG_VALUE_LENGTH:
            problems.append(
                f"spec.instance.tags[{key!r}]: value is longer than "
                f"{MAX_TAG_VALUE_LENGTH} characters"
            )
    return problems


def decide(
    worker: LabWorker,
    observation: Observation,
    now: datetime,
    timeouts: PhaseTimeouts = DEFAULT_TIMEOUTS,
    intervals: Intervals = DEFAULT_INTERVALS,
) -> Decision:
    draft = _Draft(worker, observation, now, timeouts, intervals)
    if not observation.made_for(worker):
        return draft.unchanged(
            intervals.stale_observation,
            "the worker changed while the provider was being asked; looking again",
            stale=True,
        )
    return draft.run()


class _Draft:
    """The status being built. Handlers change it; `finish` turns it into a Decision."""

    def __init__(
        self,
        worker: LabWorker,
        observation: Observation,
        now: datetime,
        timeouts: PhaseTimeouts,
        intervals: Intervals,
    ) -> None:
        self.worker = worker
        self.old = worker.status
        self.phase = worker.status.phase
        self.obs = observation
        self.moment = now
        self.now = format_timestamp(now)
        self.timeouts = timeouts
        self.intervals = intervals
        self.generation = worker.metadata.generation
        self.status = worker.status.model_copy(deep=True)
        self.finalizers = list(worker.metadata.finalizers)
        self.requeue_after: float | None = None
        self.summary = ""
        self.deleting = worker.metadata.deletion_timestamp is not None
        self.desired = worker.spec.desired_phase

    # -- the decision procedure ------------------------------------------------------------

    def run(self) -> Decision:
        phase = self.phase
        if self.deleting:
            if FINALIZER not in self.finalizers:
                return self.unchanged(None, "being deleted and holds no finalizer of ours")
            if phase in (None, Phase.PENDING):
                self.remove_finalizer("deleted before anything was provisioned")
                return self.finish()
            if phase is Phase.TERMINATED:
                self.remove_finalizer("deleted after its instance was terminated")
                return self.finish()
            if phase not in (Phase.FAILED, Phase.TERMINATING):
                self.enter_terminating("deletionTimestamp is set")
                return self.finish()
        elif phase is None:
            self.move(Phase.PENDING, "first seen")
            self.add_finalizer()
            self.condition(reasons.READY, "False", reasons.PENDING, "accepted; provisioning next")
            self.next_step()
            return self.finish()
        elif phase is Phase.TERMINATED:
            self.remove_finalizer("its instance is terminated")
            self.summary = self.summary or "terminated; nothing left to do"
            return self.finish()
        else:
            self.add_finalizer()

        if self.phase is not None and self.old.phase_transition_time is None:
            # Written by a controller that predates phaseTransitionTime: start the clock now.
            self.status.phase_transition_time = self.now

        # Only phases that called the provider have errors to weigh.
        if phase in _OBSERVING_PHASES and self.obs.fatal_error is not None:
            self.fail(reasons.PROVIDER_ERROR, self.obs.fatal_error)
            return self.finish()
        if phase in _OBSERVING_PHASES and self.obs.transient_error is not None:
            overdue = self.overdue()
            if overdue is None:
                return self.unchanged(
                    None, f"provider call failed transiently: {self.obs.transient_error}"
                )
            self.fail(
                reasons.PHASE_TIMEOUT,
                f"{overdue}; last provider error: {self.obs.transient_error}",
            )
            return self.finish()

        assert phase is not None, "a worker without a phase was handled above"
        _HANDLERS[phase](self)

        if self.status.phase is self.phase:
            overdue = self.overdue()
            if overdue is not None:
                self.fail(reasons.PHASE_TIMEOUT, f"{overdue}; {self.summary}")
            else:
                self.cap_requeue_at_timeout()
        return self.finish()

    # -- building blocks -------------------------------------------------------------------

    def move(self, to: Phase, why: str) -> None:
        if not can_transition(self.phase, to):
            raise IllegalTransition(
                f"{self.worker.metadata.namespaced_name}: {self.phase or '(new)'} -> {to} "
                f"is not in the phase table (attempted because: {why})"
            )
        self.status.phase = to
        self.status.phase_transition_time = self.now
        self.summary = f"{self.phase or '(new)'} -> {to}: {why}"

    def stay(self, why: str, wait: float | None) -> None:
        self.summary = why
        if wait is not None:
            self.wait(wait)

    def wait(self, seconds: float | None) -> None:
        delay = self.intervals.provider_poll if seconds is None else seconds
        delay = max(delay, self.intervals.next_step)
        self.requeue_after = delay if self.requeue_after is None else min(self.requeue_after, delay)

    def next_step(self) -> None:
        self.requeue_after = self.intervals.next_step

    def condition(self, type: str, status: ConditionStatus, reason: str, message: str) -> None:
        self.status.conditions = set_condition(
            self.status.conditions, type, status, reason, message, self.generation, self.now
        )

    def add_finalizer(self) -> None:
        if FINALIZER not in self.finalizers:
            self.finalizers.append(FINALIZER)

    def remove_finalizer(self, why: str) -> None:
        if FINALIZER in self.finalizers:
            self.finalizers = [f for f in self.finalizers if f != FINALIZER]
            self.summary = f"finalizer removed: {why}"

    def fail(self, reason: str, message: str) -> None:
        self.move(Phase.FAILED, f"{reason}: {message}")
        self.status.error_message = message
        self.status.error_count = self.old.error_count + 1
        self.condition(reasons.READY, "False", reason, message)
        self.requeue_after = None

    def enter_terminating(self, why: str) -> None:
        self.move(Phase.TERMINATING, why)
        self.condition(
            reasons.PROVISIONED, "False", reasons.DEPROVISIONING, "terminating the instance"
        )
        self.condition(reasons.READY, "False", reasons.TERMINATING, why)
        self.next_step()

    def elapsed_in_phase(self) -> float:
        entered = self.old.phase_transition_time
        if entered is None:
            return 0.0
        return (self.moment - parse_timestamp(entered)).total_seconds()

    def overdue(self) -> str | None:
        limit = self.timeouts.for_phase(self.phase)
        if limit is None:
            return None
        if self.elapsed_in_phase() < limit:
            return None
        return f"still {self.phase} after the {limit:g}s phase timeout"

    def cap_requeue_at_timeout(self) -> None:
        limit = self.timeouts.for_phase(self.phase)
        if limit is None or self.requeue_after is None:
            return
        remaining = limit - self.elapsed_in_phase()
        self.requeue_after = max(min(self.requeue_after, remaining), self.intervals.next_step)

    def unchanged(self, requeue_after: float | None, why: str, *, stale: bool = False) -> Decision:
        return Decision(
            status=self.old,
            finalizers=list(self.worker.metadata.finalizers),
            requeue_after=requeue_after,
            summary=why,
            stale=stale,
        )

    def finish(self) -> Decision:
        self.status.observed_generation = self.generation
        if self.obs.health is not None:
            self._stamp_health_check()
        changed = self.status != self.old or self.finalizers != self.worker.metadata.finalizers
        return Decision(
            status=self.status,
            finalizers=self.finalizers,
            requeue_after=self.requeue_after,
            summary=self.summary,
            changed=changed,
        )

    def _stamp_health_check(self) -> None:
        """Record the check when something changed, or when the record is getting old."""
        last = self.old.last_health_check
        if last is not None and self.status == self.old:
            age = (self.moment - parse_timestamp(last)).total_seconds()
            if age < self.intervals.health_record:
                return
        self.status.last_health_check = self.now

    # -- health, licence -------------------------------------------------------------------

    def apply_health(self, health: HostHealth) -> None:
        if health.ready:
            self.status.host_version = health.version
            self.status.licensed = health.licensed
            self.status.hosted_labs = health.hosted_labs
            version = f" (version {health.version})" if health.version else ""
            self.condition(
                reasons.HOST_READY, "True", reasons.HOST_HEALTHY, f"host healthy{version}"
            )
        else:
            self.condition(
                reasons.HOST_READY,
                "False",
                reasons.HOST_UNHEALTHY
                if self.phase is not Phase.STARTING
                else reasons.HOST_STARTING,
                "the host does not report ready yet"
                if self.phase is Phase.STARTING
                else "the host reports not ready",
            )

    def apply_license(self, health: HostHealth, granted: bool | None) -> bool:
        """Set the Licensed condition; True when the host counts as licensed."""
        host = self.worker.spec.host
        licensed = health.licensed or granted is True
        self.status.licensed = licensed
        if licensed:
            self.condition(
                reasons.LICENSED, "True", reasons.LICENSE_APPLIED, "the host is licensed"
            )
        elif host.auto_license and granted is False and self.obs.license_error:
            self.condition(
                reasons.LICENSED,
                "False",
                reasons.LICENSE_SECRET_MISSING,
                f"{self.obs.license_error}; asking again later",
            )
        elif host.auto_license and granted is False:
            self.condition(
                reasons.LICENSED,
                "False",
                reasons.NO_LICENSE_AVAILABLE,
                f"no license available from secret {host.license_secret_ref}; asking again later",
            )
        elif host.auto_license:
            self.condition(
                reasons.LICENSED, "False", reasons.NOT_LICENSED, "the host has no license"
            )
        else:
            self.condition(
                reasons.LICENSED,
                "False",
                reasons.NOT_LICENSED,
                "autoLicense is off and the host has no license; license it on the host",
            )
        return licensed


# -- phase handlers (called only when not deleting, or in Terminating / Failed) ------------


def _pending(d: _Draft) -> None:
    problems = spec_problems(d.worker)
    if problems:
        d.fail(reasons.INVALID_SPEC, "; ".join(problems))
        return
    if d.desired is DesiredPhase.TERMINATED:
        d.condition(
            reasons.READY,
            "False",
            reasons.PENDING,
            "desiredPhase is Terminated: nothing will be provisioned",
        )
        d.stay("desiredPhase is Terminated; not provisioning", None)
        return
    _enter_provisioning(d, "spec is valid")


def _enter_provisioning(d: _Draft, why: str) -> None:
    d.move(Phase.PROVISIONING, why)
    d.status.provisioning_started_at = d.now
    d.status.provisioning_completed_at = None
    d.status.error_message = None
    message = f"provisioning a {d.worker.spec.instance.type} instance"
    d.condition(reasons.PROVISIONED, "False", reasons.PROVISIONING, message)
    d.condition(reasons.READY, "False", reasons.PROVISIONING, message)
    d.next_step()


def _provisioning(d: _Draft) -> None:
    instance = d.obs.instance
    if instance is None:
        d.stay("the provider has not returned an instance yet", d.intervals.provider_poll)
        return
    d.status.instance_id = instance.instance_id
    if instance.state in (InstanceState.TERMINATING, InstanceState.TERMINATED):
        d.fail(
            reasons.INSTANCE_TERMINATED,
            f"instance {instance.instance_id} of this worker was terminated and cannot be "
            "reused; delete the worker and create it again",
        )
        return
    if instance.state is InstanceState.RUNNING and instance.address:
        d.move(Phase.STARTING, f"instance {instance.instance_id} is running at {instance.address}")
        d.status.address = instance.address
        d.status.provisioning_completed_at = d.now
        d.condition(
            reasons.PROVISIONED,
            "True",
            reasons.INSTANCE_RUNNING,
            f"instance {instance.instance_id} is running",
        )
        d.condition(reasons.READY, "False", reasons.STARTING, "waiting for the host to start")
        d.next_step()
        return
    d.condition(
        reasons.PROVISIONED,
        "False",
        reasons.PROVISIONING,
        f"waiting for instance {instance.instance_id} to run (now {instance.state})",
    )
    d.stay(f"waiting for instance {instance.instance_id} ({instance.state})", instance.ready_in)


def _starting(d: _Draft) -> None:
    instance = d.obs.instance
    if _lost(d, instance):
        return
    assert instance is not None
    if instance.state is not InstanceState.RUNNING:
        d.condition(
            reasons.HOST_READY,
            "False",
            reasons.INSTANCE_NOT_RUNNING,
            f"instance {instance.instance_id} is {instance.state}",
        )
        d.stay(f"waiting for instance {instance.instance_id} ({instance.state})", instance.ready_in)
        return
    d.status.address = instance.address
    health = d.obs.health
    if health is None or not health.ready:
        if health is not None:
            d.apply_health(health)
        d.stay("waiting for the host to report healthy", health.ready_in if health else None)
        return
    d.apply_health(health)
    licensed = d.apply_license(health, d.obs.license_granted)
    if d.worker.spec.host.auto_license and not licensed:
        d.stay("host healthy but no license is available yet", d.intervals.license_retry)
        return
    d.move(Phase.READY, "host healthy" + (" and licensed" if licensed else ""))
    d.condition(reasons.READY, "True", reasons.HOST_READY_REASON, "the host accepts labs")
    if health.hosted_labs > 0 or d.desired is not DesiredPhase.READY:
        d.next_step()
    else:
        d.wait(d.intervals.health_check)


def _ready_or_active(d: _Draft) -> None:
    if d.desired is not DesiredPhase.READY:
        d.move(Phase.DRAINING, f"desiredPhase is {d.desired}")
        d.condition(reasons.READY, "False", reasons.DRAINING, f"draining before going {d.desired}")
        d.next_step()
        return
    health = d.obs.health
    assert health is not None, "Ready/Active with desiredPhase Ready always checks health"
    d.apply_health(health)
    if not health.ready:
        d.condition(reasons.READY, "False", reasons.HOST_UNHEALTHY, "the host reports not ready")
        d.stay("the host reports not ready", d.intervals.health_check)
        return
    d.apply_license(health, None)
    d.condition(reasons.READY, "True", reasons.HOST_READY_REASON, "the host accepts labs")
    if d.phase is Phase.READY and health.hosted_labs > 0:
        d.move(Phase.ACTIVE, f"the host runs {_labs(health.hosted_labs)}")
    elif d.phase is Phase.ACTIVE and health.hosted_labs == 0:
        d.move(Phase.READY, "the host runs no labs")
    else:
        d.stay(f"healthy, {_labs(health.hosted_labs)}", None)
    d.wait(d.intervals.health_check)


def _draining(d: _Draft) -> None:
    if d.desired is DesiredPhase.READY:
        d.move(Phase.READY, "desiredPhase is Ready again")
        d.condition(reasons.READY, "True", reasons.HOST_READY_REASON, "the host accepts labs")
        d.next_step()
        return
    health = d.obs.health
    assert health is not None, "Draining towards a stop always checks health"
    d.apply_health(health)
    labs = health.hosted_labs if health.ready else 0
    d.status.hosted_labs = labs
    if labs == 0 and d.desired in (DesiredPhase.STOPPED, DesiredPhase.TERMINATED):
        d.move(Phase.STOPPING, f"no labs left and desiredPhase is {d.desired}")
        d.condition(reasons.READY, "False", reasons.STOPPING, "stopping the instance")
        d.next_step()
        return
    waiting_for = f"waiting for {_labs(labs)} to finish" if labs else "drained; holding"
    d.condition(reasons.READY, "False", reasons.DRAINING, waiting_for)
    d.stay(waiting_for, d.intervals.health_check)


def _stopping(d: _Draft) -> None:
    instance = d.obs.instance
    if _lost(d, instance):
        return
    assert instance is not None
    if instance.state is InstanceState.STOPPED:
        d.move(Phase.STOPPED, f"instance {instance.instance_id} is stopped")
        d.status.address = None
        d.status.hosted_labs = 0
        d.status.licensed = False
        d.condition(
            reasons.PROVISIONED,
            "True",
            reasons.INSTANCE_STOPPED,
            f"instance {instance.instance_id} is stopped",
        )
        d.condition(
            reasons.HOST_READY, "False", reasons.INSTANCE_STOPPED, "the instance is stopped"
        )
        d.condition(reasons.READY, "False", reasons.STOPPED, "the instance is stopped")
        if d.desired in (DesiredPhase.READY, DesiredPhase.TERMINATED):
            d.next_step()
        return
    d.condition(
        reasons.HOST_READY,
        "False",
        reasons.INSTANCE_NOT_RUNNING,
        f"instance {instance.instance_id} is {instance.state}",
    )
    d.stay(f"waiting for instance {instance.instance_id} to stop", instance.ready_in)


def _stopped(d: _Draft) -> None:
    if d.desired is DesiredPhase.READY:
        d.move(Phase.STARTING, "desiredPhase is Ready")
        d.condition(reasons.READY, "False", reasons.STARTING, "starting the instance")
        d.next_step()
    elif d.desired is DesiredPhase.TERMINATED:
        d.enter_terminating("desiredPhase is Terminated")
    else:
        d.stay(f"stopped, as desiredPhase {d.desired} asks", None)


def _terminating(d: _Draft) -> None:
    instance = d.obs.instance
    if instance is None or instance.state is InstanceState.TERMINATED:
        gone = f"instance {instance.instance_id} is terminated" if instance else "no instance left"
        d.move(Phase.TERMINATED, gone)
        d.status.address = None
        d.status.hosted_labs = 0
        d.status.licensed = False
        d.condition(reasons.PROVISIONED, "False", reasons.DEPROVISIONED, gone)
        d.condition(reasons.READY, "False", reasons.TERMINATED, gone)
        d.remove_finalizer(gone)
        d.summary = f"Terminating -> Terminated: {gone}; finalizer removed"
        d.requeue_after = None
        return
    d.status.instance_id = instance.instance_id
    d.stay(f"waiting for instance {instance.instance_id} to terminate", instance.ready_in)


def _failed(d: _Draft) -> None:
    new_generation = d.generation > d.old.observed_generation
    if d.deleting or d.desired is DesiredPhase.TERMINATED:
        why = "deletionTimestamp is set" if d.deleting else "desiredPhase is Terminated"
        provisioned = find_condition(d.old.conditions, reasons.PROVISIONED)
        teardown_failed = provisioned is not None and provisioned.reason == reasons.DEPROVISIONING
        if teardown_failed and not new_generation:
            remaining = d.intervals.teardown_retry - d.elapsed_in_phase()
            if remaining > 0:
                d.stay(
                    f"{why}, but the last teardown failed; trying again in {remaining:.0f}s "
                    "(or at once if the spec changes)",
                    remaining,
                )
                return
        d.enter_terminating(why)
        return
    if not new_generation:
        d.stay("failed; waiting for a spec change or deletion", None)
        return
    problems = spec_problems(d.worker)
    if problems:
        message = "; ".join(problems)
        d.status.error_message = message
        d.condition(reasons.READY, "False", reasons.INVALID_SPEC, message)
        d.stay(f"the new spec is still invalid: {message}", None)
        return
    _enter_provisioning(d, f"spec changed (generation {d.generation})")


def _lost(d: _Draft, instance: Instance | None) -> bool:
    if instance is not None and instance.state not in (
        InstanceState.TERMINATING,
        InstanceState.TERMINATED,
    ):
        return False
    what = f"instance {instance.instance_id} is {instance.state}" if instance else "no instance"
    d.fail(reasons.INSTANCE_LOST, f"{what} although the worker is {d.phase}")
    return True


_OBSERVING_PHASES = frozenset(
    {
        Phase.PROVISIONING,
        Phase.STARTING,
        Phase.READY,
        Phase.ACTIVE,
        Phase.DRAINING,
        Phase.STOPPING,
        Phase.TERMINATING,
    }
)

_HANDLERS = {
    Phase.PENDING: _pending,
    Phase.PROVISIONING: _provisioning,
    Phase.STARTING: _starting,
    Phase.READY: _ready_or_active,
    Phase.ACTIVE: _ready_or_active,
    Phase.DRAINING: _draining,
    Phase.STOPPING: _stopping,
    Phase.STOPPED: _stopped,
    Phase.TERMINATING: _terminating,
    Phase.FAILED: _failed,
}


def _labs(count: int) -> str:
    return f"{count} lab" if count == 1 else f"{count} labs"

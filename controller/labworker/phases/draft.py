"""The status a reconcile is building, and the building blocks every phase handler shares.

A phase handler (one per phase, in this package) changes a Draft; `decide` made it from the
worker and an Observation and turns it into a Decision afterwards. What lives here is what
is not one phase's business: moving (always through `can_transition`, docs/architecture.md,
Phases), conditions, finalizers, the two moves any phase may make (to Failed, to
Terminating), the phase's elapsed time against its budget, and applying the host's health
and licence, which Starting and the serving phases read alike.
"""

from __future__ import annotations

from datetime import datetime

from controller.labworker import reasons
from controller.labworker.model import FINALIZER, LabWorker
from controller.labworker.phase import Phase, can_transition
from controller.labworker.phases.observed import Observation
from controller.labworker.policy import Intervals
from controller.labworker.provider import HostHealth, Instance, InstanceState
from controller.resources import (
    ConditionStatus,
    format_timestamp,
    parse_timestamp,
    set_condition,
    tree_copy,
)


class IllegalTransition(AssertionError):
    """decide tried a phase change the phase table (docs/architecture.md, Phases) does not allow: a bug, never written."""


class Draft:
    """The status being built. Handlers change it; `decide` turns it into a Decision."""

    def __init__(
        self,
        worker: LabWorker,
        observation: Observation,
        now: datetime,
        intervals: Intervals,
    ) -> None:
        self.worker = worker
        self.old = worker.status
        self.phase = worker.status.phase
        self.obs = observation
        self.moment = now
        self.now = format_timestamp(now)
        self.intervals = intervals
        self.generation = worker.metadata.generation
        self.status = tree_copy(worker.status)
        self.finalizers = list(worker.metadata.finalizers)
        self.requeue_after: float | None = None
        self.summary = ""
        self.deleting = worker.metadata.deletion_timestamp is not None
        self.desired = worker.spec.desired_phase

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

    # -- the moves any phase may make (the two "any" rows of the phase table) -------------

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

    def lost(self, instance: Instance | None) -> bool:
        """Fail the worker when its instance is gone (or going); True when it did."""
        if instance is not None and instance.state not in (
            InstanceState.TERMINATING,
            InstanceState.TERMINATED,
        ):
            return False
        what = f"instance {instance.instance_id} is {instance.state}" if instance else "no instance"
        self.fail(reasons.INSTANCE_LOST, f"{what} although the worker is {self.phase}")
        return True

    # -- the phase's time budget (`limit` comes from the phase table) ------------------------

    def elapsed_in_phase(self) -> float:
        entered = self.old.phase_transition_time
        if entered is None:
            return 0.0
        return (self.moment - parse_timestamp(entered)).total_seconds()

    def overdue(self, limit: float | None) -> str | None:
        if limit is None:
            return None
        if self.elapsed_in_phase() < limit:
            return None
        return f"still {self.phase} after the {limit:g}s phase timeout"

    def cap_requeue_at_timeout(self, limit: float | None) -> None:
        if limit is None or self.requeue_after is None:
            return
        remaining = limit - self.elapsed_in_phase()
        self.requeue_after = max(min(self.requeue_after, remaining), self.intervals.next_step)

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

"""Step (c) of a reconcile: the next status, as a pure function of what is known.

`decide(worker, observation, now, ...)` reads nothing else and changes nothing: the same
inputs give the same Decision. That is what lets the repository re-run it on a fresher copy
after a CAS conflict, and what keeps a converged worker from being rewritten: a decision
that changes nothing leaves the status equal to the input, and no transaction is sent.

Every phase change goes through `can_transition` (docs/architecture.md, Phases); anything else is a bug and
raises instead of being written.

This module holds only what comes before a phase's own decision (deletion, a worker seen for
the first time, Terminated), the weighing of provider errors and of the phase's time budget,
and the dispatch through the phase table (`controller/labworker/phases/table.py`); what each
phase decides lives in its module under `controller/labworker/phases/`, next to the provider
calls it decides from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from controller.labworker import reasons
from controller.labworker.model import FINALIZER, LabWorker, LabWorkerStatus
from controller.labworker.observation import Observation
from controller.labworker.phase import Phase
from controller.labworker.phases.draft import Draft, IllegalTransition
from controller.labworker.phases.pending import spec_problems
from controller.labworker.phases.table import PHASES
from controller.labworker.policy import (
    DEFAULT_INTERVALS,
    DEFAULT_TIMEOUTS,
    Intervals,
    PhaseTimeouts,
)
from controller.resources import parse_timestamp

__all__ = ["Decision", "IllegalTransition", "decide", "spec_problems"]


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


def decide(
    worker: LabWorker,
    observation: Observation,
    now: datetime,
    timeouts: PhaseTimeouts = DEFAULT_TIMEOUTS,
    intervals: Intervals = DEFAULT_INTERVALS,
) -> Decision:
    draft = Draft(worker, observation, now, intervals)
    if not observation.made_for(worker):
        return _unchanged(
            draft,
            intervals.stale_observation,
            "the worker changed while the provider was being asked; looking again",
            stale=True,
        )
    return _run(draft, timeouts)


# -- the decision procedure ------------------------------------------------------------------


def _run(d: Draft, timeouts: PhaseTimeouts) -> Decision:
    phase = d.phase
    if d.deleting:
        if FINALIZER not in d.finalizers:
            return _unchanged(d, None, "being deleted and holds no finalizer of ours")
        if phase in (None, Phase.PENDING):
            d.remove_finalizer("deleted before anything was provisioned")
            return _finish(d)
        if phase is Phase.TERMINATED:
            d.remove_finalizer("deleted after its instance was terminated")
            return _finish(d)
        if phase not in (Phase.FAILED, Phase.TERMINATING):
            d.enter_terminating("deletionTimestamp is set")
            return _finish(d)
    elif phase is None:
        d.move(Phase.PENDING, "first seen")
        d.add_finalizer()
        d.condition(reasons.READY, "False", reasons.PENDING, "accepted; provisioning next")
        d.next_step()
        return _finish(d)
    elif phase is Phase.TERMINATED:
        d.remove_finalizer("its instance is terminated")
        d.summary = d.summary or "terminated; nothing left to do"
        return _finish(d)
    else:
        d.add_finalizer()

    if d.phase is not None and d.old.phase_transition_time is None:
        # Written by a controller that predates phaseTransitionTime: start the clock now.
        d.status.phase_transition_time = d.now

    assert phase is not None, "a worker without a phase was handled above"
    handler = PHASES[phase]
    limit = handler.timeout(timeouts)

    # Only phases that called the provider have errors to weigh.
    if handler.observes and d.obs.fatal_error is not None:
        d.fail(reasons.PROVIDER_ERROR, d.obs.fatal_error)
        return _finish(d)
    if handler.observes and d.obs.transient_error is not None:
        overdue = d.overdue(limit)
        if overdue is None:
            return _unchanged(d, None, f"provider call failed transiently: {d.obs.transient_error}")
        d.fail(
            reasons.PHASE_TIMEOUT,
            f"{overdue}; last provider error: {d.obs.transient_error}",
        )
        return _finish(d)

    handler.decide(d)

    if d.status.phase is d.phase:
        overdue = d.overdue(limit)
        if overdue is not None:
            d.fail(reasons.PHASE_TIMEOUT, f"{overdue}; {d.summary}")
        else:
            d.cap_requeue_at_timeout(limit)
    return _finish(d)


# -- from draft to Decision --------------------------------------------------------------------


def _unchanged(d: Draft, requeue_after: float | None, why: str, *, stale: bool = False) -> Decision:
    return Decision(
        status=d.old,
        finalizers=list(d.worker.metadata.finalizers),
        requeue_after=requeue_after,
        summary=why,
        stale=stale,
    )


def _finish(d: Draft) -> Decision:
    d.status.observed_generation = d.generation
    if d.obs.health is not None:
        _stamp_health_check(d)
    changed = d.status != d.old or d.finalizers != d.worker.metadata.finalizers
    return Decision(
        status=d.status,
        finalizers=d.finalizers,
        requeue_after=d.requeue_after,
        summary=d.summary,
        changed=changed,
    )


def _stamp_health_check(d: Draft) -> None:
    """Record the check when something changed, or when the record is getting old."""
    last = d.old.last_health_check
    if last is not None and d.status == d.old:
        age = (d.moment - parse_timestamp(last)).total_seconds()
        if age < d.intervals.health_record:
            return
    d.status.last_health_check = d.now

"""The one table of what each LabWorker phase does: Phase -> PhaseHandler.

`observe` (step b) takes a phase's observe step from here and `decide` (step c) its decision
handler and timeout, so the three cannot disagree about a phase: a phase either has a row
with all of them or none (Terminated, and a worker without status, are settled by `decide`
before dispatch). Which moves a handler may make is the other table, `phase.TRANSITIONS`
(docs/architecture.md, Phases); `can_transition` checks every move.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from controller.labworker.model import LabWorker
from controller.labworker.phase import Phase
from controller.labworker.phases import (
    failed,
    pending,
    provisioning,
    serving,
    starting,
    stopping,
    terminating,
)
from controller.labworker.phases.draft import Draft
from controller.labworker.phases.observed import Observation
from controller.labworker.policy import PhaseTimeouts
from controller.labworker.provider import LabProvider

Step = Callable[[LabProvider, str, LabWorker, Observation], Observation]
"""Provider calls for one phase: (provider, uid, worker, blank observation) -> observation."""
Handler = Callable[[Draft], None]
"""The phase's decision: changes the draft (phase, conditions, requeue) from the observation."""
Timeout = Callable[[PhaseTimeouts], float | None]
"""Which PhaseTimeouts setting bounds the time spent in the phase (None: no limit)."""


def _always(worker: LabWorker) -> bool:
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class PhaseHandler:
    observe: Step | None = None
    """None: the phase is decided from the object alone and asks the provider nothing."""
    observe_when: Callable[[LabWorker], bool] = _always
    """Whether this worker needs the step now; when not, the phase is decided without it."""
    decide: Handler
    timeout: Timeout

    @property
    def observes(self) -> bool:
        """The phase calls the provider, so its provider errors are weighed (Failed or retry)."""
        return self.observe is not None

    def step_for(self, worker: LabWorker) -> Step | None:
        if self.observe is None or not self.observe_when(worker):
            return None
        return self.observe


PHASES: Mapping[Phase, PhaseHandler] = MappingProxyType(
    {
        Phase.PENDING: PhaseHandler(
            decide=pending.decide_pending,
            timeout=pending.pending_timeout,
        ),
        Phase.PROVISIONING: PhaseHandler(
            observe=provisioning.observe_provisioning,
            decide=provisioning.decide_provisioning,
            timeout=provisioning.provisioning_timeout,
        ),
        Phase.STARTING: PhaseHandler(
            observe=starting.observe_starting,
            decide=starting.decide_starting,
            timeout=starting.starting_timeout,
        ),
        Phase.READY: PhaseHandler(
            observe=serving.observe_health,
            observe_when=serving.keeps_serving,
            decide=serving.decide_ready_or_active,
            timeout=serving.serving_timeout,
        ),
        Phase.ACTIVE: PhaseHandler(
            observe=serving.observe_health,
            observe_when=serving.keeps_serving,
            decide=serving.decide_ready_or_active,
            timeout=serving.serving_timeout,
        ),
        Phase.DRAINING: PhaseHandler(
            observe=serving.observe_health,
            observe_when=serving.keeps_draining,
            decide=serving.decide_draining,
            timeout=serving.draining_timeout,
        ),
        Phase.STOPPING: PhaseHandler(
            observe=stopping.observe_stopping,
            decide=stopping.decide_stopping,
            timeout=stopping.stopping_timeout,
        ),
        Phase.STOPPED: PhaseHandler(
            decide=stopping.decide_stopped,
            timeout=stopping.stopped_timeout,
        ),
        Phase.TERMINATING: PhaseHandler(
            observe=terminating.observe_terminating,
            decide=terminating.decide_terminating,
            timeout=terminating.terminating_timeout,
        ),
        Phase.FAILED: PhaseHandler(
            decide=failed.decide_failed,
            timeout=failed.failed_timeout,
        ),
    }
)


def handler_for(phase: Phase | None) -> PhaseHandler | None:
    """The row for `phase`; None for a worker without status and for Terminated."""
    if phase is None:
        return None
    return PHASES.get(phase)

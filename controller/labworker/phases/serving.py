"""Ready, Active and Draining: the host serves labs, or finishes serving them.

These phases only read the host's health (no side effects): Ready and Active while
`desiredPhase` is Ready, Draining while it is not (to see the labs run out). The opposite
case is decided from the object alone (leave for Draining, or go back to Ready), so no
provider call is made for it. Ready and Active may last forever; Draining's budget is
`PhaseTimeouts.draining`, no limit by default, because it waits for students to finish.
"""

from __future__ import annotations

import dataclasses

from controller.labworker import reasons
from controller.labworker.model import LabWorker
from controller.labworker.phase import DesiredPhase, Phase
from controller.labworker.phases.draft import Draft
from controller.labworker.phases.observed import Observation
from controller.labworker.policy import PhaseTimeouts
from controller.labworker.provider import LabProvider


def observe_health(
    provider: LabProvider, uid: str, worker: LabWorker, blank: Observation
) -> Observation:
    return dataclasses.replace(blank, health=provider.host_health(uid))


def keeps_serving(worker: LabWorker) -> bool:
    """Ready/Active check the host only while they are meant to stay up."""
    return worker.spec.desired_phase is DesiredPhase.READY


def keeps_draining(worker: LabWorker) -> bool:
    """Draining checks the host only while it is meant to go on draining."""
    return worker.spec.desired_phase is not DesiredPhase.READY


def decide_ready_or_active(d: Draft) -> None:
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


def decide_draining(d: Draft) -> None:
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


def serving_timeout(timeouts: PhaseTimeouts) -> float | None:
    """None: Ready and Active are where a worker is meant to stay."""
    return None


def draining_timeout(timeouts: PhaseTimeouts) -> float | None:
    return timeouts.draining


def _labs(count: int) -> str:
    return f"{count} lab" if count == 1 else f"{count} labs"

"""Stopping and Stopped: the instance is stopped but kept, to be started again or removed.

Stopping's observe step stops a running instance once and then only describes it; `stop` is
idempotent and Stopping is only left once the provider reports the instance stopped, so
repeating it after a crash is safe. Budget: `PhaseTimeouts.stopping`. Stopped asks the
provider nothing and has no timeout: it rests until `desiredPhase` changes (a lost instance
is found when Starting asks for it).
"""

from __future__ import annotations

import dataclasses
import logging

from controller.labworker import reasons
from controller.labworker.model import LabWorker
from controller.labworker.phase import DesiredPhase, Phase
from controller.labworker.phases.draft import Draft
from controller.labworker.phases.observed import Observation
from controller.labworker.policy import PhaseTimeouts
from controller.labworker.provider import InstanceState, LabProvider

# The observation step's logger name from before the phases were split out, kept so that log
# filters and dashboards keyed on it still see the provider calls.
log = logging.getLogger("controller.labworker.observation")


def observe_stopping(
    provider: LabProvider, uid: str, worker: LabWorker, blank: Observation
) -> Observation:
    instance = provider.describe(uid)
    if instance is not None and instance.state in (InstanceState.PENDING, InstanceState.RUNNING):
        log.info(
            "LabWorker %s: stopping instance %s",
            worker.metadata.namespaced_name,
            instance.instance_id,
        )
        provider.stop(uid)
        instance = provider.describe(uid)
    return dataclasses.replace(blank, instance=instance, instance_known=True)


def decide_stopping(d: Draft) -> None:
    instance = d.obs.instance
    if d.lost(instance):
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


def stopping_timeout(timeouts: PhaseTimeouts) -> float | None:
    return timeouts.stopping


def decide_stopped(d: Draft) -> None:
    if d.desired is DesiredPhase.READY:
        d.move(Phase.STARTING, "desiredPhase is Ready")
        d.condition(reasons.READY, "False", reasons.STARTING, "starting the instance")
        d.next_step()
    elif d.desired is DesiredPhase.TERMINATED:
        d.enter_terminating("desiredPhase is Terminated")
    else:
        d.stay(f"stopped, as desiredPhase {d.desired} asks", None)


def stopped_timeout(timeouts: PhaseTimeouts) -> float | None:
    """None: Stopped rests until desiredPhase changes."""
    return None

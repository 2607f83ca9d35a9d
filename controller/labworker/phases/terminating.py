"""Terminating: remove the instance, then the finalizer.

Reached on deletion from any phase, or by `desiredPhase` Terminated. Its observe step
terminates an instance that is not already going and then only describes it; `terminate` is
idempotent and the phase is only left once the provider reports the instance gone, so
repeating it after a crash is safe. It is the one step a deleted worker still observes.
Budget: `PhaseTimeouts.terminating`.
"""

from __future__ import annotations

import dataclasses
import logging

from controller.labworker import reasons
from controller.labworker.model import LabWorker
from controller.labworker.phase import Phase
from controller.labworker.phases.draft import Draft
from controller.labworker.phases.observed import Observation
from controller.labworker.policy import PhaseTimeouts
from controller.labworker.provider import InstanceState, LabProvider

# The observation step's logger name from before the phases were split out, kept so that log
# filters and dashboards keyed on it still see the provider calls.
log = logging.getLogger("controller.labworker.observation")


def observe_terminating(
    provider: LabProvider, uid: str, worker: LabWorker, blank: Observation
) -> Observation:
    instance = provider.describe(uid)
    if instance is not None and instance.state not in (
        InstanceState.TERMINATING,
        InstanceState.TERMINATED,
    ):
        log.info(
            "LabWorker %s: terminating instance %s",
            worker.metadata.namespaced_name,
            instance.instance_id,
        )
        provider.terminate(uid)
        instance = provider.describe(uid)
    return dataclasses.replace(blank, instance=instance, instance_known=True)


def decide_terminating(d: Draft) -> None:
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


def terminating_timeout(timeouts: PhaseTimeouts) -> float | None:
    return timeouts.terminating

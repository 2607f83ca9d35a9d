"""Provisioning: ask the provider for the worker's instance until it runs with an address.

The provider call (`provision`, keyed by the worker's uid as client token) lives here with
the phase that waits for its effect: it is idempotent, and the phase is only left once the
provider reports the instance running, so repeating it after a crash is safe. Entering
Provisioning is shared by Pending (spec valid) and Failed (spec changed), hence
`enter_provisioning`. Budget: `PhaseTimeouts.provisioning`.
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


def enter_provisioning(d: Draft, why: str) -> None:
    d.move(Phase.PROVISIONING, why)
    d.status.provisioning_started_at = d.now
    d.status.provisioning_completed_at = None
    d.status.error_message = None
    message = f"provisioning a {d.worker.spec.instance.type} instance"
    d.condition(reasons.PROVISIONED, "False", reasons.PROVISIONING, message)
    d.condition(reasons.READY, "False", reasons.PROVISIONING, message)
    d.next_step()


def observe_provisioning(
    provider: LabProvider, uid: str, worker: LabWorker, blank: Observation
) -> Observation:
    instance = provider.provision(
        uid, worker.metadata.name, worker.spec.instance, namespace=worker.metadata.namespace
    )
    if instance.state is InstanceState.STOPPED:
        # Back from Failed with an instance that was stopped meanwhile: bring it up again.
        log.info(
            "LabWorker %s: instance %s is stopped; starting it to finish provisioning",
            worker.metadata.namespaced_name,
            instance.instance_id,
        )
        provider.start(uid)
        instance = provider.describe(uid) or instance
    return dataclasses.replace(blank, instance=instance, instance_known=True)


def decide_provisioning(d: Draft) -> None:
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


def provisioning_timeout(timeouts: PhaseTimeouts) -> float | None:
    return timeouts.provisioning

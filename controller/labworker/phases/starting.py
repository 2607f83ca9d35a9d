"""Starting: bring the instance up, wait for the host to report healthy, license it.

Its observe step starts an instance found stopped (Stopped -> Starting, or a restart while
starting), checks the host once the instance runs, and licenses it when `autoLicense` asks;
each call is idempotent and the phase is only left once the host is healthy (and licensed if
asked), so repeating them after a crash is safe. Budget: `PhaseTimeouts.starting`.
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
from controller.labworker.provider import (
    HostHealth,
    InstanceState,
    LabProvider,
    LicenseSecretMissing,
)

# The observation step's logger name from before the phases were split out, kept so that log
# filters and dashboards keyed on it still see the provider calls.
log = logging.getLogger("controller.labworker.observation")


def observe_starting(
    provider: LabProvider, uid: str, worker: LabWorker, blank: Observation
) -> Observation:
    key = worker.metadata.namespaced_name
    instance = provider.describe(uid)
    if instance is not None and instance.state is InstanceState.STOPPED:
        log.info("LabWorker %s: starting stopped instance %s", key, instance.instance_id)
        provider.start(uid)
        instance = provider.describe(uid)
    health: HostHealth | None = None
    granted: bool | None = None
    license_error: str | None = None
    if instance is not None and instance.state is InstanceState.RUNNING:
        health = provider.host_health(uid)
        host = worker.spec.host
        if health.ready and host.auto_license and not health.licensed:
            log.info(
                "LabWorker %s: licensing host of instance %s from secret %s",
                key,
                instance.instance_id,
                host.license_secret_ref,
            )
            try:
                granted = provider.license(uid, host.license_secret_ref)
            except LicenseSecretMissing as exc:
                granted, license_error = False, str(exc)
            # No second health check after a grant: decide counts `granted` as licensed, and
            # the next health check (Ready's) reads the host's own view anyway.
    return dataclasses.replace(
        blank,
        instance=instance,
        instance_known=True,
        health=health,
        license_granted=granted,
        license_error=license_error,
    )


def decide_starting(d: Draft) -> None:
    instance = d.obs.instance
    if d.lost(instance):
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


def starting_timeout(timeouts: PhaseTimeouts) -> float | None:
    return timeouts.starting

"""Step (b) of a reconcile: ask the provider what the current phase needs to know.

This is the only place with side effects on the provider (provision, start, stop,
terminate, license). Each is idempotent and safe to repeat after a crash, because the
phase that calls it is only left once the provider confirms the effect; so the calls live
here, with the phase that waits for them, rather than with the transition that enters it.

Provider errors are captured into the observation rather than raised: `decide` knows
whether a fatal error means Failed and whether a transient one still fits the phase's
time budget.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

from controller.labworker.provider import (
    AnnotationAware,
    HostHealth,
    Instance,
    InstanceState,
    LabProvider,
    LicenseSecretMissing,
    ProviderError,
    ProviderFatalError,
)
from controller.resources import DesiredPhase, LabWorker, Phase

log = logging.getLogger("controller.labworker.observation")


@dataclass(frozen=True, slots=True)
class Observation:
    """What the provider said, and which version of the worker it was asked for."""

    phase: Phase | None
    generation: int
    deleting: bool
    instance: Instance | None = None
    instance_known: bool = False
    """True when the provider was asked about the instance (so None means there is none)."""
    health: HostHealth | None = None
    license_granted: bool | None = None
    """None: licensing was not attempted in this round."""
    license_error: str | None = None
    """Why licensing failed before reaching the host (the license secret is missing)."""
    fatal_error: str | None = None
    transient_error: str | None = None

    @classmethod
    def blank(cls, worker: LabWorker) -> Observation:
        """No provider calls: for phases decided from the object alone."""
        return cls(
            phase=worker.status.phase,
            generation=worker.metadata.generation,
            deleting=worker.metadata.deletion_timestamp is not None,
        )

    def made_for(self, worker: LabWorker) -> bool:
        """False when `worker` moved on (phase, spec, deletion) since this was observed."""
        return (
            self.phase == worker.status.phase
            and self.generation == worker.metadata.generation
            and self.deleting == (worker.metadata.deletion_timestamp is not None)
        )


_Step = Callable[[LabProvider, str, LabWorker, Observation], Observation]


def observe(provider: LabProvider, worker: LabWorker) -> Observation:
    blank = Observation.blank(worker)
    step = _step_for(worker)
    if step is None:
        return blank
    uid = worker.metadata.uid
    if not uid:
        return dataclasses.replace(
            blank,
            fatal_error="metadata.uid is missing, so the provider has no client token for it",
        )
    if isinstance(provider, AnnotationAware):
        provider.configure(uid, worker.metadata.annotations)
    try:
        return step(provider, uid, worker, blank)
    except ProviderFatalError as exc:
        return dataclasses.replace(blank, fatal_error=str(exc) or type(exc).__name__)
    except ProviderError as exc:
        return dataclasses.replace(blank, transient_error=str(exc) or type(exc).__name__)


def _step_for(worker: LabWorker) -> _Step | None:
    phase = worker.status.phase
    if worker.metadata.deletion_timestamp is not None:
        return _terminating if phase is Phase.TERMINATING else None
    wants_ready = worker.spec.desired_phase is DesiredPhase.READY
    match phase:
        case Phase.PROVISIONING:
            return _provisioning
        case Phase.STARTING:
            return _starting
        case Phase.READY | Phase.ACTIVE:
            return _health if wants_ready else None
        case Phase.DRAINING:
            return None if wants_ready else _health
        case Phase.STOPPING:
            return _stopping
        case Phase.TERMINATING:
            return _terminating
        case _:
            return None


def _provisioning(
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


def _starting(
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


def _health(provider: LabProvider, uid: str, worker: LabWorker, blank: Observation) -> Observation:
    return dataclasses.replace(blank, health=provider.host_health(uid))


def _stopping(
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


def _terminating(
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

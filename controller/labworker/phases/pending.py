"""Pending: the spec is checked before anything is asked of the provider.

Pending calls no provider (a worker without a valid spec must not cost an instance) and has
no timeout (its only exits are decided at once from the object). The same semantic checks
gate a Failed worker's retry after a spec change, so `spec_problems` lives here, with the
phase whose job they are.
"""

from __future__ import annotations

from controller.labworker import reasons
from controller.labworker.model import LabWorker
from controller.labworker.phase import DesiredPhase
from controller.labworker.phases.draft import Draft
from controller.labworker.phases.provisioning import enter_provisioning
from controller.labworker.policy import PhaseTimeouts

MAX_TAG_KEY_LENGTH = 128
MAX_TAG_VALUE_LENGTH = 256


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


def decide_pending(d: Draft) -> None:
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
    enter_provisioning(d, "spec is valid")


def pending_timeout(timeouts: PhaseTimeouts) -> float | None:
    """None: Pending waits for nothing outside the object."""
    return None

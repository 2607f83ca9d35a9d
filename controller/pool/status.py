"""The pool's status from what it observed: counts and the three conditions. Pure.

- **Available**: at least `replicas - maxUnavailable` workers are Ready or Active (and at
  least one, if any are wanted): the pool can take students.
- **Progressing**: True while the pool is changing — reason `RollingUpdate`, `ScalingUp`,
  `ScalingDown` (workers draining or being deleted) or `WaitingForWorkers` (created, not
  Ready yet); False with reason `Complete` once every worker is updated and Ready.
- **ReplicaFailure**: present only while creating workers fails — reason `QuotaExceeded`
  (a LabQuota refused) or `CreateFailed` — with the refusal as message; removed once a
  create succeeds or none is needed.

Conditions keep their lastTransitionTime unless their status flips
(controller.resources.conditions), so an unchanged pool computes an equal status and the
reconciler writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from controller.pool.model import LabWorkerPoolStatus
from controller.pool.plan import Plan
from controller.resources import Condition, set_condition

AVAILABLE = "Available"
PROGRESSING = "Progressing"
REPLICA_FAILURE = "ReplicaFailure"

QUOTA_EXCEEDED = "QuotaExceeded"
CREATE_FAILED = "CreateFailed"


@dataclass(frozen=True, slots=True)
class CreateFailure:
    reason: str
    """QUOTA_EXCEEDED or CREATE_FAILED."""
    message: str


def progress(plan: Plan, replicas: int) -> tuple[bool, str, str]:
    """(status, reason, message) of the Progressing condition."""
    c = plan.counts
    if plan.rolling:
        return (
            True,
            "RollingUpdate",
            f"{c.updated} of {replicas} workers updated, {plan.outdated} outdated left",
        )
    if c.replicas < replicas:
        return True, "ScalingUp", f"{c.replicas} of {replicas} workers exist"
    if c.replicas > replicas or c.retiring or plan.finish:
        return (
            True,
            "ScalingDown",
            f"{c.replicas} workers serving for {replicas} wanted; {c.retiring} retiring",
        )
    if c.ready < replicas:
        return True, "WaitingForWorkers", f"{c.ready} of {replicas} workers Ready"
    return False, "Complete", f"{replicas} workers updated and Ready"


def next_status(
    current: LabWorkerPoolStatus,
    plan: Plan,
    *,
    replicas: int,
    max_unavailable: int,
    generation: int,
    failure: CreateFailure | None,
    now: str,
) -> LabWorkerPoolStatus:
    c = plan.counts
    wanted = max(0, replicas - max_unavailable)
    if replicas > 0:
        wanted = max(wanted, 1)
    conditions: Sequence[Condition] = current.conditions
    if c.ready >= wanted:
        conditions = set_condition(
            conditions,
            AVAILABLE,
            "True",
            "MinimumWorkersAvailable",
            f"{c.ready} of {replicas} workers Ready (at least {wanted} needed)",
            generation,
            now,
        )
    else:
        conditions = set_condition(
            conditions,
            AVAILABLE,
            "False",
            "MinimumWorkersUnavailable",
            f"{c.ready} of {replicas} workers Ready; at least {wanted} needed",
            generation,
            now,
        )
    moving, reason, message = progress(plan, replicas)
    conditions = set_condition(
        conditions, PROGRESSING, "True" if moving else "False", reason, message, generation, now
    )
    if failure is not None:
        conditions = set_condition(
            conditions, REPLICA_FAILURE, "True", failure.reason, failure.message, generation, now
        )
    else:
        conditions = [cond for cond in conditions if cond.type != REPLICA_FAILURE]
    return LabWorkerPoolStatus(
        replicas=c.replicas,
        ready_replicas=c.ready,
        active_replicas=c.active,
        updated_replicas=c.updated,
        retiring_replicas=c.retiring,
        observed_generation=generation,
        conditions=list(conditions),
    )

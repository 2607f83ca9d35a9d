"""Status conditions with Kubernetes semantics (meta.SetStatusCondition).

Conditions are frozen and the helpers return new lists, so a reconciler can compute the next
status from a cached object without ever changing what the cache (or another thread) sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import ConfigDict, Field

from controller.resources.meta import CamelModel, Timestamp

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(CamelModel):
    # Unknown fields are ignored: status is written by (possibly newer) controllers.
    model_config = ConfigDict(extra="ignore", frozen=True)

    type: str = Field(min_length=1)
    status: ConditionStatus
    reason: str = ""
    message: str = ""
    last_transition_time: Timestamp
    observed_generation: int | None = Field(default=None, ge=0)


def find_condition(conditions: Sequence[Condition], type: str) -> Condition | None:
    for condition in conditions:
        if condition.type == type:
            return condition
    return None


def condition_is_true(conditions: Sequence[Condition], type: str) -> bool:
    condition = find_condition(conditions, type)
    return condition is not None and condition.status == "True"


def set_condition(
    conditions: Sequence[Condition],
    type: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    observed_generation: int | None,
    now: str,
) -> list[Condition]:
    """Return a copy of `conditions` with `type` set; position of existing entries is kept.

    lastTransitionTime moves to `now` only when the status flips (or the condition is new),
    so it keeps answering "since when has this been true?" across repeated reconciles.
    """
    updated: list[Condition] = []
    found = False
    for condition in conditions:
        if condition.type != type:
            updated.append(condition)
            continue
        found = True
        transition_time = now if condition.status != status else condition.last_transition_time
        updated.append(
            Condition(
                type=type,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=transition_time,
                observed_generation=observed_generation,
            )
        )
    if not found:
        updated.append(
            Condition(
                type=type,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=now,
                observed_generation=observed_generation,
            )
        )
    return updated

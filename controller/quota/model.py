"""The LabQuota resource: hard limits on a namespace's LabWorkers (spec) and their use (status).

Shaped like Kubernetes' ResourceQuota: `spec.hard` maps a resource name
(controller.quota.keys) to a limit; the controller copies it to `status.hard` and reports
`status.used` under the same names. Limits are enforced from `spec.hard` at write time
(controller.quota.enforcement), so an edit applies to the very next create, whether or not a
controller is running; status is for people and dashboards.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import AfterValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from controller.quota.keys import HARD_KEY_PATTERN, hard_key_error
from controller.resources.conditions import Condition
from controller.resources.meta import CamelModel, ObjectMeta
from controller.resources.object import Resource

API_VERSION: Final = "lab.neuroglia.io/v1"
KIND: Final = "LabQuota"


def _check_hard(hard: dict[str, int]) -> dict[str, int]:
    for key in hard:
        error = hard_key_error(key)
        if error is not None:
            raise PydanticCustomError("quota_resource", "{reason}", {"reason": error})
    return hard


Count = Annotated[int, Field(ge=0, strict=True)]
"""A whole number of workers; strict, so `"3"`, `3.5` and `true` are refused, not coerced."""

HardLimits = Annotated[
    dict[str, Count],
    AfterValidator(_check_hard),
    Field(json_schema_extra={"propertyNames": {"pattern": HARD_KEY_PATTERN}}),
]


class LabQuotaSpec(CamelModel):
    model_config = ConfigDict(extra="forbid")

    hard: HardLimits = Field(
        default_factory=dict,
        description=(
            "Limits by resource: 'labworkers' (all LabWorkers of the namespace) and "
            "'labworkers/<instance type>' (those whose spec.instance.type is that type). "
            "A create that would go over any limit is refused; lowering a limit below the "
            "current use keeps the existing workers and refuses new ones."
        ),
    )


class LabQuotaStatus(CamelModel):
    # Unknown fields are ignored: status is written by (possibly newer) controllers.
    model_config = ConfigDict(extra="ignore")

    hard: dict[str, Count] = Field(
        default_factory=dict, description="The limits the controller last observed."
    )
    used: dict[str, Count] = Field(
        default_factory=dict,
        description="Current use of each resource in `hard`, from the namespace's usage record.",
    )
    observed_generation: int = Field(default=0, ge=0)
    conditions: list[Condition] = Field(default_factory=list)


class LabQuota(Resource):
    model_config = ConfigDict(
        extra="forbid",
        title="LabQuota",
        json_schema_extra={
            "description": (
                "Hard limits on the LabWorkers of one namespace, enforced atomically when a "
                "worker is created."
            )
        },
    )

    api_version: Literal["lab.neuroglia.io/v1"] = API_VERSION
    kind: Literal["LabQuota"] = KIND
    metadata: ObjectMeta
    spec: LabQuotaSpec = Field(default_factory=LabQuotaSpec)
    status: LabQuotaStatus = Field(default_factory=LabQuotaStatus)

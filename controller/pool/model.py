"""The LabWorkerPool resource: "keep N workers made from this template" (a ReplicaSet with a
rolling update, for lab hosts).

The selector is a label-selector *string* in `labctl get -l` syntax (`pool=ccna,tier in
(gold)`), not a matchLabels map: one grammar for operators and pools, parsed by
controller.resources.selector. Omitted, it is the template's labels (`k=v,…`). Either way
the template's labels must match it — otherwise the pool would create workers it does not
select and keep creating — and it must not be empty, or the pool would adopt every
ownerless worker of its namespace. Such a pool is invalid: `labctl apply` refuses it and
the controller skips it (controller.resources.limits).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from controller.labworker.model import LabWorkerSpec
from controller.labworker.phase import DesiredPhase
from controller.resources.conditions import Condition
from controller.resources.meta import Annotations, CamelModel, Labels, ObjectMeta
from controller.resources.object import Resource
from controller.resources.selector import (
    Operator,
    Requirement,
    Selector,
    SelectorError,
    parse_selector,
)

API_VERSION: Final = "lab.neuroglia.io/v1"
KIND: Final = "LabWorkerPool"

TEMPLATE_HASH_ANNOTATION: Final = "lab.neuroglia.io/template-hash"
"""On every worker a pool creates: the hash of the template it was made from. A worker whose
hash is not the pool's current one is outdated and is replaced by a rolling update."""

_SPEC_CONFIG = ConfigDict(extra="forbid")


class ScaleDownPolicy(StrEnum):
    GRACEFUL = "Graceful"
    """Idle workers go first; a worker hosting labs drains (desiredPhase Terminated) and is
    deleted only once Terminated: a student's running lab is never interrupted."""
    FORCE = "Force"
    """Surplus workers are deleted at once: their instances are terminated, labs or not."""


class WorkerTemplateMeta(CamelModel):
    model_config = _SPEC_CONFIG

    labels: Labels = Field(
        default_factory=dict, description="Labels every worker of the pool carries."
    )
    annotations: Annotations = Field(
        default_factory=dict, description="Annotations every worker of the pool carries."
    )


class WorkerTemplate(CamelModel):
    model_config = _SPEC_CONFIG

    metadata: WorkerTemplateMeta = Field(default_factory=WorkerTemplateMeta)
    spec: LabWorkerSpec = Field(description="The spec of every worker the pool creates.")


class LabWorkerPoolSpec(CamelModel):
    model_config = _SPEC_CONFIG

    replicas: int = Field(default=1, ge=0, description="How many workers the pool keeps.")
    selector: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "Label selector (labctl -l syntax, e.g. 'pool=ccna,tier in (gold)') of the workers "
            "this pool owns and may adopt; defaults to the template's labels. The template's "
            "labels must match it."
        ),
    )
    template: WorkerTemplate
    scale_down: ScaleDownPolicy = Field(
        default=ScaleDownPolicy.GRACEFUL,
        description=(
            "Graceful: surplus workers drain before they are deleted (labs are never "
            "interrupted). Force: surplus workers are deleted at once."
        ),
    )
    max_unavailable: int = Field(
        default=1,
        ge=1,
        description=(
            "Rolling update: how many updated workers may be starting at once; an outdated "
            "worker is retired only once enough updated ones are Ready."
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        selector = self.label_selector()  # raises ValueError (SelectorError) if malformed
        labels = self.template.metadata.labels
        if selector.is_empty:
            raise ValueError(
                "the pool needs a non-empty selector: give spec.selector or at least one "
                "label in spec.template.metadata.labels (an empty selector would adopt every "
                "worker of the namespace)"
            )
        if not selector.matches(labels):
            raise ValueError(
                f"spec.template.metadata.labels ({_render(labels)}) do not match "
                f"spec.selector {str(selector)!r}: the pool could never find the workers it "
                "creates"
            )
        if TEMPLATE_HASH_ANNOTATION in self.template.metadata.annotations:
            raise ValueError(
                f"spec.template.metadata.annotations must not set {TEMPLATE_HASH_ANNOTATION}: "
                "the pool writes it"
            )
        if self.template.spec.desired_phase is not DesiredPhase.READY:
            raise ValueError(
                "spec.template.spec.desiredPhase must be Ready (or omitted): the pool sets "
                "desiredPhase itself when it retires a worker"
            )
        return self

    def label_selector(self) -> Selector:
        """The selector in force: `spec.selector`, else the template's labels."""
        if self.selector is None:
            return Selector.of(_equalities(self.template.metadata.labels))
        try:
            return parse_selector(self.selector)
        except SelectorError as exc:
            raise ValueError(f"spec.selector: {exc}") from None


def _equalities(labels: dict[str, str]) -> list[Requirement]:
    return [Requirement(k, Operator.EQUALS, (v,)) for k, v in labels.items()]


def _render(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "none"


class LabWorkerPoolStatus(CamelModel):
    model_config = ConfigDict(extra="ignore")

    replicas: int = Field(
        default=0, ge=0, description="Owned workers that are not retiring or being deleted."
    )
    ready_replicas: int = Field(default=0, ge=0, description="Of those, Ready or Active.")
    active_replicas: int = Field(default=0, ge=0, description="Of those, Active (hosting labs).")
    updated_replicas: int = Field(
        default=0, ge=0, description="Of those, made from the current template."
    )
    retiring_replicas: int = Field(
        default=0,
        ge=0,
        description="Owned workers on their way out: draining, terminating or being deleted.",
    )
    observed_generation: int = Field(default=0, ge=0)
    conditions: list[Condition] = Field(default_factory=list)


class LabWorkerPool(Resource):
    model_config = ConfigDict(
        extra="forbid",
        title="LabWorkerPool",
        json_schema_extra={
            "description": "A set of interchangeable LabWorkers made from one template, kept "
            "at spec.replicas, scaled down gracefully and rolled one by one."
        },
    )

    api_version: Literal["lab.neuroglia.io/v1"] = API_VERSION
    kind: Literal["LabWorkerPool"] = KIND
    metadata: ObjectMeta
    spec: LabWorkerPoolSpec
    status: LabWorkerPoolStatus = Field(default_factory=LabWorkerPoolStatus)

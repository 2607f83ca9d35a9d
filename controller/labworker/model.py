"""The LabWorker resource: what a user declares (spec) and what the controller reports (status).

Spec models forbid unknown fields so that a typo in a manifest is rejected with its field
path instead of being silently dropped. Status ignores unknown fields so that an older
controller can still read objects whose status a newer controller has written.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import ConfigDict, Field, StringConstraints

from controller.labworker.phase import DesiredPhase, Phase
from controller.resources.conditions import Condition
from controller.resources.meta import CamelModel, ObjectMeta, Timestamp
from controller.resources.object import Resource

API_VERSION: Final = "lab.neuroglia.io/v1"
KIND: Final = "LabWorker"
FINALIZER: Final = "lab.neuroglia.io/finalizer"

DEFAULT_INSTANCE_TYPE = "m5zn.metal"
MIN_VOLUME_SIZE_GB = 100
DEFAULT_MAX_CONCURRENT_LABS = 20

_SPEC_CONFIG = ConfigDict(extra="forbid")
_STATUS_CONFIG = ConfigDict(extra="ignore")

NonEmptyStr = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class InstanceSpec(CamelModel):
    model_config = _SPEC_CONFIG

    type: NonEmptyStr = Field(
        default=DEFAULT_INSTANCE_TYPE, description="Cloud instance type for the host."
    )
    image: NonEmptyStr | None = Field(
        default=None, description="Machine image; the provider's default when omitted."
    )
    volume_size_gb: int = Field(
        default=MIN_VOLUME_SIZE_GB,
        ge=MIN_VOLUME_SIZE_GB,
        description="Root volume size; lab images need at least 100 GB.",
    )
    tags: dict[str, str] = Field(
        default_factory=dict, description="Extra cloud tags put on the instance."
    )


class HostSpec(CamelModel):
    model_config = _SPEC_CONFIG

    auto_license: bool = Field(
        default=False, description="License the host automatically before it becomes Ready."
    )
    license_secret_ref: NonEmptyStr | None = Field(
        default=None,
        max_length=253,
        pattern=r"^[A-Za-z0-9]([-._A-Za-z0-9]*[A-Za-z0-9])?$",
        description=(
            "Name of the secret holding the license to apply: a file (or a directory with a "
            "`token` file) under the controller's LAB_SECRETS_DIR; a plain name, no path."
        ),
    )
    max_concurrent_labs: int = Field(
        default=DEFAULT_MAX_CONCURRENT_LABS,
        ge=1,
        description="Upper bound of labs the host may run at once.",
    )


class LabWorkerSpec(CamelModel):
    model_config = _SPEC_CONFIG

    lab_track: NonEmptyStr = Field(description="The lab curriculum this worker serves.")
    desired_phase: DesiredPhase = DesiredPhase.READY
    instance: InstanceSpec = Field(default_factory=InstanceSpec)
    host: HostSpec = Field(default_factory=HostSpec)


class LabWorkerStatus(CamelModel):
    model_config = _STATUS_CONFIG

    phase: Phase | None = None
    phase_transition_time: Timestamp | None = Field(
        default=None,
        description="When the worker entered its current phase; phase timeouts count from it.",
    )
    observed_generation: int = Field(default=0, ge=0)
    conditions: list[Condition] = Field(default_factory=list)
    instance_id: str | None = None
    address: str | None = None
    host_version: str | None = None
    licensed: bool = False
    hosted_labs: int = Field(default=0, ge=0)
    last_health_check: Timestamp | None = None
    provisioning_started_at: Timestamp | None = None
    provisioning_completed_at: Timestamp | None = None
    error_message: str | None = None
    error_count: int = Field(default=0, ge=0)


class LabWorker(Resource):
    model_config = ConfigDict(
        extra="forbid",
        title="LabWorker",
        json_schema_extra={
            "description": "A lab host declared as a Kubernetes-style resource stored in etcd."
        },
    )

    api_version: Literal["lab.neuroglia.io/v1"] = API_VERSION
    kind: Literal["LabWorker"] = KIND
    metadata: ObjectMeta
    spec: LabWorkerSpec
    status: LabWorkerStatus = Field(default_factory=LabWorkerStatus)

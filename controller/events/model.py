"""The Event resource: a Kubernetes-style record that something happened to an object.

Events are written only by controllers (the EventRecorder), never applied by users, so the
model is lenient where the user-facing kinds are strict: unknown fields are ignored, so an
older controller or `labctl` can still read Events a newer controller has written. An Event
has no spec and no status (`status_field = None`): it is all data, and it expires with the
etcd lease it is written with (settings.events.ttl after its last occurrence).
"""

from __future__ import annotations

from typing import ClassVar, Final, Literal

from pydantic import ConfigDict, Field

from controller.resources.meta import (
    CamelModel,
    NamespaceName,
    ObjectMeta,
    ResourceName,
    Timestamp,
)
from controller.resources.object import Resource
from controller.runtime.recorder import EventType

API_VERSION: Final = "lab.neuroglia.io/v1"
KIND: Final = "Event"

MAX_REASON_LENGTH: Final = 128
"""Reasons are short UpperCamelCase words (`Provisioning`, `InstanceLost`): a key to filter on."""
MAX_MESSAGE_LENGTH: Final = 1024
"""Kubernetes' limit for an event's note; the recorder shortens longer messages to fit."""

_LENIENT = ConfigDict(extra="ignore")


class InvolvedObject(CamelModel):
    """The object the Event is about (Kubernetes' ObjectReference). `uid` tells a new object
    from a deleted one of the same name; it is absent only for an object not yet stored."""

    model_config = _LENIENT

    api_version: str = Field(min_length=1)
    kind: str = Field(min_length=1)
    name: ResourceName
    namespace: NamespaceName
    uid: str | None = None


class Event(Resource):
    model_config = ConfigDict(
        extra="ignore",
        title="Event",
        json_schema_extra={
            "description": "Something that happened to an object, reported by a controller "
            "(Kubernetes' core/v1 Event). Written by controllers only; expires with an etcd "
            "lease EVENT_TTL seconds after its last occurrence."
        },
    )

    status_field: ClassVar[str | None] = None

    api_version: Literal["lab.neuroglia.io/v1"] = API_VERSION
    kind: Literal["Event"] = KIND
    metadata: ObjectMeta
    involved_object: InvolvedObject
    reason: str = Field(
        min_length=1,
        max_length=MAX_REASON_LENGTH,
        description="Why: a short UpperCamelCase word, the same for every like occurrence.",
    )
    message: str = Field(
        default="",
        max_length=MAX_MESSAGE_LENGTH,
        description="What happened, for an operator.",
    )
    type: EventType = Field(description="Normal, or Warning when an operator should look.")
    count: int = Field(default=1, ge=1, description="How many times it happened.")
    first_timestamp: Timestamp = Field(description="When it first happened.")
    last_timestamp: Timestamp = Field(description="When it last happened.")
    reporting_controller: str = Field(min_length=1, description="The controller that saw it.")
    reporting_instance: str = Field(
        min_length=1, description="The controller replica (its identity) that saw it."
    )

"""Object metadata shared by every resource kind, plus the timestamp format they all use.

Timestamps stay strings (RFC 3339, UTC, 'Z', fixed millisecond precision) rather than
datetimes: they round-trip byte-for-byte through etcd, compare correctly as strings, and
cost one cheap check on validation, which matters when 100k objects are decoded at startup.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer
from pydantic.alias_generators import to_camel
from pydantic.json_schema import WithJsonSchema
from pydantic_core import PydanticCustomError

from controller.resources.names import (
    DNS1123_LABEL_MAX_LENGTH,
    DNS1123_LABEL_PATTERN,
    DNS1123_SUBDOMAIN_MAX_LENGTH,
    DNS1123_SUBDOMAIN_PATTERN,
    dns1123_label_error,
    dns1123_subdomain_error,
    label_key_error,
    label_value_error,
)

DEFAULT_NAMESPACE = "default"

_TIMESTAMP_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z")
TIMESTAMP_PATTERN = "^" + _TIMESTAMP_SHAPE.pattern + "$"


class CamelModel(BaseModel):
    """Base for every resource model: Python names in code, camelCase in JSON and YAML."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
    )


def format_timestamp(moment: datetime) -> str:
    """Fixed width so that string order equals time order; naive datetimes are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.removesuffix("+00:00") + "Z"


def now_rfc3339() -> str:
    return format_timestamp(datetime.now(UTC))


def parse_timestamp(text: str) -> datetime:
    """Inverse of format_timestamp; accepts any fractional precision. Raises ValueError."""
    if not _TIMESTAMP_SHAPE.fullmatch(text):
        raise ValueError(f"{text!r} is not an RFC 3339 UTC timestamp like '2024-05-01T12:00:00Z'")
    return datetime.fromisoformat(text)


def _check_timestamp(value: str) -> str:
    try:
        parse_timestamp(value)
    except ValueError as exc:  # fromisoformat also rejects impossible dates (Feb 30)
        raise PydanticCustomError(
            "timestamp",
            "{reason}",
            {"reason": f"{value!r} is not an RFC 3339 UTC timestamp like '2024-05-01T12:00:00Z'"},
        ) from exc
    return value


def _check_name(value: str) -> str:
    error = dns1123_subdomain_error(value)
    if error is not None:
        raise PydanticCustomError("dns1123_subdomain", "{reason}", {"reason": error})
    return value


def _check_namespace(value: str) -> str:
    error = dns1123_label_error(value)
    if error is not None:
        raise PydanticCustomError("dns1123_label", "{reason}", {"reason": error})
    return value


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    # One call per dict rather than per key keeps validation of large lists cheap.
    for key, value in labels.items():
        error = label_key_error(key) or label_value_error(value)
        if error is not None:
            raise PydanticCustomError("label", "{reason}", {"reason": error})
    return labels


def _check_annotation_keys(annotations: dict[str, str]) -> dict[str, str]:
    for key in annotations:
        error = label_key_error(key)
        if error is not None:
            raise PydanticCustomError("annotation_key", "{reason}", {"reason": error})
    return annotations


def _check_finalizers(finalizers: list[str]) -> list[str]:
    for finalizer in finalizers:
        error = label_key_error(finalizer)
        if error is not None:
            raise PydanticCustomError("finalizer", "{reason}", {"reason": error})
    return finalizers


Timestamp = Annotated[
    str,
    AfterValidator(_check_timestamp),
    Field(json_schema_extra={"pattern": TIMESTAMP_PATTERN}),
]
ResourceName = Annotated[
    str,
    AfterValidator(_check_name),
    Field(
        json_schema_extra={
            "pattern": DNS1123_SUBDOMAIN_PATTERN,
            "maxLength": DNS1123_SUBDOMAIN_MAX_LENGTH,
        }
    ),
]
NamespaceName = Annotated[
    str,
    AfterValidator(_check_namespace),
    Field(
        json_schema_extra={
            "pattern": DNS1123_LABEL_PATTERN,
            "maxLength": DNS1123_LABEL_MAX_LENGTH,
        }
    ),
]


def _resource_version_in(value: object) -> object:
    """A string on the wire, as in Kubernetes; an int is still accepted (older manifests)."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return value


def _check_resource_version(value: int) -> int:
    if value < 1:
        raise PydanticCustomError(
            "resource_version", "{reason}", {"reason": "a resourceVersion is a revision >= 1"}
        )
    return value


ResourceVersion = Annotated[
    int,
    BeforeValidator(_resource_version_in),
    AfterValidator(_check_resource_version),
    PlainSerializer(str, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^[1-9][0-9]*$",
            "description": "The etcd mod_revision of the key, filled in on read; never "
            "stored. A string, as in Kubernetes; a manifest carrying it makes `apply` a "
            "compare-and-swap (a stale one is a conflict).",
        }
    ),
]
"""An int in code (it is compared with etcd revisions); a decimal string in JSON and YAML."""

Labels = Annotated[dict[str, str], AfterValidator(_check_labels)]
Annotations = Annotated[dict[str, str], AfterValidator(_check_annotation_keys)]
Finalizers = Annotated[list[str], AfterValidator(_check_finalizers)]


class OwnerReference(CamelModel):
    """Who owns this object (Kubernetes' ownerReferences): deleting the owner collects it.

    `uid` is what counts — a new owner with the same name is not the owner — and at most one
    reference has `controller: true`: the object whose controller manages this one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_version: str = Field(min_length=1)
    kind: str = Field(min_length=1)
    name: ResourceName
    uid: str = Field(min_length=1)
    controller: bool = False
    block_owner_deletion: bool = False


class ObjectMeta(CamelModel):
    """Kubernetes-style metadata. Unknown fields are rejected so a typo fails `apply`."""

    model_config = ConfigDict(extra="forbid")

    name: ResourceName
    namespace: NamespaceName = DEFAULT_NAMESPACE
    uid: str | None = None
    labels: Labels = Field(default_factory=dict)
    annotations: Annotations = Field(default_factory=dict)
    generation: int = Field(
        default=0,
        ge=0,
        description="Bumped by writers whenever spec changes; 0 until first stored.",
    )
    creation_timestamp: Timestamp | None = None
    deletion_timestamp: Timestamp | None = None
    finalizers: Finalizers = Field(default_factory=list)
    owner_references: list[OwnerReference] | None = Field(
        default=None,
        description="Owners of this object; absent (not empty) when it has none, so objects "
        "without owners store no extra bytes.",
    )
    resource_version: ResourceVersion | None = None

    @property
    def namespaced_name(self) -> str:
        """'<namespace>/<name>', the identity used by caches and work queues."""
        return f"{self.namespace}/{self.name}"

    def controller_ref(self) -> OwnerReference | None:
        """The owner reference with `controller: true`, if any."""
        return next((ref for ref in self.owner_references or () if ref.controller), None)

"""The shape every stored kind shares: apiVersion, kind, metadata — and how it is serialized.

A kind's model subclasses `Resource` and adds its own fields (`spec`/`status` for most kinds;
an Event has neither). The generic repository (controller.runtime.repository) relies only on
what is declared here, plus the convention that `status` — when a kind has one — is written by
controllers and everything else but metadata is written by users.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

from controller.resources.meta import CamelModel, ObjectMeta

# Excluding by Python field name; computed once instead of per dump.
_WITHOUT_RESOURCE_VERSION: Mapping[str, Any] = {"metadata": {"resource_version"}}


class Resource(CamelModel):
    """Base of every kind's model. Subclasses pin `api_version` and `kind` with Literals."""

    status_field: ClassVar[str | None] = "status"
    """The field controllers own; None for kinds without status (Event)."""

    api_version: str
    kind: str
    metadata: ObjectMeta

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Validate a decoded manifest or stored value; raises pydantic.ValidationError."""
        return cls.model_validate(data)

    @classmethod
    def from_json(cls, data: str | bytes) -> Self:
        """Validate raw JSON (an etcd value) without building an intermediate dict."""
        return cls.model_validate_json(data)

    def to_dict(self) -> dict[str, Any]:
        """camelCase, JSON-compatible, with resourceVersion: what `labctl get` shows."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_storage_dict(self) -> dict[str, Any]:
        """What is written to etcd: resourceVersion is the key's mod_revision, not data."""
        return self.model_dump(
            mode="json", by_alias=True, exclude_none=True, exclude=_WITHOUT_RESOURCE_VERSION
        )

    def to_storage_json(self) -> bytes:
        """Same content and bytes as encode_document(to_storage_dict()), in one step.

        Raises pydantic_core.PydanticSerializationError for a string that is not valid
        Unicode (a lone surrogate)."""
        return self.__pydantic_serializer__.to_json(
            self, by_alias=True, exclude_none=True, exclude=_WITHOUT_RESOURCE_VERSION
        )

    def user_fields(self) -> dict[str, Any]:
        """Everything users own (spec, for most kinds): all but metadata and status."""
        excluded = {"metadata", "api_version", "kind"}
        if self.status_field:
            excluded.add(self.status_field)
        return {
            name: getattr(self, name) for name in type(self).model_fields if name not in excluded
        }

    def status_value(self) -> Any:
        return getattr(self, self.status_field) if self.status_field else None

"""What the verbs read off a kind's pydantic model: its phases, whether it has replicas, its
status as a plain document."""

from __future__ import annotations

from enum import Enum
from typing import Any, get_args

from pydantic import BaseModel

from controller.resources import Kind, Resource


def status_dict(obj: Resource) -> dict[str, Any]:
    if not obj.status_field:
        return {}
    value = obj.status_value()
    if isinstance(value, BaseModel):
        dumped: dict[str, Any] = value.model_dump(mode="json", by_alias=True, exclude_none=True)
        return dumped
    return value if isinstance(value, dict) else {}


def submodel(model: type[BaseModel], name: str | None) -> type[BaseModel] | None:
    """The pydantic model of field `name` of `model` (unwrapping `X | None`)."""
    info = model.model_fields.get(name) if name else None
    if info is None:
        return None
    for candidate in (info.annotation, *get_args(info.annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def phase_values(kind: Kind[Any]) -> frozenset[str] | None:
    """The phases a kind's `status.phase` can take (empty: any text); None: it has none."""
    status = submodel(kind.model, kind.model.status_field)
    info = status.model_fields.get("phase") if status is not None else None
    if info is None:
        return None
    values: set[str] = set()
    for candidate in (info.annotation, *get_args(info.annotation)):
        if isinstance(candidate, type) and issubclass(candidate, Enum):
            values.update(str(member.value) for member in candidate)
    return frozenset(values)


def has_replicas(kind: Kind[Any]) -> bool:
    spec = submodel(kind.model, "spec")
    return spec is not None and "replicas" in spec.model_fields

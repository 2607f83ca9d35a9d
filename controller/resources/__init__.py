"""What every kind shares: metadata, keys, kinds, conditions, selectors, limits. Pure logic.

Kind-specific models live in their kind's package (controller.labworker.model, …), so the
runtime can use this package without depending on any kind.
`controller.resources.schema` is deliberately not imported here so that
`python -m controller.resources.schema` runs without a double-import warning.
"""

from controller.resources.conditions import (
    Condition,
    ConditionStatus,
    condition_is_true,
    find_condition,
    set_condition,
)
from controller.resources.key import ObjectKey
from controller.resources.kind import Kind, KindRegistry, PrinterColumn, UnknownKind
from controller.resources.meta import (
    DEFAULT_NAMESPACE,
    ObjectMeta,
    OwnerReference,
    format_timestamp,
    now_rfc3339,
    parse_timestamp,
)
from controller.resources.object import Resource
from controller.resources.selector import (
    Operator,
    Requirement,
    Selector,
    SelectorError,
    parse_selector,
)
from controller.resources.tree_copy import tree_copy
from controller.resources.validation import render_location, validation_errors

__all__ = [
    "DEFAULT_NAMESPACE",
    "Condition",
    "ConditionStatus",
    "Kind",
    "KindRegistry",
    "ObjectKey",
    "ObjectMeta",
    "Operator",
    "OwnerReference",
    "PrinterColumn",
    "Requirement",
    "Resource",
    "Selector",
    "SelectorError",
    "UnknownKind",
    "condition_is_true",
    "find_condition",
    "format_timestamp",
    "now_rfc3339",
    "parse_selector",
    "parse_timestamp",
    "render_location",
    "set_condition",
    "tree_copy",
    "validation_errors",
]

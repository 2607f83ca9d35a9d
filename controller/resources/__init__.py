"""The LabWorker resource model: metadata, conditions, phases, selectors. Pure logic, no I/O.

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
from controller.resources.labworker import (
    API_VERSION,
    FINALIZER,
    KIND,
    HostSpec,
    InstanceSpec,
    LabWorker,
    LabWorkerSpec,
    LabWorkerStatus,
    validation_errors,
)
from controller.resources.meta import (
    DEFAULT_NAMESPACE,
    ObjectMeta,
    format_timestamp,
    now_rfc3339,
    parse_timestamp,
)
from controller.resources.phase import (
    TRANSITIONS,
    DesiredPhase,
    Phase,
    Transition,
    allowed_targets,
    can_transition,
    transitions_between,
)
from controller.resources.selector import (
    Operator,
    Requirement,
    Selector,
    SelectorError,
    parse_selector,
)

__all__ = [
    "API_VERSION",
    "DEFAULT_NAMESPACE",
    "FINALIZER",
    "KIND",
    "TRANSITIONS",
    "Condition",
    "ConditionStatus",
    "DesiredPhase",
    "HostSpec",
    "InstanceSpec",
    "LabWorker",
    "LabWorkerSpec",
    "LabWorkerStatus",
    "ObjectMeta",
    "Operator",
    "Phase",
    "Requirement",
    "Selector",
    "SelectorError",
    "Transition",
    "allowed_targets",
    "can_transition",
    "condition_is_true",
    "find_condition",
    "format_timestamp",
    "now_rfc3339",
    "parse_selector",
    "parse_timestamp",
    "set_condition",
    "transitions_between",
    "validation_errors",
]

"""The resource names a LabQuota limits, as Kubernetes' ResourceQuota names them.

Two forms, nothing else:

- `labworkers`: how many LabWorkers the namespace may hold;
- `labworkers/<instance type>`: how many of them may have `spec.instance.type` equal to
  `<instance type>` (`labworkers/m5zn.metal`).

The same names key `spec.hard`, `status.hard`, `status.used` and the namespace's usage
record, so one worker is always the delta `{labworkers: 1, labworkers/<its type>: 1}`.
A typo (`labworker`, `lab-workers/m5zn.metal`) would limit nothing and say nothing, so an
unknown name is refused at apply time with the two forms spelled out.
"""

from __future__ import annotations

import re
from typing import Final

from controller.resources.names import shorten

LABWORKERS: Final = "labworkers"
"""The total number of LabWorkers in the namespace."""

TYPE_PREFIX: Final = LABWORKERS + "/"

INSTANCE_TYPE_MAX_LENGTH: Final = 128

_INSTANCE_TYPE = re.compile(r"[A-Za-z0-9]([-._A-Za-z0-9]*[A-Za-z0-9])?")

HARD_KEY_PATTERN: Final = (
    r"^labworkers(/[A-Za-z0-9]([-._A-Za-z0-9]{0,"
    + str(INSTANCE_TYPE_MAX_LENGTH - 2)
    + r"}[A-Za-z0-9])?)?$"
)
"""The same rule as `hard_key_error`, for the JSON Schema (editors flag a bad key early)."""


def type_key(instance_type: str) -> str:
    """`labworkers/<instance type>`: the count of workers of that instance type."""
    return TYPE_PREFIX + instance_type


def instance_type_of(key: str) -> str | None:
    """The instance type a `labworkers/<type>` key limits; None for `labworkers`."""
    return key[len(TYPE_PREFIX) :] if key.startswith(TYPE_PREFIX) else None


def hard_key_error(key: str) -> str | None:
    """Why `key` is not a resource a LabQuota can limit (None when it is one)."""
    if key == LABWORKERS:
        return None
    instance_type = instance_type_of(key)
    if instance_type is None:
        return (
            f"{shorten(key)} is not a quota resource: use 'labworkers' (all workers) or "
            "'labworkers/<instance type>' (e.g. 'labworkers/m5zn.metal')"
        )
    if not instance_type:
        return f"{shorten(key)}: the instance type after 'labworkers/' is empty"
    if len(instance_type) > INSTANCE_TYPE_MAX_LENGTH:
        return (
            f"{shorten(key)}: the instance type is {len(instance_type)} characters long; at "
            f"most {INSTANCE_TYPE_MAX_LENGTH}"
        )
    if not _INSTANCE_TYPE.fullmatch(instance_type):
        return (
            f"{shorten(key)}: {shorten(instance_type)} is not an instance type: use letters, "
            "digits, '-', '.' and '_', starting and ending with a letter or digit "
            "(e.g. 'labworkers/m5zn.metal')"
        )
    return None


def keys_of_instance(instance_type: str) -> tuple[str, str]:
    """The resources one worker of `instance_type` uses: one of each."""
    return LABWORKERS, type_key(instance_type)

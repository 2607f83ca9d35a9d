"""Whether a change in use fits every LabQuota of the namespace, and how a refusal reads.

Pure: the admission (controller.quota.enforcement) reads the quotas and the usage record
and calls `violations`; the refusal errors are `AdmissionRefused`s, so every writer (the
repository's callers, `labctl`) already knows to stop and report them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from controller.quota.model import LabQuota
from controller.quota.usage import Usage
from controller.runtime.repository import AdmissionRefused


@dataclass(frozen=True, slots=True)
class Violation:
    """One limit a change would break."""

    quota: str
    """The LabQuota's name (in the worker's namespace)."""
    key: str
    limit: int
    used: int
    requested: int

    def describe(self) -> str:
        return f"{self.key} limited to {self.limit}, used {self.used}, requested {self.requested}"


def violations(
    quotas: Iterable[LabQuota], usage: Usage, delta: Mapping[str, int]
) -> list[Violation]:
    """Every (quota, resource) whose limit `usage + delta` would exceed, by quota name.

    Only what the change adds is checked: giving back never fails, and a resource already
    over its (lowered) limit does not block a change that does not add to it."""
    found: list[Violation] = []
    for quota in sorted(quotas, key=lambda q: q.metadata.name):
        for key in sorted(delta):
            requested = delta[key]
            limit = quota.spec.hard.get(key)
            if requested <= 0 or limit is None:
                continue
            used = usage.get(key)
            if used + requested > limit:
                found.append(Violation(quota.metadata.name, key, limit, used, requested))
    return found


def refusal_message(resource: str, name: str, found: Iterable[Violation]) -> str:
    """`labworkers "w4" is forbidden: exceeded quota team-a: labworkers limited to 3, used 3,
    requested 1` — every broken limit, grouped by quota."""
    by_quota: dict[str, list[str]] = {}
    for violation in found:
        by_quota.setdefault(violation.quota, []).append(violation.describe())
    reasons = "; ".join(
        f"exceeded quota {quota}: " + "; ".join(limits) for quota, limits in by_quota.items()
    )
    return f'{resource} "{name}" is forbidden: {reasons}'


class LabQuotaExceeded(AdmissionRefused):
    """A LabQuota refused the write; `violations` name each quota, limit and use."""

    def __init__(self, resource: str, name: str, found: list[Violation]) -> None:
        super().__init__(refusal_message(resource, name, found))
        self.resource = resource
        self.name = name
        self.violations = found


class UsageRecordUnreadable(AdmissionRefused):
    """The namespace's usage record cannot be read, so no limit can be checked: the write is
    refused rather than checked against a guess (the record is never reset to zero)."""

    def __init__(self, resource: str, name: str, key: str, detail: str) -> None:
        super().__init__(
            f'{resource} "{name}" is forbidden: the quota usage record {key} is unreadable '
            f"({detail}), so quotas cannot be checked; nothing was written. It is never reset "
            "on its own: a LabQuota in the namespace makes the quota controller rewrite it from "
            f"a recount of the namespace's workers, or delete it (etcdctl del {key}) and the "
            "next write recounts them"
        )
        self.key = key
        self.detail = detail

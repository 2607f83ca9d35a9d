"""What the quota controller reports, and how `setup` finds an implementation.

Like the event recorder's metrics: `setup` uses the manager's reconcile metrics object when
it implements this protocol (the observability package adds the Prometheus series);
otherwise nothing is reported. Refusals are not counted here: the admission runs in every
writer (`labctl` too), and a writer that is refused records a `QuotaExceeded` Event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Protocol, runtime_checkable

CorrectionReason = Literal["drift", "unreadable", "absent"]
"""drift: the record disagreed with the workers (someone wrote around the repository).
unreadable: the record was not a usage record. absent: workers but no record."""


@runtime_checkable
class QuotaMetrics(Protocol):
    def quota_usage_corrected(self, reason: str) -> None:
        """The quota controller rewrote a namespace's usage record from a recount."""
        ...

    def quota_usage(
        self, namespace: str, quota: str, used: Mapping[str, int], hard: Mapping[str, int]
    ) -> None:
        """A LabQuota's use and limits, as just written to its status."""
        ...

    def quota_deleted(self, namespace: str, quota: str) -> None:
        """The LabQuota is gone: forget its use and limits."""
        ...


class NoopQuotaMetrics:
    def quota_usage_corrected(self, reason: str) -> None: ...
    def quota_usage(
        self, namespace: str, quota: str, used: Mapping[str, int], hard: Mapping[str, int]
    ) -> None: ...
    def quota_deleted(self, namespace: str, quota: str) -> None: ...


NOOP_QUOTA_METRICS: QuotaMetrics = NoopQuotaMetrics()


def quota_metrics_from(candidate: object) -> QuotaMetrics:
    """`candidate` if it implements QuotaMetrics (e.g. the manager's ControllerMetrics),
    else the no-op."""
    return candidate if isinstance(candidate, QuotaMetrics) else NOOP_QUOTA_METRICS

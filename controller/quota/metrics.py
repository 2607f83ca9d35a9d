"""What the quota controller reports, and how `setup` finds an implementation.

Like the event recorder's metrics: `setup` uses the manager's reconcile metrics object when
it implements this protocol (the observability package adds the Prometheus series);
otherwise nothing is reported. Refusals are not counted here: the admission runs in every
writer (`labctl` too), and a writer that is refused records a `QuotaExceeded` Event.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

CorrectionReason = Literal["drift", "unreadable", "absent"]
"""drift: the record disagreed with the workers (someone wrote around the repository).
unreadable: the record was not a usage record. absent: workers but no record."""


@runtime_checkable
class QuotaMetrics(Protocol):
    def quota_usage_corrected(self, reason: str) -> None:
        """The quota controller rewrote a namespace's usage record from a recount."""
        ...


class NoopQuotaMetrics:
    def quota_usage_corrected(self, reason: str) -> None: ...


NOOP_QUOTA_METRICS: QuotaMetrics = NoopQuotaMetrics()


def quota_metrics_from(candidate: object) -> QuotaMetrics:
    """`candidate` if it implements QuotaMetrics (e.g. the manager's ControllerMetrics),
    else the no-op."""
    return candidate if isinstance(candidate, QuotaMetrics) else NOOP_QUOTA_METRICS

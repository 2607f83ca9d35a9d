"""What the event recorder reports, and how `setup` finds an implementation.

The recorder only knows this protocol. `setup` uses the manager's reconcile metrics object
when it implements these methods (the observability package will add Prometheus series);
otherwise nothing is reported — recording events must never depend on metrics.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

DropReason = Literal["rate_limited", "queue_full", "shutdown"]
"""rate_limited: the object's spam-filter bucket was empty. queue_full: the writer was
behind (etcd slow or away). shutdown: still queued when the stop timeout ran out, or
recorded after stop."""


@runtime_checkable
class EventMetrics(Protocol):
    def event_recorded(self, type: str) -> None:
        """A new Event object was written (`type`: Normal or Warning)."""
        ...

    def event_aggregated(self, type: str) -> None:
        """A repeat was written as the existing Event's count + 1."""
        ...

    def event_dropped(self, reason: str) -> None:
        """An event was not written, on purpose (`reason`: a DropReason)."""
        ...

    def event_write_failed(self) -> None:
        """A write failed (etcd refused it or did not answer, or the event was invalid);
        the occurrence is lost, logged with the event's name."""
        ...


class NoopEventMetrics:
    def event_recorded(self, type: str) -> None: ...
    def event_aggregated(self, type: str) -> None: ...
    def event_dropped(self, reason: str) -> None: ...
    def event_write_failed(self) -> None: ...


NOOP_EVENT_METRICS: EventMetrics = NoopEventMetrics()


def event_metrics_from(candidate: object) -> EventMetrics:
    """`candidate` if it implements EventMetrics (e.g. the manager's ControllerMetrics),
    else the no-op."""
    return candidate if isinstance(candidate, EventMetrics) else NOOP_EVENT_METRICS

"""Metrics hook for work queues, shaped like client-go's ``workqueue.MetricsProvider``.

The queue must not depend on a metrics library, yet dashboards expect client-go's metric
names (``workqueue_depth``, ``workqueue_adds_total``, ...) labelled by queue name. So the
queue asks a :class:`WorkqueueMetrics` factory for one small instrument per signal and
name, and an exporter module maps each factory method onto its own metric family.

With ``prometheus_client`` the instruments are simply labelled children, which already
satisfy these protocols structurally::

    class PrometheusWorkqueueMetrics:
        def new_depth_metric(self, name: str) -> GaugeMetric:
            return WORKQUEUE_DEPTH.labels(name=name)      # a Gauge
        def new_unfinished_work_seconds_metric(self, name: str) -> CallbackGaugeMetric:
            return WORKQUEUE_UNFINISHED_WORK.labels(name=name)  # Gauge.set_function
        ...

"Unfinished work" and "longest running processor" are computed on demand: the queue hands
the gauge a callback once, so the value is fresh at every scrape and no ticker thread is
needed (client-go polls every 500 ms instead).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, Protocol, TypeVar

from controller.runtime.clock import Clock

T = TypeVar("T", bound=Hashable)


class CounterMetric(Protocol):
    def inc(self) -> None: ...


class GaugeMetric(Protocol):
    def inc(self) -> None: ...

    def dec(self) -> None: ...


class HistogramMetric(Protocol):
    """Observes durations in seconds."""

    def observe(self, value: float, /) -> None: ...


class CallbackGaugeMetric(Protocol):
    """A gauge whose value is read from ``fn`` whenever it is collected."""

    def set_function(self, fn: Callable[[], float], /) -> None: ...


class WorkqueueMetrics(Protocol):
    """Creates the instruments of one named queue; called once per queue at construction.

    Method ↔ conventional metric name (all labelled ``name``):
    depth → ``workqueue_depth``; adds → ``workqueue_adds_total``;
    latency → ``workqueue_queue_duration_seconds`` (add → get);
    work_duration → ``workqueue_work_duration_seconds`` (get → done);
    unfinished_work_seconds → ``workqueue_unfinished_work_seconds`` (sum of in-flight ages);
    longest_running_processor_seconds → ``workqueue_longest_running_processor_seconds``;
    retries → ``workqueue_retries_total`` (every delayed/rate-limited re-add).

    A priority queue asks for its depth per priority instead
    (``new_depth_metric_with_priority``: ``workqueue_depth`` also labelled ``priority``,
    "high" or "low"), so a dashboard sees the background backlog apart from user changes.
    """

    def new_depth_metric(self, name: str, /) -> GaugeMetric: ...

    def new_depth_metric_with_priority(self, name: str, priority: str, /) -> GaugeMetric: ...

    def new_adds_metric(self, name: str, /) -> CounterMetric: ...

    def new_latency_metric(self, name: str, /) -> HistogramMetric: ...

    def new_work_duration_metric(self, name: str, /) -> HistogramMetric: ...

    def new_unfinished_work_seconds_metric(self, name: str, /) -> CallbackGaugeMetric: ...

    def new_longest_running_processor_seconds_metric(self, name: str, /) -> CallbackGaugeMetric: ...

    def new_retries_metric(self, name: str, /) -> CounterMetric: ...


class _NoopInstrument:
    def inc(self) -> None:
        pass

    def dec(self) -> None:
        pass

    def observe(self, value: float, /) -> None:
        pass

    def set_function(self, fn: Callable[[], float], /) -> None:
        pass


class NoopWorkqueueMetrics:
    """The default: records nothing, so queues work without any exporter configured."""

    _instrument = _NoopInstrument()

    def new_depth_metric(self, name: str, /) -> GaugeMetric:
        return self._instrument

    def new_depth_metric_with_priority(self, name: str, priority: str, /) -> GaugeMetric:
        return self._instrument

    def new_adds_metric(self, name: str, /) -> CounterMetric:
        return self._instrument

    def new_latency_metric(self, name: str, /) -> HistogramMetric:
        return self._instrument

    def new_work_duration_metric(self, name: str, /) -> HistogramMetric:
        return self._instrument

    def new_unfinished_work_seconds_metric(self, name: str, /) -> CallbackGaugeMetric:
        return self._instrument

    def new_longest_running_processor_seconds_metric(self, name: str, /) -> CallbackGaugeMetric:
        return self._instrument

    def new_retries_metric(self, name: str, /) -> CounterMetric:
        return self._instrument


NOOP_WORKQUEUE_METRICS: WorkqueueMetrics = NoopWorkqueueMetrics()


class QueueInstruments(Generic[T]):
    """One queue's instruments plus the timestamps needed to compute durations.

    Recording methods must be called with ``lock`` held (the queue's lock): they share the
    queue's critical section instead of adding a lock of their own. The on-demand gauges
    take ``lock`` themselves because they are called from the exporter's thread.

    With ``priority_of`` (a priority queue) depth is kept per priority: ``priority_of(item)``
    names the gauge of a dirty item, one of ``priorities``, and the queue reports a queued
    item's change of priority with :meth:`reprioritized`.
    """

    def __init__(
        self,
        name: str,
        provider: WorkqueueMetrics,
        clock: Clock,
        lock: threading.Lock,
        *,
        priority_of: Callable[[T], str] | None = None,
        priorities: Sequence[str] = (),
    ) -> None:
        self._clock = clock
        self._lock = lock
        if priority_of is None:
            self._depths = {"": provider.new_depth_metric(name)}
            self._priority_of: Callable[[T], str] = lambda _item: ""
        else:
            self._depths = {p: provider.new_depth_metric_with_priority(name, p) for p in priorities}
            self._priority_of = priority_of
        self._adds = provider.new_adds_metric(name)
        self._latency = provider.new_latency_metric(name)
        self._work_duration = provider.new_work_duration_metric(name)
        self._retries = provider.new_retries_metric(name)
        self._added_at: dict[T, float] = {}
        self._started_at: dict[T, float] = {}
        provider.new_unfinished_work_seconds_metric(name).set_function(self.unfinished_work_seconds)
        provider.new_longest_running_processor_seconds_metric(name).set_function(
            self.longest_running_processor_seconds
        )

    def added(self, item: T) -> None:
        self._adds.inc()
        self._depths[self._priority_of(item)].inc()
        self._added_at.setdefault(item, self._clock.now())

    def taken(self, item: T) -> None:
        now = self._clock.now()
        self._depths[self._priority_of(item)].dec()
        added_at = self._added_at.pop(item, None)
        if added_at is not None:
            self._latency.observe(now - added_at)
        self._started_at[item] = now

    def reprioritized(self, old: str, new: str) -> None:
        """A dirty item moved from priority ``old`` to ``new``."""
        self._depths[old].dec()
        self._depths[new].inc()

    def finished(self, item: T) -> None:
        started_at = self._started_at.pop(item, None)
        if started_at is not None:
            self._work_duration.observe(self._clock.now() - started_at)

    def retried(self) -> None:
        self._retries.inc()

    def unfinished_work_seconds(self) -> float:
        """Sum of the ages of all in-flight items: grows without bound if a worker is stuck."""
        with self._lock:
            now = self._clock.now()
            return sum(now - started for started in self._started_at.values())

    def longest_running_processor_seconds(self) -> float:
        with self._lock:
            if not self._started_at:
                return 0.0
            return self._clock.now() - min(self._started_at.values())

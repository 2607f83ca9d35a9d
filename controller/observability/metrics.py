"""Prometheus metrics: controller-runtime's names where it has one, ``labctl_`` otherwise.

Series controller-runtime also exports (``controller_runtime_*``, ``workqueue_*``,
``leader_election_master_status``) keep its exact names and labels, so its dashboards and
alerts work unchanged. Everything this project adds carries the ``labctl_`` prefix: a bare
``etcd_request_duration_seconds`` would collide with kube-apiserver's series of that name in
any Prometheus that scrapes both. docs/architecture.md (Observability) lists every series.

Each class registers its families in the ``CollectorRegistry`` it is given; create each
once per registry (prometheus-client refuses duplicate names).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Final, Literal

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

ReconcileResult = Literal["success", "error", "requeue", "requeue_after"]
RECONCILE_RESULTS: Final[tuple[ReconcileResult, ...]] = (
    "success",
    "error",
    "requeue",
    "requeue_after",
)

# controller-runtime's reconcile_time_seconds buckets (pkg/internal/controller/metrics).
RECONCILE_TIME_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7,
    0.8, 0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0,
    10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0,
)  # fmt: skip
# client-go workqueue: prometheus.ExponentialBuckets(10e-9, 10, 12), i.e. 10ns .. 1000s.
WORKQUEUE_DURATION_BUCKETS: Final = tuple(float(f"1e{exponent}") for exponent in range(-8, 4))
# etcd round trips: sub-millisecond on loopback up to client timeouts.
ETCD_REQUEST_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip

# etcd's alarm types (etcdserverpb.AlarmType), published at 0 so alerts see a series.
ETCD_ALARMS: Final = ("NOSPACE", "CORRUPT")

PROMETHEUS_TEXT_CONTENT_TYPE: Final = prometheus_client.exposition.CONTENT_TYPE_PLAIN_0_0_4
PREFIX: Final = "labctl_"
"""The prefix of every series this project defines (not controller-runtime's)."""


def _without_created_series() -> None:
    # controller-runtime exposes no `_created` series; prometheus-client would add one per
    # counter/histogram child, doubling the series count for nothing a dashboard uses.
    # The switch is process-wide and read when each metric child is created.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream


def new_registry(*, include_process_metrics: bool = True) -> CollectorRegistry:
    """A fresh registry, optionally with process_*/python_* metrics (as Go's process collector)."""
    registry = CollectorRegistry()
    if include_process_metrics:
        prometheus_client.ProcessCollector(registry=registry)
        prometheus_client.PlatformCollector(registry=registry)
        prometheus_client.GCCollector(registry=registry)
    return registry


def render_prometheus(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus text format 0.0.4 (see ``PROMETHEUS_TEXT_CONTENT_TYPE``).
    Scrapes are served by ``server.metrics_routes``, which negotiates OpenMetrics too."""
    return prometheus_client.generate_latest(registry)


class _LastEventAgeCollector(Collector):
    """``labctl_informer_last_event_age_seconds``: computed at scrape time, so it keeps growing
    while a watch is silent (a stored timestamp would need PromQL to become an age)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._last_seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def record(self, resource: str) -> None:
        now = self._clock()
        with self._lock:
            self._last_seen[resource] = now

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "labctl_informer_last_event_age_seconds",
            "Seconds since the watch of this resource last proved it is alive: an event, "
            "this replica's heartbeat coming back on the same stream, or a progress "
            "notification. Stays below WATCH_IDLE_TIMEOUT on a live watch, even a quiet one.",
            labels=["resource"],
        )
        now = self._clock()
        with self._lock:
            seen = dict(self._last_seen)
        for resource, at in sorted(seen.items()):
            family.add_metric([resource], max(0.0, now - at))
        yield family

    def describe(self) -> Iterable[Metric]:
        # Describing without sampling keeps registration free of clock reads.
        yield GaugeMetricFamily("labctl_informer_last_event_age_seconds", "", labels=["resource"])


class ControllerMetrics:
    """Reconcile, leader-election, etcd and informer metrics."""

    def __init__(
        self, registry: CollectorRegistry, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        _without_created_series()
        r = registry
        self._reconcile_total = Counter(
            "controller_runtime_reconcile_total",
            "Total number of reconciliations per controller",
            ["controller", "result"],
            registry=r,
        )
        self._reconcile_errors = Counter(
            "controller_runtime_reconcile_errors_total",
            "Total number of reconciliation errors per controller",
            ["controller"],
            registry=r,
        )
        self._terminal_errors = Counter(
            "controller_runtime_terminal_reconcile_errors_total",
            "Total number of terminal reconciliation errors per controller",
            ["controller"],
            registry=r,
        )
        self._reconcile_panics = Counter(
            "controller_runtime_reconcile_panics_total",
            "Total number of reconciliation panics per controller",
            ["controller"],
            registry=r,
        )
        self._reconcile_time = Histogram(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            ["controller"],
            buckets=RECONCILE_TIME_BUCKETS,
            registry=r,
        )
        self._active_workers = Gauge(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            ["controller"],
            registry=r,
        )
        self._max_concurrent = Gauge(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            ["controller"],
            registry=r,
        )
        self._cas_conflicts = Counter(
            "labctl_cas_conflicts_total",
            "Status writes that lost an optimistic-concurrency compare (mod_revision) race",
            ["controller"],
            registry=r,
        )
        self._refused_calls = Counter(
            "labctl_provider_calls_refused_total",
            "Side-effecting provider calls refused before they were made because this replica "
            "could not prove it still owns the work (its lease may have expired)",
            ["controller", "call"],
            registry=r,
        )
        self._leader = Gauge(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, "
            "0 indicates backup, 1 indicates master. 'name' is the string used to "
            "identify the lease.",
            ["name"],
            registry=r,
        )
        self._etcd_duration = Histogram(
            "labctl_etcd_request_duration_seconds",
            "Latency of etcd requests by method, including failed ones",
            ["method"],
            buckets=ETCD_REQUEST_BUCKETS,
            registry=r,
        )
        self._etcd_errors = Counter(
            "labctl_etcd_request_errors_total",
            "Failed etcd requests by method and error kind",
            ["method", "error"],
            registry=r,
        )
        self._etcd_write_failing = Gauge(
            "labctl_etcd_write_failing",
            "1 while etcd writes have failed continuously (the etcd-writes readiness check "
            "fails), 0 otherwise",
            registry=r,
        )
        self._etcd_alarm = Gauge(
            "labctl_etcd_alarm_active",
            "1 while etcd reports this alarm (NOSPACE: backend quota full; CORRUPT: data "
            "inconsistency); etcd refuses writes meanwhile",
            ["alarm"],
            registry=r,
        )
        self._etcd_alarms_seen: set[str] = set(ETCD_ALARMS)
        for alarm in ETCD_ALARMS:
            self._etcd_alarm.labels(alarm).set(0)
        self._watch_restarts = Counter(
            "labctl_informer_watch_restarts_total",
            "Watch streams re-established after a break, by why the previous one ended "
            "(silent: no proof of life within the idle timeout; error; auth: token expired; "
            "resumed from the last seen revision + 1)",
            ["resource", "reason"],
            registry=r,
        )
        self._relists = Counter(
            "labctl_informer_relists_total",
            "Full lists of the prefix after the start, e.g. after compaction",
            ["resource", "reason"],
            registry=r,
        )
        self._cache_objects = Gauge(
            "labctl_informer_cache_objects",
            "Objects currently held in the informer cache",
            ["resource"],
            registry=r,
        )
        self._invalid_objects = Counter(
            "labctl_informer_invalid_objects_total",
            "Stored values skipped because they are not valid JSON or not a valid object",
            ["resource", "reason"],
            registry=r,
        )
        self._last_event = _LastEventAgeCollector(clock)
        r.register(self._last_event)
        self._events_written = Counter(
            "labctl_events_written_total",
            "Events written by the event recorder: a new Event (recorded) or a repeat "
            "aggregated into an existing one (aggregated)",
            ["type", "outcome"],
            registry=r,
        )
        self._events_dropped = Counter(
            "labctl_events_dropped_total",
            "Events not written: rate_limited (client-go's spam filter), queue_full, or "
            "still queued at shutdown",
            ["reason"],
            registry=r,
        )
        self._quota_corrections = Counter(
            "labctl_quota_usage_corrected_total",
            "Namespace usage records the quota controller rewrote from a recount: drift "
            "(workers written around the repository), unreadable or absent",
            ["reason"],
            registry=r,
        )
        self._quota_used = Gauge(
            "labctl_quota_used",
            "A LabQuota's current use of a resource (status.used)",
            ["namespace", "quota", "resource"],
            registry=r,
        )
        self._quota_hard = Gauge(
            "labctl_quota_hard",
            "A LabQuota's limit of a resource (status.hard)",
            ["namespace", "quota", "resource"],
            registry=r,
        )
        self._quota_lock = threading.Lock()
        self._quota_resources: dict[tuple[str, str], set[str]] = {}
        self._event_write_failures = Counter(
            "labctl_event_write_failures_total",
            "Event writes etcd refused or did not answer (never retried blindly; a "
            "reconcile never fails for one)",
            registry=r,
        )

    def register_controller(self, controller: str, max_concurrent_reconciles: int) -> None:
        """Publish a controller's series at zero, so rate() and alerts work before the
        first reconcile instead of seeing an absent series."""
        self._max_concurrent.labels(controller).set(max_concurrent_reconciles)
        self._active_workers.labels(controller).set(0)
        for result in RECONCILE_RESULTS:
            self._reconcile_total.labels(controller, result)
        for family in (
            self._reconcile_errors,
            self._terminal_errors,
            self._reconcile_panics,
            self._cas_conflicts,
        ):
            family.labels(controller)

    def reconcile_finished(
        self, controller: str, result: str, seconds: float, trace_id: str | None = None
    ) -> None:
        """One reconcile ended. ``trace_id`` (32 hex digits, the reconcile span's) becomes
        the observation's exemplar: a slow bucket in Grafana links to the trace that
        filled it. Exemplars travel only in OpenMetrics scrapes (Prometheus asks for it)."""
        if result not in RECONCILE_RESULTS:
            raise ValueError(
                f"unknown reconcile result {result!r}; expected one of {RECONCILE_RESULTS}"
            )
        self._reconcile_total.labels(controller, result).inc()
        if result == "error":
            self._reconcile_errors.labels(controller).inc()
        exemplar = {"trace_id": trace_id} if trace_id else None
        self._reconcile_time.labels(controller).observe(seconds, exemplar)

    def terminal_error(self, controller: str) -> None:
        """A reconcile error that will not be retried (recorded as a condition instead)."""
        self._terminal_errors.labels(controller).inc()

    def reconcile_panic(self, controller: str) -> None:
        """An unexpected exception escaped the reconciler (Python's equivalent of a panic)."""
        self._reconcile_panics.labels(controller).inc()

    def active_workers_inc(self, controller: str) -> None:
        self._active_workers.labels(controller).inc()

    def active_workers_dec(self, controller: str) -> None:
        self._active_workers.labels(controller).dec()

    def cas_conflict(self, controller: str, count: int = 1) -> None:
        self._cas_conflicts.labels(controller).inc(count)

    def provider_call_refused(self, controller: str, call: str) -> None:
        self._refused_calls.labels(controller, call).inc()

    def leader_status(self, name: str, is_leader: bool) -> None:
        self._leader.labels(name).set(1 if is_leader else 0)

    def etcd_request(self, method: str, seconds: float, error: str | None = None) -> None:
        """One etcd round trip; ``error`` is a short kind (e.g. ``Unavailable``), never a
        message, to keep label cardinality bounded."""
        self._etcd_duration.labels(method).observe(seconds)
        if error is not None:
            self._etcd_errors.labels(method, error).inc()

    def etcd_write_failing(self, failing: bool) -> None:
        self._etcd_write_failing.set(1 if failing else 0)

    def etcd_alarms(self, active: Collection[str]) -> None:
        """The alarms etcd reports now; every alarm seen before goes back to 0."""
        self._etcd_alarms_seen.update(active)
        for alarm in self._etcd_alarms_seen:
            self._etcd_alarm.labels(alarm).set(1 if alarm in active else 0)

    def quota_usage_corrected(self, reason: str) -> None:
        self._quota_corrections.labels(reason).inc()

    def quota_usage(
        self, namespace: str, quota: str, used: Mapping[str, int], hard: Mapping[str, int]
    ) -> None:
        """A LabQuota's use and limits as its status now says (what "near the limit" alerts
        divide); a resource no longer limited loses its series."""
        with self._quota_lock:
            previous = self._quota_resources.get((namespace, quota), set())
            current = set(hard)
            for resource in previous - current:
                self._quota_used.remove(namespace, quota, resource)
                self._quota_hard.remove(namespace, quota, resource)
            for resource, limit in hard.items():
                self._quota_hard.labels(namespace, quota, resource).set(limit)
                self._quota_used.labels(namespace, quota, resource).set(used.get(resource, 0))
            self._quota_resources[(namespace, quota)] = current

    def quota_deleted(self, namespace: str, quota: str) -> None:
        """The LabQuota is gone: its series go too (a stale limit would keep alerting)."""
        with self._quota_lock:
            for resource in self._quota_resources.pop((namespace, quota), set()):
                self._quota_used.remove(namespace, quota, resource)
                self._quota_hard.remove(namespace, quota, resource)

    def event_recorded(self, type: str) -> None:
        self._events_written.labels(type, "recorded").inc()

    def event_aggregated(self, type: str) -> None:
        self._events_written.labels(type, "aggregated").inc()

    def event_dropped(self, reason: str) -> None:
        self._events_dropped.labels(reason).inc()

    def event_write_failed(self) -> None:
        self._event_write_failures.inc()

    def watch_restart(self, resource: str, reason: str) -> None:
        self._watch_restarts.labels(resource, reason).inc()

    def relist(self, resource: str, reason: str) -> None:
        self._relists.labels(resource, reason).inc()

    def cache_size(self, resource: str, n: int) -> None:
        self._cache_objects.labels(resource).set(n)

    def invalid_object(self, resource: str, reason: str) -> None:
        self._invalid_objects.labels(resource, reason).inc()

    def informer_event(self, resource: str) -> None:
        """The watch delivered something (event or progress notification): it is alive."""
        self._last_event.record(resource)


class WorkqueueMetrics:
    """client-go workqueue metrics labelled as controller-runtime labels them.

    ``name`` and ``controller`` both carry the queue's name (a controller's queue is named
    after it), and ``workqueue_depth`` adds ``priority``: empty for a plain queue, ``high`` /
    ``low`` for a priority queue (``new_depth_metric_with_priority``).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        _without_created_series()
        r = registry
        labels = ["name", "controller"]
        # "priority" is "high"/"low" for a priority queue, empty for a FIFO one.
        self._depth = Gauge(
            "workqueue_depth",
            "Current depth of workqueue by workqueue and priority",
            [*labels, "priority"],
            registry=r,
        )
        self._adds = Counter(
            "workqueue_adds_total",
            "Total number of adds handled by workqueue",
            labels,
            registry=r,
        )
        self._retries = Counter(
            "workqueue_retries_total",
            "Total number of retries handled by workqueue",
            labels,
            registry=r,
        )
        self._queue_duration = Histogram(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested",
            labels,
            buckets=WORKQUEUE_DURATION_BUCKETS,
            registry=r,
        )
        self._work_duration = Histogram(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes.",
            labels,
            buckets=WORKQUEUE_DURATION_BUCKETS,
            registry=r,
        )
        self._unfinished = Gauge(
            "workqueue_unfinished_work_seconds",
            "How many seconds of work has been done that is in progress and hasn't been "
            "observed by work_duration. Large values indicate stuck threads. One can "
            "deduce the number of stuck threads by observing the rate at which this "
            "increases.",
            labels,
            registry=r,
        )
        self._longest = Gauge(
            "workqueue_longest_running_processor_seconds",
            "How many seconds has the longest running processor for workqueue been running.",
            labels,
            registry=r,
        )

    # The factory protocol of controller.runtime.workqueue (client-go's MetricsProvider):
    # the queue asks once per queue name and keeps the labelled child.

    def new_depth_metric(self, name: str, /) -> Gauge:
        return self._depth.labels(name, name, "")

    def new_depth_metric_with_priority(self, name: str, priority: str, /) -> Gauge:
        return self._depth.labels(name, name, priority)

    def new_adds_metric(self, name: str, /) -> Counter:
        return self._adds.labels(name, name)

    def new_latency_metric(self, name: str, /) -> Histogram:
        return self._queue_duration.labels(name, name)

    def new_work_duration_metric(self, name: str, /) -> Histogram:
        return self._work_duration.labels(name, name)

    def new_unfinished_work_seconds_metric(self, name: str, /) -> Gauge:
        return self._unfinished.labels(name, name)

    def new_longest_running_processor_seconds_metric(self, name: str, /) -> Gauge:
        return self._longest.labels(name, name)

    def new_retries_metric(self, name: str, /) -> Counter:
        return self._retries.labels(name, name)

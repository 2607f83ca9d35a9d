"""Push the Prometheus registry's numbers over OTLP too (``OTEL_METRICS_EXPORTER=otlp``).

One source of truth: the Prometheus registry. Every interval its samples are converted
to OTLP and exported, under the same names and labels: counter, histogram and summary
series (``*_total``, ``*_bucket{le}``, ``*_count``, ``*_sum``) become cumulative
monotonic sums, everything else a gauge. Histograms therefore arrive the way Prometheus
itself stores them (cumulative ``le`` buckets), not as OTLP histogram points, because
Prometheus histograms carry no min/max; ``histogram_quantile`` works on them unchanged.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ConsoleMetricExporter,
    Gauge,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import CollectorRegistry, Counter

from controller.observability.logging import get_logger
from controller.observability.otlp_env import (
    DEFAULT_EXPORT_INTERVAL_SECONDS,
    GRPC,
    METRIC_EXPORTERS,
    export_interval_seconds,
    exporter_names,
    otlp_protocol,
)
from controller.observability.resource import build_resource

_log = get_logger(__name__)

_SCOPE = InstrumentationScope("controller.observability.prometheus_bridge")
_CUMULATIVE_SUFFIXES = ("_total", "_bucket", "_count", "_sum")
_CUMULATIVE_FAMILY_TYPES = frozenset({"counter", "histogram", "summary"})


# The exporters log every failed attempt themselves (at ERROR); the bridge reports a failing
# streak once instead, quoting the exporter's own words.
_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
)


class _ExporterLogCapture(logging.Filter):
    """Swallows what the exporter logs on the bridge's own thread, keeping the last line."""

    def __init__(self) -> None:
        super().__init__()
        self.thread: int | None = None
        self.last: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if threading.get_ident() != self.thread:
            return True
        self.last = record.getMessage()
        return False


@dataclass
class _Series:
    description: str
    unit: str
    monotonic: bool
    points: list[NumberDataPoint] = field(default_factory=list)


def registry_to_metrics_data(
    registry: CollectorRegistry, resource: Resource, start_time_ns: int, now_ns: int
) -> MetricsData:
    """Snapshot of ``registry`` as OTLP metrics (``start_time_ns``: when counting began)."""
    series: dict[str, _Series] = {}
    for family in registry.collect():
        cumulative_family = family.type in _CUMULATIVE_FAMILY_TYPES
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            monotonic = cumulative_family and sample.name.endswith(_CUMULATIVE_SUFFIXES)
            entry = series.setdefault(
                sample.name, _Series(family.documentation, family.unit, monotonic)
            )
            entry.points.append(
                NumberDataPoint(
                    attributes=dict(sample.labels),
                    start_time_unix_nano=start_time_ns,
                    time_unix_nano=now_ns,
                    value=float(sample.value),
                )
            )
    metrics = [
        Metric(
            name=name,
            description=entry.description,
            unit=entry.unit,
            data=(
                Sum(
                    data_points=entry.points,
                    aggregation_temporality=AggregationTemporality.CUMULATIVE,
                    is_monotonic=True,
                )
                if entry.monotonic
                else Gauge(data_points=entry.points)
            ),
        )
        for name, entry in series.items()
    ]
    return MetricsData(
        resource_metrics=[
            ResourceMetrics(
                resource=resource,
                scope_metrics=[ScopeMetrics(scope=_SCOPE, metrics=metrics, schema_url="")],
                schema_url="",
            )
        ]
    )


class OtlpMetricsBridge:
    """Exports a registry every ``interval_seconds`` from a daemon thread.

    A backend that keeps refusing (a traces-only collector answers 405) is reported once:
    a warning at the first failure, an info line when exports succeed again, and
    ``labctl_otlp_metric_export_failures_total`` counting every failed attempt in between —
    not a warning every interval.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        exporter: MetricExporter,
        *,
        resource: Resource,
        interval_seconds: float = DEFAULT_EXPORT_INTERVAL_SECONDS,
    ) -> None:
        self._registry = registry
        self._exporter = exporter
        self._resource = resource
        self._interval = interval_seconds
        self._start_time_ns = time.time_ns()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._export_lock = threading.Lock()
        self._shut_down = False
        self._failing_since: int | None = None  # failed attempts in the current streak
        self._capture = _ExporterLogCapture()
        self._failures = Counter(
            "labctl_otlp_metric_export_failures_total",
            "OTLP metric exports that failed (exporter error or backend refusal)",
            registry=registry,
        )

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="otlp-metrics-export", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            self.export_once()

    def export_once(self) -> bool:
        """Export the current values now; False (and a warning) if the export failed."""
        with self._export_lock:
            if self._shut_down:
                return False
            data = registry_to_metrics_data(
                self._registry, self._resource, self._start_time_ns, time.time_ns()
            )
            self._capture.thread, self._capture.last = threading.get_ident(), None
            loggers = [logging.getLogger(name) for name in _EXPORTER_LOGGERS]
            for logger in loggers:
                logger.addFilter(self._capture)
            try:
                result = self._exporter.export(data)
                error = (
                    None
                    if result is MetricExportResult.SUCCESS
                    else self._capture.last or "the backend refused it or did not answer"
                )
            except Exception as exc:  # an exporter bug must not kill the export thread
                error = str(exc) or type(exc).__name__
            finally:
                for logger in loggers:
                    logger.removeFilter(self._capture)
            self._report(error)
        return error is None

    def _report(self, error: str | None) -> None:
        exporter = type(self._exporter).__name__
        if error is None:
            if self._failing_since is not None:
                _log.info(
                    "otlp_metric_export_recovered",
                    message=f"exporting metrics over OTLP works again after "
                    f"{self._failing_since} failed attempts",
                    exporter=exporter,
                    failed_attempts=self._failing_since,
                )
            self._failing_since = None
            return
        self._failures.inc()
        if self._failing_since is None:
            self._failing_since = 0
            _log.warning(
                "otlp_metric_export_failing",
                message="exporting metrics over OTLP failed; retrying every interval "
                "without logging again until it works (counted in "
                "labctl_otlp_metric_export_failures_total). A traces-only backend answers "
                "405: set OTEL_METRICS_EXPORTER=prometheus to stop pushing metrics",
                exporter=exporter,
                error=error,
                retry_in=self._interval,
            )
        self._failing_since += 1

    def shutdown(self) -> None:
        """Stop the thread, export the final values once, close the exporter. Idempotent."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        if self._shut_down:
            return
        self.export_once()
        with self._export_lock:
            self._shut_down = True
        self._exporter.shutdown()


def _otlp_metric_exporter(environ: Mapping[str, str]) -> MetricExporter:
    # Lazy imports, as for traces: only the chosen transport is loaded.
    if otlp_protocol(environ, "METRICS") == GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )

        return GrpcMetricExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetricExporter,
    )

    return HttpMetricExporter()


def select_metric_exporter(environ: Mapping[str, str] | None = None) -> MetricExporter | None:
    """The push exporter ``OTEL_METRICS_EXPORTER`` asks for, if any.

    ``prometheus`` (pull) is accepted and needs nothing here: /metrics is always served.
    """
    env = os.environ if environ is None else environ
    names = exporter_names(env, "METRICS", METRIC_EXPORTERS)
    if "otlp" in names:
        return _otlp_metric_exporter(env)
    if "console" in names:
        return ConsoleMetricExporter()
    return None


def start_otlp_metrics_export(
    registry: CollectorRegistry,
    *,
    service_name: str | None = None,
    exporter: MetricExporter | None = None,
) -> OtlpMetricsBridge | None:
    """Start pushing ``registry`` when configured (or ``exporter`` given); else None.

    Call ``shutdown()`` on the result at exit so the last values are sent.
    """
    chosen = exporter if exporter is not None else select_metric_exporter()
    if chosen is None:
        return None
    interval = export_interval_seconds(os.environ)
    bridge = OtlpMetricsBridge(
        registry, chosen, resource=build_resource(service_name), interval_seconds=interval
    )
    bridge.start()
    _log.info(
        "exporting metrics periodically (Prometheus registry bridged to OpenTelemetry)",
        exporter=type(chosen).__name__,
        interval_seconds=interval,
    )
    return bridge

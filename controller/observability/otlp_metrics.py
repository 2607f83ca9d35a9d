"""Push the Prometheus registry's numbers over OTLP too (``OTEL_METRICS_EXPORTER=otlp``).

One source of truth: the Prometheus registry. Every interval its samples are converted
to OTLP and exported, under the same names and labels: counter, histogram and summary
series (``*_total``, ``*_bucket{le}``, ``*_count``, ``*_sum``) become cumulative
monotonic sums, everything else a gauge. Histograms therefore arrive the way Prometheus
itself stores them (cumulative ``le`` buckets), not as OTLP histogram points, because
Prometheus histograms carry no min/max; ``histogram_quantile`` works on them unchanged.
"""

from __future__ import annotations

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
from prometheus_client import CollectorRegistry

from controller.observability.logging import get_logger
from controller.observability.otlp_env import GRPC, exporter_names, otlp_protocol
from controller.observability.resource import build_resource

_log = get_logger(__name__)

SUPPORTED_METRICS_EXPORTERS = ("otlp", "console", "prometheus")
DEFAULT_EXPORT_INTERVAL_SECONDS = 60.0
_SCOPE = InstrumentationScope("controller.observability.prometheus_bridge")
_CUMULATIVE_SUFFIXES = ("_total", "_bucket", "_count", "_sum")
_CUMULATIVE_FAMILY_TYPES = frozenset({"counter", "histogram", "summary"})


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
    """Exports a registry every ``interval_seconds`` from a daemon thread."""

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
            try:
                result = self._exporter.export(data)
            except Exception as exc:  # an exporter bug must not kill the export thread
                _log.warning(
                    "exporting metrics over OTLP failed; retrying at the next interval",
                    exporter=type(self._exporter).__name__,
                    error=str(exc),
                )
                return False
        if result is not MetricExportResult.SUCCESS:
            _log.warning(
                "the metrics backend rejected or did not receive an export; "
                "retrying at the next interval",
                exporter=type(self._exporter).__name__,
            )
            return False
        return True

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
    names = exporter_names(env, "METRICS", SUPPORTED_METRICS_EXPORTERS)
    if "otlp" in names:
        return _otlp_metric_exporter(env)
    if "console" in names:
        return ConsoleMetricExporter()
    return None


def _export_interval_seconds(environ: Mapping[str, str]) -> float:
    raw = environ.get("OTEL_METRIC_EXPORT_INTERVAL", "").strip()
    if not raw:
        return DEFAULT_EXPORT_INTERVAL_SECONDS
    try:
        millis = float(raw)
    except ValueError:
        raise ValueError(
            f"OTEL_METRIC_EXPORT_INTERVAL={raw!r} is not a number of milliseconds"
        ) from None
    if millis <= 0:
        raise ValueError(f"OTEL_METRIC_EXPORT_INTERVAL={raw!r} must be positive")
    return millis / 1000.0


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
    interval = _export_interval_seconds(os.environ)
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

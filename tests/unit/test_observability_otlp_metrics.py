"""The Prometheus → OTLP metrics bridge: conversion, exporter choice, export lifecycle."""

from __future__ import annotations

import io
import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import structlog
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    Gauge,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry

from controller.observability import (
    ControllerMetrics,
    OtlpMetricsBridge,
    WorkqueueMetrics,
    configure_logging,
    registry_to_metrics_data,
    select_metric_exporter,
    start_otlp_metrics_export,
)


class RecordingExporter(MetricExporter):
    def __init__(self, result: MetricExportResult = MetricExportResult.SUCCESS) -> None:
        super().__init__()
        self.result = result
        self.exported: list[MetricsData] = []
        self.exported_event = threading.Event()
        self.shutdowns = 0

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self.exported.append(metrics_data)
        self.exported_event.set()
        return self.result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.shutdowns += 1


class BrokenExporter(RecordingExporter):
    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        raise ConnectionError("collector unreachable")


@pytest.fixture(autouse=True)
def clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in [name for name in os.environ if name.startswith("OTEL_")]:
        monkeypatch.delenv(var)
    yield


def metrics_by_name(data: MetricsData) -> dict[str, Metric]:
    (resource_metrics,) = data.resource_metrics
    (scope_metrics,) = resource_metrics.scope_metrics
    return {metric.name: metric for metric in scope_metrics.metrics}


def point_values(metric: Metric) -> dict[frozenset[tuple[str, Any]], float]:
    points: Sequence[Any] = metric.data.data_points
    return {frozenset((p.attributes or {}).items()): p.value for p in points}


def test_conversion_keeps_names_labels_values_and_kinds() -> None:
    registry = CollectorRegistry()
    cm, wq = ControllerMetrics(registry), WorkqueueMetrics(registry)
    cm.reconcile_finished("labworker", "error", 0.2)
    wq.new_depth_metric_with_priority("labworker", "high").inc()
    resource = Resource({"service.name": "unit"})

    data = registry_to_metrics_data(registry, resource, start_time_ns=1, now_ns=2)

    assert data.resource_metrics[0].resource is resource
    metrics = metrics_by_name(data)
    total = metrics["controller_runtime_reconcile_total"]
    assert isinstance(total.data, Sum) and total.data.is_monotonic
    assert point_values(total) == {
        frozenset({("controller", "labworker"), ("result", "error")}): 1.0
    }
    depth = metrics["workqueue_depth"]
    assert isinstance(depth.data, Gauge)
    assert point_values(depth) == {
        frozenset({("name", "labworker"), ("controller", "labworker"), ("priority", "high")}): 1.0
    }

    buckets = metrics["controller_runtime_reconcile_time_seconds_bucket"]
    assert isinstance(buckets.data, Sum) and buckets.data.is_monotonic
    by_le = {dict(attrs)["le"]: v for attrs, v in point_values(buckets).items()}
    assert (by_le["0.15"], by_le["0.25"], by_le["+Inf"]) == (0.0, 1.0, 1.0)
    assert point_values(metrics["controller_runtime_reconcile_time_seconds_count"]) == {
        frozenset({("controller", "labworker")}): 1.0
    }
    point = total.data.data_points[0]
    assert (point.start_time_unix_nano, point.time_unix_nano) == (1, 2)
    assert not any(name.endswith("_created") for name in metrics)


def test_no_exporter_unless_configured() -> None:
    assert select_metric_exporter() is None
    assert start_otlp_metrics_export(CollectorRegistry()) is None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"OTEL_METRICS_EXPORTER": "otlp"}, HttpMetricExporter),
        # An endpoint alone (set for traces) does not turn on a metrics push: pull is the
        # default, since traces-only backends answer a metrics export with 405.
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, type(None)),
        (
            {"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            GrpcMetricExporter,
        ),
        (
            {"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc"},
            GrpcMetricExporter,
        ),
        ({"OTEL_METRICS_EXPORTER": "console"}, ConsoleMetricExporter),
        ({"OTEL_METRICS_EXPORTER": "prometheus"}, type(None)),
        (
            {"OTEL_METRICS_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
            type(None),
        ),
    ],
)
def test_exporter_choice_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: type
) -> None:
    for key, val in env.items():
        monkeypatch.setenv(key, val)
    assert type(select_metric_exporter()) is expected


def test_unsupported_exporter_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "statsd")
    with pytest.raises(ValueError, match="OTEL_METRICS_EXPORTER"):
        select_metric_exporter()


def test_bad_interval_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "soon")
    with pytest.raises(ValueError, match="OTEL_METRIC_EXPORT_INTERVAL"):
        start_otlp_metrics_export(CollectorRegistry(), exporter=RecordingExporter())


def test_periodic_export_then_final_export_on_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "10")
    registry = CollectorRegistry()
    ControllerMetrics(registry).cas_conflict("labworker")
    exporter = RecordingExporter()

    bridge = start_otlp_metrics_export(registry, service_name="unit", exporter=exporter)
    assert bridge is not None
    try:
        assert exporter.exported_event.wait(timeout=10), "no periodic export happened"
    finally:
        bridge.shutdown()
    exported_before_second_shutdown = len(exporter.exported)
    bridge.shutdown()

    assert exporter.shutdowns == 1
    assert len(exporter.exported) == exported_before_second_shutdown
    last = metrics_by_name(exporter.exported[-1])
    assert point_values(last["labctl_cas_conflicts_total"]) == {
        frozenset({("controller", "labworker")}): 1.0
    }
    resource = exporter.exported[-1].resource_metrics[0].resource
    assert resource.attributes["service.name"] == "unit"
    assert bridge.export_once() is False  # closed


@pytest.mark.parametrize(
    "exporter", [RecordingExporter(MetricExportResult.FAILURE), BrokenExporter()]
)
def test_failed_exports_report_false_and_keep_the_bridge_usable(
    exporter: RecordingExporter,
) -> None:
    bridge = OtlpMetricsBridge(CollectorRegistry(), exporter, resource=Resource({}))
    assert bridge.export_once() is False
    assert bridge.export_once() is False
    bridge.shutdown()
    assert exporter.shutdowns == 1


class SwitchableExporter(RecordingExporter):
    """Fails like a traces-only OTLP backend (the exporter logs the 405) until switched."""

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        if self.result is MetricExportResult.FAILURE:
            logging.getLogger("opentelemetry.exporter.otlp.proto.http.metric_exporter").error(
                "Failed to export metrics batch code: 405, reason: Method Not Allowed"
            )
        return super().export(metrics_data, timeout_millis)


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out = io.StringIO()
    configure_logging("INFO", "json", out)
    yield out
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()


def test_a_failing_export_is_reported_once_counted_always_and_its_recovery_noted(
    json_log: io.StringIO,
) -> None:
    registry = CollectorRegistry()
    exporter = SwitchableExporter(MetricExportResult.FAILURE)
    bridge = OtlpMetricsBridge(registry, exporter, resource=Resource({}))

    for _ in range(5):
        assert bridge.export_once() is False
    exporter.result = MetricExportResult.SUCCESS
    assert bridge.export_once() is True
    assert bridge.export_once() is True

    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    # One warning for the failing streak, one line for the recovery; the exporter's own
    # per-attempt errors are muted (their words are quoted in the warning).
    assert [(line["level"], line["event"]) for line in lines] == [
        ("warning", "otlp_metric_export_failing"),
        ("info", "otlp_metric_export_recovered"),
    ]
    assert "405" in lines[0]["error"] and "OTEL_METRICS_EXPORTER" in lines[0]["message"]
    assert lines[1]["failed_attempts"] == 5
    assert registry.get_sample_value("labctl_otlp_metric_export_failures_total") == 5
    bridge.shutdown()


def test_exporter_variables_are_checked_before_start() -> None:
    from controller.observability.otlp_env import check_exporter_environment

    check_exporter_environment({})
    check_exporter_environment({"OTEL_METRICS_EXPORTER": "prometheus,otlp"})
    for env, variable in [
        ({"OTEL_METRICS_EXPORTER": "statsd"}, "OTEL_METRICS_EXPORTER"),
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "udp"},
         "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"OTEL_METRICS_EXPORTER": "otlp", "OTEL_METRIC_EXPORT_INTERVAL": "soon"},
         "OTEL_METRIC_EXPORT_INTERVAL"),
    ]:  # fmt: skip
        with pytest.raises(ValueError, match=variable) as raised:
            check_exporter_environment(env)
        assert "\n" not in str(raised.value)

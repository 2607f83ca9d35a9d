"""Logging, tracing, metrics and the health/metrics HTTP endpoints, as plain primitives.

Nothing here knows about etcd or LabWorkers; the controller wires these together.
"""

from controller.observability.health import (
    CheckFn,
    CheckResult,
    HealthRegistry,
    HealthReport,
    ProgressCheck,
)
from controller.observability.logging import configure_logging, get_logger
from controller.observability.metrics import (
    PROMETHEUS_TEXT_CONTENT_TYPE,
    RECONCILE_RESULTS,
    ControllerMetrics,
    ReconcileResult,
    WorkqueueMetrics,
    new_registry,
    render_prometheus,
)
from controller.observability.otlp_metrics import (
    OtlpMetricsBridge,
    registry_to_metrics_data,
    select_metric_exporter,
    start_otlp_metrics_export,
)
from controller.observability.processors import (
    REDACTED,
    add_trace_context,
    is_secret_key,
    redact_secrets,
    redact_text,
)
from controller.observability.resource import DEFAULT_SERVICE_NAME, build_resource
from controller.observability.server import (
    Handler,
    HttpServer,
    Request,
    Response,
    health_routes,
    metrics_routes,
    start_http_server,
    start_observability_servers,
)
from controller.observability.tracing import (
    configure_tracing,
    get_tracer,
    select_span_exporters,
    shutdown_tracing,
)

__all__ = [
    "DEFAULT_SERVICE_NAME",
    "PROMETHEUS_TEXT_CONTENT_TYPE",
    "RECONCILE_RESULTS",
    "REDACTED",
    "CheckFn",
    "CheckResult",
    "ControllerMetrics",
    "Handler",
    "HealthRegistry",
    "HealthReport",
    "HttpServer",
    "OtlpMetricsBridge",
    "ProgressCheck",
    "ReconcileResult",
    "Request",
    "Response",
    "WorkqueueMetrics",
    "add_trace_context",
    "build_resource",
    "configure_logging",
    "configure_tracing",
    "get_logger",
    "get_tracer",
    "health_routes",
    "is_secret_key",
    "metrics_routes",
    "new_registry",
    "redact_secrets",
    "redact_text",
    "registry_to_metrics_data",
    "render_prometheus",
    "select_metric_exporter",
    "select_span_exporters",
    "shutdown_tracing",
    "start_http_server",
    "start_observability_servers",
    "start_otlp_metrics_export",
]

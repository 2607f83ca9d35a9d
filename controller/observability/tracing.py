"""OpenTelemetry tracing set up from the standard ``OTEL_*`` environment variables."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from controller.observability.logging import get_logger
from controller.observability.otlp_env import (
    GRPC,
    TRACE_EXPORTERS,
    exporter_names,
    otlp_protocol,
)
from controller.observability.resource import build_resource

_log = get_logger(__name__)


SUPPORTED_TRACE_EXPORTERS = TRACE_EXPORTERS
"""What OTEL_TRACES_EXPORTER accepts besides none (labctl checks it too)."""

_lock = threading.Lock()
_active: TracerProvider | None = None


def _otlp_span_exporter(environ: Mapping[str, str]) -> SpanExporter:
    # Endpoint, headers, timeout and TLS come from the OTEL_EXPORTER_OTLP_* variables,
    # which the exporters read themselves. The gRPC stack is imported only when chosen:
    # it is heavy and most deployments use http/protobuf.
    if otlp_protocol(environ, "TRACES") == GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    return HttpSpanExporter()


def select_span_exporters(environ: Mapping[str, str] | None = None) -> list[SpanExporter]:
    """The exporters ``OTEL_TRACES_EXPORTER`` asks for (none when tracing is off)."""
    env = os.environ if environ is None else environ
    exporters: list[SpanExporter] = []
    for name in exporter_names(env, "TRACES", TRACE_EXPORTERS):
        exporters.append(_otlp_span_exporter(env) if name == "otlp" else ConsoleSpanExporter())
    return exporters


def configure_tracing(
    service_name: str | None = None,
    exporter: SpanExporter | None = None,
    *,
    install_global: bool = True,
) -> TracerProvider:
    """Build the process's TracerProvider; export through ``exporter`` or per environment.

    With no exporter selected the provider still creates real spans (so trace ids appear
    in logs and propagate) but sends them nowhere. ``install_global`` makes it the
    provider behind ``get_tracer``; OTel allows that only once per process, so a second
    global install is refused loudly rather than silently dropping every later span.
    Calling again with ``install_global=False`` (tests) replaces the previous setup.
    """
    global _active
    with _lock:
        if install_global and not isinstance(
            trace.get_tracer_provider(), trace.ProxyTracerProvider
        ):
            raise RuntimeError(
                "a global OpenTelemetry tracer provider is already installed; "
                "configure_tracing(install_global=True) may run only once per process"
            )
        exporters = [exporter] if exporter is not None else select_span_exporters()
        provider = TracerProvider(resource=build_resource(service_name))
        for span_exporter in exporters:
            provider.add_span_processor(BatchSpanProcessor(span_exporter))
        if _active is not None:
            _active.shutdown()
        _active = provider
        if install_global:
            trace.set_tracer_provider(provider)
    _log.info(
        "tracing configured",
        service_name=provider.resource.attributes.get("service.name"),
        span_exporters=[type(e).__name__ for e in exporters] or "none (spans are not exported)",
    )
    return provider


def shutdown_tracing() -> None:
    """Flush pending spans and stop exporting. Safe to call more than once."""
    global _active
    with _lock:
        provider, _active = _active, None
    if provider is not None:
        provider.shutdown()


def get_tracer(name: str) -> trace.Tracer:
    """A tracer from the global provider; safe at import time (it binds lazily)."""
    return trace.get_tracer(name)

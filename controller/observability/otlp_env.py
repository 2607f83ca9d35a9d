"""Reading the standard ``OTEL_*`` exporter variables the same way for traces and metrics.

Defaults differ by signal on purpose (docs/architecture.md, Observability):

- traces: ``otlp`` when an OTLP endpoint is configured, else ``none`` — a controller
  started without a backend must not retry exports to a localhost collector that does not
  exist;
- metrics: ``prometheus`` (pull: /metrics is always served), whatever the endpoint.
  Pushing metrics over OTLP is opt-in (``OTEL_METRICS_EXPORTER=otlp``) because many OTLP
  backends (Jaeger, Tempo) store traces only and answer a metrics export with 405: an
  endpoint set for traces must not turn on a metrics push that fails every interval.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

Signal = Literal["TRACES", "METRICS"]

GRPC = "grpc"
HTTP_PROTOBUF = "http/protobuf"
_PROTOCOLS = (GRPC, HTTP_PROTOBUF)

TRACE_EXPORTERS = ("otlp", "console")
METRIC_EXPORTERS = ("otlp", "prometheus", "console")
DEFAULT_EXPORT_INTERVAL_SECONDS = 60.0


def otlp_protocol(environ: Mapping[str, str], signal: Signal) -> str:
    """``OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL``, else ``OTEL_EXPORTER_OTLP_PROTOCOL``."""
    for var in (f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = environ.get(var, "").strip().lower()
        if value:
            if value not in _PROTOCOLS:
                raise ValueError(
                    f"{var}={value!r} is not supported: use one of {', '.join(_PROTOCOLS)}"
                )
            return value
    return HTTP_PROTOBUF


def otlp_endpoint_configured(environ: Mapping[str, str], signal: Signal) -> bool:
    return bool(
        environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT", "").strip()
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    )


def exporter_names(
    environ: Mapping[str, str], signal: Signal, supported: tuple[str, ...]
) -> list[str]:
    """Names from ``OTEL_<SIGNAL>_EXPORTER`` (comma-separated), validated; the signal's
    default (module docstring) when unset; ``[]`` for ``none``."""
    var = f"OTEL_{signal}_EXPORTER"
    raw = environ.get(var, "").strip().lower()
    if not raw:
        if signal == "METRICS":
            return ["prometheus"]
        return ["otlp"] if otlp_endpoint_configured(environ, signal) else []
    names = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = [name for name in names if name not in (*supported, "none")]
    if unknown:
        raise ValueError(
            f"{var}={raw!r}: unsupported exporter(s) {', '.join(unknown)}; "
            f"use one or more of {', '.join(supported)}, or none"
        )
    return [] if "none" in names else names


def export_interval_seconds(environ: Mapping[str, str]) -> float:
    """``OTEL_METRIC_EXPORT_INTERVAL`` (milliseconds, as the OTel spec says) in seconds."""
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


def check_exporter_environment(environ: Mapping[str, str]) -> None:
    """Every exporter variable `labctl run` reads, checked before anything starts: a typo
    is one ValueError line naming the variable, not a traceback minutes later."""
    signals: tuple[tuple[Signal, tuple[str, ...]], ...] = (
        ("TRACES", TRACE_EXPORTERS),
        ("METRICS", METRIC_EXPORTERS),
    )
    for signal, supported in signals:
        if "otlp" in exporter_names(environ, signal, supported):
            otlp_protocol(environ, signal)
    if "otlp" in exporter_names(environ, "METRICS", METRIC_EXPORTERS):
        export_interval_seconds(environ)

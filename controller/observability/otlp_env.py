"""Reading the standard ``OTEL_*`` exporter variables the same way for traces and metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

Signal = Literal["TRACES", "METRICS"]

GRPC = "grpc"
HTTP_PROTOBUF = "http/protobuf"
_PROTOCOLS = (GRPC, HTTP_PROTOBUF)


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
    """Names from ``OTEL_<SIGNAL>_EXPORTER`` (comma-separated), validated.

    Unset means ``otlp`` when an OTLP endpoint is configured and ``none`` otherwise: a
    controller started without any telemetry backend must not spend time retrying
    exports to a localhost collector that does not exist.
    """
    var = f"OTEL_{signal}_EXPORTER"
    raw = environ.get(var, "").strip().lower()
    if not raw:
        return ["otlp"] if otlp_endpoint_configured(environ, signal) else []
    names = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = [name for name in names if name not in (*supported, "none")]
    if unknown:
        raise ValueError(
            f"{var}={raw!r}: unsupported exporter(s) {', '.join(unknown)}; "
            f"use one or more of {', '.join(supported)}, or none"
        )
    return [] if "none" in names else names

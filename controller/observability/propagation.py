"""The writer's trace context, carried in the object it wrote.

A watch event has no request headers, so the only way a reconcile can name the trace of the
write that caused it is for the writer to record its W3C `traceparent` in the object itself.
`labctl` does so in the annotation below on every write it makes; the controller turns it
into a span *link* on the reconcile it triggers (a link, not a parent: one reconcile may
answer several writes, and the user's trace must not grow by every retry). The annotation is
metadata, so it never bumps generation. See docs/architecture.md, Observability.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import Link, SpanContext, TraceFlags

TRACEPARENT_ANNOTATION = "lab.neuroglia.io/traceparent"
"""Holds the W3C traceparent (`00-<trace id>-<span id>-<flags>`) of the last write."""


def current_traceparent() -> str | None:
    """The current span's context as a W3C traceparent, or None outside a sampled span."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def parse_traceparent(value: str | None) -> SpanContext | None:
    """A remote SpanContext from a traceparent; None for anything malformed (it is user
    input: a bad annotation must never fail a reconcile)."""
    if not value or len(value) > 64:
        return None
    parts = value.strip().split("-")
    if len(parts) != 4 or parts[0] != "00":
        return None
    _version, trace_hex, span_hex, flags_hex = parts
    if len(trace_hex) != 32 or len(span_hex) != 16 or len(flags_hex) != 2:
        return None
    try:
        trace_id, span_id, flags = int(trace_hex, 16), int(span_hex, 16), int(flags_hex, 16)
    except ValueError:
        return None
    ctx = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))
    return ctx if ctx.is_valid else None


def link_to_writer(value: str | None) -> Link | None:
    """The span link a reconcile carries to the write that caused it, if recorded."""
    ctx = parse_traceparent(value)
    return Link(ctx) if ctx is not None else None


__all__ = [
    "TRACEPARENT_ANNOTATION",
    "current_traceparent",
    "link_to_writer",
    "parse_traceparent",
]

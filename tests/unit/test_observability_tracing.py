"""configure_tracing: exporter choice from OTEL_* variables, resource, flush on shutdown."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from controller.observability import (
    configure_tracing,
    get_tracer,
    select_span_exporters,
    shutdown_tracing,
)
from controller.observability import tracing as tracing_module


@pytest.fixture(autouse=True)
def clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in [name for name in os.environ if name.startswith("OTEL_")]:
        monkeypatch.delenv(var)
    yield
    shutdown_tracing()


def types_of(exporters: Sequence[object]) -> list[type]:
    return [type(e) for e in exporters]


def test_nothing_is_exported_without_configuration() -> None:
    assert select_span_exporters() == []


@pytest.mark.parametrize(
    "var", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
)
def test_an_otlp_endpoint_turns_on_otlp_over_http_by_default(
    monkeypatch: pytest.MonkeyPatch, var: str
) -> None:
    monkeypatch.setenv(var, "http://collector:4318")
    assert types_of(select_span_exporters()) == [HttpSpanExporter]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"OTEL_TRACES_EXPORTER": "otlp"}, [HttpSpanExporter]),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            [GrpcSpanExporter],
        ),
        (
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            },
            [HttpSpanExporter],
        ),
        ({"OTEL_TRACES_EXPORTER": "console"}, [ConsoleSpanExporter]),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, [HttpSpanExporter, ConsoleSpanExporter]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, []),
    ],
)
def test_exporter_choice_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: list[type]
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert types_of(select_span_exporters()) == expected


@pytest.mark.parametrize(
    ("var", "value"),
    [("OTEL_TRACES_EXPORTER", "zipkin"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
)
def test_unsupported_values_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv(var, value)
    with pytest.raises(ValueError, match=var):
        select_span_exporters()


def test_spans_reach_an_explicit_exporter_with_the_service_name() -> None:
    exporter = InMemorySpanExporter()
    provider = configure_tracing("unit-svc", exporter, install_global=False)

    with provider.get_tracer("t").start_as_current_span("reconcile"):
        pass
    assert provider.force_flush()

    (span,) = exporter.get_finished_spans()
    assert span.name == "reconcile"
    assert span.resource.attributes["service.name"] == "unit-svc"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "lab-resource-controller"),
        ({"OTEL_SERVICE_NAME": "from-env"}, "from-env"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=attr,team=labs"}, "attr"),
    ],
)
def test_service_name_defaults_and_environment(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    provider = configure_tracing(exporter=InMemorySpanExporter(), install_global=False)
    assert provider.resource.attributes["service.name"] == expected


def test_configuration_from_environment_exports_through_the_chosen_exporter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # ConsoleSpanExporter binds sys.stdout at import time; give it a buffer instead.
    out = io.StringIO()
    monkeypatch.setattr(tracing_module, "ConsoleSpanExporter", lambda: ConsoleSpanExporter(out=out))
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    provider = configure_tracing(install_global=False)
    with provider.get_tracer("t").start_as_current_span("span-from-env-config"):
        pass
    shutdown_tracing()  # flushes the batch processor
    assert "span-from-env-config" in out.getvalue()


def test_shutdown_flushes_pending_spans_and_is_idempotent() -> None:
    exporter = InMemorySpanExporter()
    provider = configure_tracing(exporter=exporter, install_global=False)
    with provider.get_tracer("t").start_as_current_span("last-words"):
        pass

    shutdown_tracing()
    shutdown_tracing()

    assert [s.name for s in exporter.get_finished_spans()] == ["last-words"]


def test_reconfiguring_shuts_the_previous_provider_down() -> None:
    first_exporter = InMemorySpanExporter()
    first = configure_tracing(exporter=first_exporter, install_global=False)
    with first.get_tracer("t").start_as_current_span("before"):
        pass

    configure_tracing(exporter=InMemorySpanExporter(), install_global=False)

    assert [s.name for s in first_exporter.get_finished_spans()] == ["before"]


def test_a_second_global_install_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: TracerProvider())
    with pytest.raises(RuntimeError, match="only once"):
        configure_tracing(exporter=InMemorySpanExporter())


def test_get_tracer_is_usable_before_configuration() -> None:
    with get_tracer("early").start_as_current_span("noop") as span:
        assert span is not None

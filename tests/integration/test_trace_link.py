"""apply → watch → reconcile in one trace: the reconcile span links to the writer's span.

Real etcd, the whole app (every kind's controllers), an in-memory span exporter behind the
runtime's tracer. docs/architecture.md, Observability.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import controller.runtime.controller as runtime_controller
from controller.app import App, repositories
from controller.labworker.kind import LABWORKER
from controller.labworker.model import LabWorker
from controller.observability import configure_logging
from controller.observability.propagation import TRACEPARENT_ANNOTATION, current_traceparent
from controller.storage import connect
from tests.etcdproc import EtcdProcess, wait_until


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(runtime_controller, "tracer", provider.get_tracer("controller.runtime"))
    yield provider, exporter
    provider.shutdown()


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


def worker(name: str, annotations: dict[str, str]) -> LabWorker:
    return LabWorker.model_validate(
        {
            "metadata": {"name": name, "namespace": "default", "annotations": annotations},
            "spec": {"labTrack": "ccna", "instance": {"type": "m5zn.metal"}},
        }
    )


def reconciles_of(exporter: InMemorySpanExporter, key: str) -> list[ReadableSpan]:
    return [
        s
        for s in exporter.get_finished_spans()
        if s.name == "reconcile LabWorker"
        and s.attributes is not None
        and s.attributes.get("labctl.key") == key
        and s.attributes.get("labctl.controller") == "labworker"
    ]


def test_a_reconcile_links_to_the_trace_of_the_write_that_caused_it(
    etcd: EtcdProcess, app: App, spans: tuple[TracerProvider, InMemorySpanExporter], json_log: Any
) -> None:
    provider, exporter = spans
    runner = threading.Thread(target=app.manager.run, daemon=True)
    runner.start()
    assert app.manager.started.wait(30)
    client = connect(etcd.endpoint)
    try:
        cli = repositories(client, app.settings.etcd.prefix).for_kind(LABWORKER)
        with provider.get_tracer("labctl").start_as_current_span("labctl apply") as apply_span:
            traceparent = current_traceparent()
            assert traceparent is not None
            cli.create(worker("linked", {TRACEPARENT_ANNOTATION: traceparent}))
        cli.create(worker("malformed", {TRACEPARENT_ANNOTATION: "00-not-a-trace-context-01"}))
        cli.create(worker("plain", {}))

        wait_until(
            lambda: all(
                reconciles_of(exporter, f"default/{n}") for n in ("linked", "malformed", "plain")
            ),
            timeout=30,
            what="a reconcile of each worker",
        )
    finally:
        client.close()
        app.manager.stop()
        runner.join(30)

    writer = apply_span.get_span_context()
    first = reconciles_of(exporter, "default/linked")[0]
    (link,) = first.links
    assert (link.context.trace_id, link.context.span_id) == (writer.trace_id, writer.span_id)
    assert first.context.trace_id != writer.trace_id  # a link, not a parent
    assert first.attributes is not None
    assert first.attributes["labctl.trigger.revision"] > 0
    assert first.attributes["labctl.attempt"] == 1
    print(  # the report's sample of a linked trace
        f"\n{apply_span.name} trace={writer.trace_id:032x} span={writer.span_id:016x}\n"
        f"{first.name} trace={first.context.trace_id:032x} "
        f"link→trace={link.context.trace_id:032x} span={link.context.span_id:016x} "
        f"attributes={dict(first.attributes)}"
    )

    for name in ("malformed", "plain"):
        reconciles = reconciles_of(exporter, f"default/{name}")
        assert all(not s.links for s in reconciles), name
        assert all(s.attributes and s.attributes["labctl.result"] != "error" for s in reconciles)

    # Logs: the phase change of the linked worker under a stable name, with its keys.
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    changed = [
        line for line in lines if line["event"] == "phase_changed" and line.get("name") == "linked"
    ]
    assert changed, "no phase_changed line for the linked worker"
    assert changed[0]["from_phase"] == "new" and changed[0]["to_phase"] == "Pending"
    assert "LabWorker default/linked" in changed[0]["message"]
    assert changed[0]["trace_id"] == f"{first.context.trace_id:032x}"

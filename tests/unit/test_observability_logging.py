"""configure_logging: one JSON pipeline for structlog and stdlib, trace ids, redaction."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from controller.observability import configure_logging, configure_tracing, get_logger
from controller.observability.tracing import shutdown_tracing

SECRET = "s3cr3t-Value-9f8e7d"
PEM = f"-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA{SECRET}\n-----END RSA PRIVATE KEY-----"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_structlog_lines_are_json_with_standard_keys_and_bound_context() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", out)

    get_logger("controller.test", worker="w-1").info("reconciled", phase="Ready")

    (line,) = json_lines(out)
    assert line["event"] == "reconciled"
    assert line["level"] == "info"
    assert line["logger"] == "controller.test"
    assert line["worker"] == "w-1"
    assert line["phase"] == "Ready"
    assert line["timestamp"].endswith("Z")
    assert list(line)[:4] == ["timestamp", "level", "logger", "event"]


def test_stdlib_records_go_through_the_same_pipeline() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", out)

    logging.getLogger("urllib3.connectionpool").warning("retrying %s (%d)", "etcd:2379", 3)

    (line,) = json_lines(out)
    assert line["event"] == "retrying etcd:2379 (3)"
    assert line["logger"] == "urllib3.connectionpool"
    assert line["level"] == "warning"
    assert "timestamp" in line


def test_level_filters_both_apis() -> None:
    out = io.StringIO()
    configure_logging("warning", "json", out)

    get_logger("a").info("hidden")
    logging.getLogger("b").info("hidden too")
    get_logger("a").warning("shown")

    assert [line["event"] for line in json_lines(out)] == ["shown"]


def test_configuring_twice_replaces_the_handler_instead_of_duplicating_lines() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("INFO", "json", first)
    configure_logging("INFO", "json", second)

    get_logger("x").info("once")

    assert first.getvalue() == ""
    assert [line["event"] for line in json_lines(second)] == ["once"]


def test_logger_created_before_configuration_follows_it() -> None:
    early = get_logger("early", component="informer")
    out = io.StringIO()
    configure_logging("INFO", "json", out)

    early.info("started")

    (line,) = json_lines(out)
    assert (line["logger"], line["component"]) == ("early", "informer")


def test_auto_format_is_json_off_a_terminal_and_console_on_one() -> None:
    piped = io.StringIO()
    configure_logging("INFO", None, piped)
    get_logger("x").info("piped")
    assert json_lines(piped)[0]["event"] == "piped"

    tty = TtyStream()
    configure_logging("INFO", "auto", tty)
    get_logger("x").info("on a terminal", phase="Ready")
    text = tty.getvalue()
    assert "on a terminal" in text
    assert "\x1b[" in text  # coloured
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_explicit_console_format_off_a_terminal_has_no_escape_codes() -> None:
    out = io.StringIO()
    configure_logging("INFO", "console", out)
    get_logger("x").info("plain", password=SECRET)
    text = out.getvalue()
    assert "plain" in text
    assert "\x1b[" not in text
    assert SECRET not in text


def test_unknown_format_and_level_are_rejected_with_the_choices() -> None:
    with pytest.raises(ValueError, match="json"):
        configure_logging("INFO", "xml", io.StringIO())
    with pytest.raises(ValueError, match="DEBUG"):
        configure_logging("LOUD", "json", io.StringIO())


def test_trace_ids_match_the_current_span_and_are_absent_outside() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", out)
    exporter = InMemorySpanExporter()
    provider: TracerProvider = configure_tracing("test", exporter, install_global=False)
    log = get_logger("traced")
    try:
        with provider.get_tracer("t").start_as_current_span("reconcile") as span:
            log.info("inside")
            logging.getLogger("etcd3").info("library inside")
        log.info("outside")
    finally:
        shutdown_tracing()

    inside, library, outside = [
        line for line in json_lines(out) if line["logger"] in ("traced", "etcd3")
    ]
    ctx = span.get_span_context()
    for line in (inside, library):
        assert line["trace_id"] == format(ctx.trace_id, "032x")
        assert line["span_id"] == format(ctx.span_id, "016x")
        assert len(line["trace_id"]) == 32 and len(line["span_id"]) == 16
    assert "trace_id" not in outside and "span_id" not in outside
    assert [s.name for s in exporter.get_finished_spans()] == ["reconcile"]


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_secrets_never_reach_the_output(fmt: str) -> None:
    out = io.StringIO()
    configure_logging("INFO", fmt, out)
    log = get_logger("secrets")

    log.info(
        "connecting",
        password=SECRET,
        licenseToken=SECRET,
        license_token=SECRET,
        Authorization=f"Bearer {SECRET}",
        config={"etcd": {"user": "root", "ETCD_PASSWORD": SECRET}, "items": [{"api_key": SECRET}]},
        tls_key=PEM,
        note=f"dsn=http://root:{SECRET}@etcd:2379",
    )
    log.info(f"login with password={SECRET} failed")
    logging.getLogger("etcd3.client").info("auth token=%s accepted", SECRET)
    try:
        raise RuntimeError(f"etcd refused credentials: password={SECRET}")
    except RuntimeError:
        log.exception("status write failed")
        logging.getLogger("requests").exception("request failed")

    text = out.getvalue()
    assert SECRET not in text
    assert "[REDACTED]" in text
    assert "root" in text  # non-secret fields survive
    assert "status write failed" in text and "RuntimeError" in text


def test_a_named_stdlib_line_keeps_its_sentence_as_message_and_its_keys() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", out)

    logging.getLogger("controller.runtime.controller").warning(
        "%s %s: reconcile failed (%s); retry %d in %.2fs",
        "LabWorker",
        "default/w1",
        "etcd unavailable",
        3,
        0.4,
        extra={"event": "reconcile_failed", "error": "etcd unavailable", "retry_in": 0.4},
    )
    logging.getLogger("controller.runtime.controller").info("an unnamed %s", "line")

    named, unnamed = json_lines(out)
    assert named["event"] == "reconcile_failed"
    assert named["message"] == (
        "LabWorker default/w1: reconcile failed (etcd unavailable); retry 3 in 0.40s"
    )
    assert (named["error"], named["retry_in"]) == ("etcd unavailable", 0.4)
    assert list(named)[:5] == ["timestamp", "level", "logger", "event", "message"]
    assert unnamed["event"] == "an unnamed line" and "message" not in unnamed


def test_on_a_terminal_the_sentence_leads_and_the_name_follows() -> None:
    out = io.StringIO()
    configure_logging("INFO", "console", out)

    logging.getLogger("x").info("LabWorker %s: Pending", "w1", extra={"event": "phase_changed"})

    text = out.getvalue()
    assert "LabWorker w1: Pending" in text and "event_name=phase_changed" in text

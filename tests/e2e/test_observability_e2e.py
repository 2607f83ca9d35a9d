"""Logs, traces, metrics and health of a real `labctl run` against a real etcd."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import ControllerProcess, all_in_phase, apply, worker_manifest
from tests.e2e.otlp_receiver import OtlpReceiver
from tests.etcdproc import EtcdProcess, wait_until

REQUIRED_LOG_FIELDS = ("timestamp", "level", "logger", "event")


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver()
    yield r
    r.stop()


@pytest.fixture
def controller(etcd: EtcdProcess, tmp_path: Path) -> Iterator[ControllerProcess]:
    ctl = ControllerProcess(etcd, tmp_path)
    yield ctl
    ctl.kill()


def metric_samples(text: str, name: str) -> dict[str, float]:
    """{'{labels}': value} for every sample of one metric family line prefix."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, value = line.rsplit(" ", 1)
            out[labels[len(name) :]] = float(value)
    return out


def labworker_depth(text: str) -> float:
    """The labworker queue's depth, summed over its priorities."""
    depths = metric_samples(text, "workqueue_depth")
    return sum(v for k, v in depths.items() if 'name="labworker"' in k)


def test_logs_traces_and_metrics_of_a_short_run(
    etcd: EtcdProcess, controller: ControllerProcess, receiver: OtlpReceiver
) -> None:
    controller.env_extra.update(
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_SERVICE_NAME="lab-controller-under-test",
        OTEL_BSP_SCHEDULE_DELAY="200",
        LOG_LEVEL="DEBUG",
    )
    apply(etcd, [worker_manifest(f"o{i}") for i in range(5)])
    controller.start().wait_ready()
    wait_until(lambda: all_in_phase(etcd, "Ready", 5), timeout=60, what="5 workers Ready")
    # Let the queue settle: the last status write's own watch event is reconciled too.
    wait_until(
        lambda: (
            labworker_depth(controller.get("/metrics")[1]) == 0.0
            and metric_samples(
                controller.get("/metrics")[1], "controller_runtime_active_workers"
            ).get('{controller="labworker"}')
            == 0.0
        ),
        what="an idle queue",
    )
    metrics = controller.get("/metrics")[1]
    assert controller.terminate() == 0  # flushes the batch span processor

    # -- metrics: what happened, by controller-runtime's names
    totals = metric_samples(metrics, "controller_runtime_reconcile_total")
    # Every kind's controllers report under their own name; these workers are labworker's.
    reconciles = sum(v for k, v in totals.items() if 'controller="labworker"' in k)
    assert all('result="error"' not in k or v == 0 for k, v in totals.items()), (
        totals
    )  # no controller failed
    assert (
        totals['{controller="labworker",result="success"}']
        + totals.get('{controller="labworker",result="requeue_after"}', 0)
        == reconciles
    )  # nothing failed
    depths = metric_samples(metrics, "workqueue_depth")
    assert {k for k in depths if 'name="labworker"' in k} == {
        '{controller="labworker",name="labworker",priority="high"}',
        '{controller="labworker",name="labworker",priority="low"}',
    }  # the priority queue (PRIORITY_QUEUE defaults to on)
    assert labworker_depth(metrics) == 0.0
    assert sum(metric_samples(metrics, "labctl_informer_invalid_objects_total").values()) == 0
    cached = metric_samples(metrics, "labctl_informer_cache_objects")
    assert cached['{resource="labworkers"}'] == 5.0
    # One informer per watched kind (Events are written, never watched, by the controller).
    assert set(cached) == {
        '{resource="labworkers"}',
        '{resource="labworkerpools"}',
        '{resource="labquotas"}',
    }
    for name in (
        "controller_runtime_reconcile_time_seconds_bucket",
        "controller_runtime_reconcile_errors_total",
        "workqueue_adds_total",
        "workqueue_retries_total",
        "workqueue_queue_duration_seconds_bucket",
        "workqueue_work_duration_seconds_bucket",
        "labctl_etcd_request_duration_seconds_bucket",
    ):
        assert name in metrics, name
    # A single replica (LEADER_ELECT off) elects nothing and says nothing about leadership.
    assert metric_samples(metrics, "leader_election_master_status") == {}

    # -- traces: one span per reconcile, etcd and provider calls as children
    spans = receiver.snapshot()
    # The garbage collector also reconciles LabWorkers; its spans say controller=gc-labworkers.
    reconcile_spans = [
        s
        for s in spans
        if s.name == "reconcile LabWorker" and s.attributes.get("labctl.controller") == "labworker"
    ]
    assert len(reconcile_spans) == reconciles
    assert {s.service for s in spans} == {"lab-controller-under-test"}
    by_id = {s.span_id: s for s in spans}
    txn_children = [
        s
        for s in spans
        if s.name == "etcd /kv/txn"
        and s.parent_span_id in by_id
        and by_id[s.parent_span_id].name == "reconcile LabWorker"
    ]
    assert txn_children, "status writes are child spans of their reconcile"
    assert any(s.name == "provider provision" and by_id.get(s.parent_span_id) for s in spans)
    first = [s for s in reconcile_spans if s.attributes.get("labctl.phase.before") == "new"]
    assert first and all(s.attributes["labctl.key"].startswith("default/o") for s in first)
    assert all(s.attributes.get("labctl.trigger.revision", 0) > 0 for s in first)
    assert any(s.attributes.get("labctl.phase.after") == "Ready" for s in reconcile_spans)
    etcd_spans = [s for s in spans if s.name.startswith("etcd ")]
    assert etcd_spans and all(s.attributes.get("rpc.system") == "etcd" for s in etcd_spans)

    # -- logs: every line JSON with the standard fields; reconcile lines lead to their trace
    lines = controller.logs()
    assert lines
    for line in lines:
        for field in REQUIRED_LOG_FIELDS:
            assert field in line, (field, line)
    in_reconcile = [line for line in lines if "key" in line]
    assert in_reconcile
    trace_ids = {s.trace_id for s in reconcile_spans}
    span_ids = {s.span_id for s in spans}
    for line in in_reconcile:
        assert line["trace_id"] in trace_ids, line
        assert line["span_id"] in span_ids, line
        assert line["namespace"] == "default" and line["name"].startswith("o")
    # Phase changes: a stable event name, the phases as keys, and the sentence kept.
    transitions = [line for line in in_reconcile if line["event"] == "phase_changed"]
    pairs = {(line["from_phase"], line["to_phase"]) for line in transitions}
    assert ("new", "Pending") in pairs and any(to == "Ready" for _, to in pairs), pairs
    assert all(line["name"] in line["message"] for line in transitions)


def test_no_secret_reaches_a_log_line(etcd: EtcdProcess, controller: ControllerProcess) -> None:
    password = "hunter2-Sup3rSecret"
    etcd.etcdctl("user", "add", "root:rootpw")
    etcd.etcdctl("user", "add", f"controller:{password}")
    etcd.etcdctl("role", "add", "lab")
    etcd.etcdctl(
        "role", "grant-permission", "lab", "--prefix=true", "readwrite", "/lab-resource-manager/"
    )
    etcd.etcdctl("user", "grant-role", "controller", "lab")
    etcd.etcdctl("auth", "enable")
    # First with a wrong password: the refusal is logged, the password is not.
    wrong = "wrong-" + password
    controller.env_extra.update(ETCD_USERNAME="controller", ETCD_PASSWORD=wrong, LOG_LEVEL="DEBUG")
    controller.start()
    wait_until(
        lambda: "refused the credentials" in controller.log_path.read_text(),
        what="the auth failure to be logged",
    )
    controller.kill()
    controller.env_extra["ETCD_PASSWORD"] = password
    controller.start().wait_ready()
    # A license secret reference is configuration, not a secret; its value never is logged.
    assert controller.terminate() == 0
    text = "".join((controller.workdir / f"controller-{i}.log").read_text() for i in (1, 2))
    assert password not in text
    assert "Sup3rSecret" not in text
    for raw in text.splitlines():
        json.loads(raw)


def test_health_follows_the_watch_and_readiness_follows_the_cache(
    etcd: EtcdProcess, controller: ControllerProcess
) -> None:
    controller.env_extra.update(
        WATCH_IDLE_TIMEOUT="1",
        WATCH_HEARTBEAT_INTERVAL="0.3",
        WATCH_DEAD_AFTER="3",
        ETCD_TIMEOUT="1",
    )
    etcd.stop()  # the controller starts before etcd: it waits, alive but not ready
    controller.start()
    wait_until(lambda: controller.get("/healthz")[0] == 200, what="/healthz answering")
    status, body = controller.get("/readyz?verbose")
    assert status == 503 and "not synced" in body
    etcd.start()
    controller.wait_ready()
    assert controller.get("/healthz")[0] == 200

    etcd.pause()
    try:
        wait_until(
            lambda: controller.get("/healthz")[0] == 503,
            timeout=60,
            what="/healthz failing while etcd is frozen",
        )
        status, body = controller.get("/healthz?verbose")
        assert "watch" in body
        assert controller.get("/readyz")[0] == 503
    finally:
        etcd.resume()
    wait_until(
        lambda: controller.get("/healthz")[0] == 200,
        timeout=60,
        what="/healthz recovering after SIGCONT",
    )
    controller.wait_ready()
    assert controller.alive()

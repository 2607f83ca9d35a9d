"""Prometheus metrics: exact controller-runtime names, label semantics, rendering."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from controller.observability import (
    ControllerMetrics,
    WorkqueueMetrics,
    new_registry,
    render_prometheus,
)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = render_prometheus(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(registry: CollectorRegistry, metric: str, /, **labels: str) -> float:
    return samples(registry)[(metric, frozenset(labels.items()))]


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def test_every_metric_is_rendered_under_its_exact_name(registry: CollectorRegistry) -> None:
    clock = FakeClock()
    cm = ControllerMetrics(registry, clock=clock)
    wq = WorkqueueMetrics(registry)

    cm.register_controller("labworker", 4)
    cm.reconcile_finished("labworker", "success", 0.02)
    cm.reconcile_panic("labworker")
    cm.terminal_error("labworker")
    cm.active_workers_inc("labworker")
    cm.cas_conflict("labworker")
    cm.leader_status("lab-controller", True)
    cm.etcd_request("range", 0.001, error="Unavailable")
    cm.watch_restart("lab-workers", "stream_closed")
    cm.relist("lab-workers", "compacted")
    cm.cache_size("lab-workers", 12)
    cm.invalid_object("lab-workers", "invalid_json")
    cm.informer_event("lab-workers")
    wq.new_depth_metric("labworker").inc()
    wq.new_adds_metric("labworker").inc()
    wq.new_retries_metric("labworker").inc()
    wq.new_latency_metric("labworker").observe(0.5)
    wq.new_work_duration_metric("labworker").observe(0.1)
    wq.new_unfinished_work_seconds_metric("labworker").set(3.0)
    wq.new_longest_running_processor_seconds_metric("labworker").set(2.0)

    text = render_prometheus(registry).decode()
    series_names = {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"
    }
    assert {
        "controller_runtime_reconcile_total",
        "controller_runtime_reconcile_errors_total",
        "controller_runtime_terminal_reconcile_errors_total",
        "controller_runtime_reconcile_time_seconds_bucket",
        "controller_runtime_reconcile_panics_total",
        "controller_runtime_active_workers",
        "controller_runtime_max_concurrent_reconciles",
        "labctl_cas_conflicts_total",
        "leader_election_master_status",
        "labctl_etcd_request_duration_seconds_bucket",
        "labctl_etcd_request_errors_total",
        "labctl_informer_watch_restarts_total",
        "labctl_informer_relists_total",
        "labctl_informer_cache_objects",
        "labctl_informer_invalid_objects_total",
        "labctl_informer_last_event_age_seconds",
        "workqueue_depth",
        "workqueue_adds_total",
        "workqueue_retries_total",
        "workqueue_queue_duration_seconds_bucket",
        "workqueue_work_duration_seconds_bucket",
        "workqueue_unfinished_work_seconds",
        "workqueue_longest_running_processor_seconds",
    } <= series_names
    assert not any(name.endswith("_created") for name in series_names)


def test_reconcile_results_and_errors(registry: CollectorRegistry) -> None:
    cm = ControllerMetrics(registry)
    for result, seconds in [
        ("success", 0.01),
        ("error", 0.2),
        ("error", 0.3),
        ("requeue_after", 1),
    ]:
        cm.reconcile_finished("labworker", result, seconds)

    total = "controller_runtime_reconcile_total"
    assert value(registry, total, controller="labworker", result="error") == 2
    assert value(registry, total, controller="labworker", result="success") == 1
    assert value(registry, total, controller="labworker", result="requeue_after") == 1
    assert value(registry, "controller_runtime_reconcile_errors_total", controller="labworker") == 2
    count = "controller_runtime_reconcile_time_seconds_count"
    assert value(registry, count, controller="labworker") == 4
    time_sum = "controller_runtime_reconcile_time_seconds_sum"
    assert value(registry, time_sum, controller="labworker") == pytest.approx(1.51)


def test_unknown_reconcile_result_is_a_programming_error(registry: CollectorRegistry) -> None:
    with pytest.raises(ValueError, match="requeue_after"):
        ControllerMetrics(registry).reconcile_finished("labworker", "ok", 0.1)


def test_registered_controller_series_exist_at_zero(registry: CollectorRegistry) -> None:
    ControllerMetrics(registry).register_controller("labworker", 8)

    found = samples(registry)
    for result in ("success", "error", "requeue", "requeue_after"):
        key = ("controller_runtime_reconcile_total",
               frozenset({("controller", "labworker"), ("result", result)}))  # fmt: skip
        assert found[key] == 0
    assert value(registry, "controller_runtime_reconcile_errors_total", controller="labworker") == 0
    assert (
        value(registry, "controller_runtime_max_concurrent_reconciles", controller="labworker") == 8
    )
    assert value(registry, "controller_runtime_active_workers", controller="labworker") == 0


def test_gauges_move_both_ways(registry: CollectorRegistry) -> None:
    cm, wq = ControllerMetrics(registry), WorkqueueMetrics(registry)
    cm.active_workers_inc("c")
    cm.active_workers_inc("c")
    cm.active_workers_dec("c")
    wq.new_depth_metric_with_priority("q", "low").inc()
    wq.new_depth_metric_with_priority("q", "low").inc()
    wq.new_depth_metric_with_priority("q", "low").dec()
    cm.leader_status("lease", True)
    cm.leader_status("lease", False)
    cm.cache_size("lab-workers", 5)
    cm.cache_size("lab-workers", 3)

    assert value(registry, "controller_runtime_active_workers", controller="c") == 1
    assert value(registry, "workqueue_depth", name="q", controller="q", priority="low") == 1
    assert value(registry, "leader_election_master_status", name="lease") == 0
    assert value(registry, "labctl_informer_cache_objects", resource="lab-workers") == 3


def test_etcd_errors_are_counted_only_when_present(registry: CollectorRegistry) -> None:
    cm = ControllerMetrics(registry)
    cm.etcd_request("txn", 0.002)
    cm.etcd_request("txn", 0.004, error="Timeout")

    assert value(registry, "labctl_etcd_request_duration_seconds_count", method="txn") == 2
    assert value(registry, "labctl_etcd_request_errors_total", method="txn", error="Timeout") == 1
    assert not any(name == "labctl_etcd_request_errors_total" and ("error", "") in labels
                   for name, labels in samples(registry))  # fmt: skip


def test_last_event_age_grows_until_the_next_event(registry: CollectorRegistry) -> None:
    clock = FakeClock(100.0)
    cm = ControllerMetrics(registry, clock=clock)
    cm.informer_event("lab-workers")

    clock.now = 130.0
    assert value(registry, "labctl_informer_last_event_age_seconds", resource="lab-workers") == 30.0
    cm.informer_event("lab-workers")
    clock.now = 131.5
    assert value(registry, "labctl_informer_last_event_age_seconds", resource="lab-workers") == 1.5


def test_histogram_buckets_follow_controller_runtime_and_client_go(
    registry: CollectorRegistry,
) -> None:
    cm, wq = ControllerMetrics(registry), WorkqueueMetrics(registry)
    cm.reconcile_finished("c", "success", 0.001)
    wq.new_work_duration_metric("q").observe(0.001)
    found = samples(registry)

    def bounds(metric: str, /, **labels: str) -> list[str]:
        return sorted(
            (dict(lbls)["le"] for n, lbls in found if n == metric and set(labels.items()) <= lbls),
            key=float,
        )

    reconcile = bounds("controller_runtime_reconcile_time_seconds_bucket", controller="c")
    assert reconcile[0] == "0.005" and reconcile[-2:] == ["60.0", "+Inf"]
    assert len(reconcile) == 41
    work = bounds("workqueue_work_duration_seconds_bucket", name="q")
    assert work[0] == "1e-08" and work[-2:] == ["1000.0", "+Inf"]
    assert len(work) == 13


def test_new_registry_can_carry_process_metrics() -> None:
    with_process = render_prometheus(new_registry()).decode()
    without = render_prometheus(new_registry(include_process_metrics=False)).decode()
    assert "python_info" in with_process
    assert "python_info" not in without


def test_metric_sets_on_separate_registries_do_not_collide() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    ControllerMetrics(first).cas_conflict("c")
    ControllerMetrics(second)
    assert value(first, "labctl_cas_conflicts_total", controller="c") == 1
    assert ("labctl_cas_conflicts_total",
            frozenset({("controller", "c")})) not in samples(second)  # fmt: skip


def test_workqueue_series_carry_name_and_controller_like_controller_runtime(
    registry: CollectorRegistry,
) -> None:
    wq = WorkqueueMetrics(registry)
    wq.new_adds_metric("labworker").inc()
    wq.new_retries_metric("labworker").inc()
    wq.new_depth_metric("labworker").inc()
    wq.new_depth_metric_with_priority("pool", "high").inc()
    wq.new_depth_metric_with_priority("pool", "low").inc()
    wq.new_depth_metric_with_priority("pool", "low").inc()

    pair = {"name": "labworker", "controller": "labworker"}
    assert value(registry, "workqueue_adds_total", **pair) == 1
    assert value(registry, "workqueue_retries_total", **pair) == 1
    assert value(registry, "workqueue_depth", **pair, priority="") == 1
    pool = {"name": "pool", "controller": "pool"}
    assert value(registry, "workqueue_depth", **pool, priority="high") == 1
    assert value(registry, "workqueue_depth", **pool, priority="low") == 2


def test_project_series_carry_the_labctl_prefix_and_nothing_collides_with_kube(
    registry: CollectorRegistry,
) -> None:
    ControllerMetrics(registry)
    WorkqueueMetrics(registry)
    controller_runtime = ("controller_runtime_", "workqueue_", "leader_election_master_status")
    names = {family.name for family in registry.collect()}
    assert names, "nothing registered"
    foreign = sorted(n for n in names if not n.startswith(("labctl_", *controller_runtime)))
    assert foreign == []


def test_leader_status_is_absent_until_an_elector_reports(registry: CollectorRegistry) -> None:
    cm = ControllerMetrics(registry)
    assert not any(name == "leader_election_master_status" for name, _ in samples(registry))
    cm.leader_status("labworker-controller", True)
    assert value(registry, "leader_election_master_status", name="labworker-controller") == 1


def test_quota_usage_follows_the_status_and_is_forgotten_with_the_quota(
    registry: CollectorRegistry,
) -> None:
    cm = ControllerMetrics(registry)
    cm.quota_usage("team-a", "q", {"workers": 3, "gpus": 1}, {"workers": 4, "gpus": 2})
    where = {"namespace": "team-a", "quota": "q"}
    assert value(registry, "labctl_quota_used", **where, resource="workers") == 3
    assert value(registry, "labctl_quota_hard", **where, resource="workers") == 4

    cm.quota_usage("team-a", "q", {"workers": 4}, {"workers": 4})  # gpus no longer limited
    found = samples(registry)
    assert ("labctl_quota_hard", frozenset({**where, "resource": "gpus"}.items())) not in found
    assert value(registry, "labctl_quota_used", **where, resource="workers") == 4

    cm.quota_deleted("team-a", "q")
    assert not any(name.startswith("labctl_quota_") and name != "labctl_quota_usage_corrected_total"
                   for name, _ in samples(registry))  # fmt: skip


def test_reconcile_time_carries_the_trace_id_exemplar_in_openmetrics(
    registry: CollectorRegistry,
) -> None:
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse

    cm = ControllerMetrics(registry)
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    cm.reconcile_finished("labworker", "success", 0.07, trace_id)
    cm.reconcile_finished("labworker", "success", 0.3)  # no span: no exemplar, no error

    exemplars = [
        (s.labels["le"], s.exemplar)
        for family in parse(openmetrics(registry).decode())
        if family.name == "controller_runtime_reconcile_time_seconds"
        for s in family.samples
        if s.exemplar is not None
    ]
    assert [(le, e.labels, e.value) for le, e in exemplars] == [
        ("0.1", {"trace_id": trace_id}, 0.07)
    ]


def test_the_architecture_doc_lists_every_series(registry: CollectorRegistry) -> None:
    from pathlib import Path

    from controller.observability.sharding_metrics import ShardingMetrics

    ControllerMetrics(registry)
    WorkqueueMetrics(registry)
    ShardingMetrics(registry)
    doc = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()
    names = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in registry.collect()
    } | {"labctl_otlp_metric_export_failures_total"}
    documented = set(re.findall(r"`((?:labctl|controller_runtime|workqueue|leader)_\w+)`", doc))
    # "`a` / `_b`" rows share a prefix: expand the shorthand.
    for row in re.findall(r"`(\w+)` / `(_\w+)`", doc):
        documented.add(row[0].rsplit("_", 2)[0] + row[1])
    assert names - documented == set()

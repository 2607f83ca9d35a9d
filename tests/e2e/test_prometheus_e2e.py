"""A real Prometheus scrapes a live controller; every dashboard and alert query runs clean.

Prometheus (Debian's `prometheus` package) scrapes the app's /metrics every second,
negotiating OpenMetrics as it does in production, and loads deployment/observability's
rules. Then each expression of the Grafana dashboard and of the rules is evaluated through
the HTTP API: a typo, a renamed series or a label mismatch fails here, not on a dashboard.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.app import App, add_servers, repositories
from controller.labworker.kind import LABWORKER
from controller.labworker.model import LabWorker
from controller.quota.kind import LABQUOTA
from controller.quota.model import LabQuota
from controller.storage import connect
from tests.etcdproc import EtcdProcess, free_port, wait_until

OBSERVABILITY = Path(__file__).resolve().parents[2] / "deployment" / "observability"
PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus not installed (Debian: apt-get install prometheus)"
)


class Prometheus:
    def __init__(self, workdir: Path, target: str) -> None:
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(OBSERVABILITY / "alerts.yaml")],
            "scrape_configs": [{"job_name": "labctl", "static_configs": [{"targets": [target]}]}],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = (workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--enable-feature=exemplar-storage",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:  # a bad query: 400 with the error as JSON
            return json.load(exc)

    def scraped(self) -> bool:
        try:
            targets = self.api("targets")["data"]["activeTargets"]
        except OSError:
            return False
        return any(t["health"] == "up" for t in targets)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def running(app: App) -> Iterator[App]:
    add_servers(app)
    runner = threading.Thread(target=app.manager.run, daemon=True)
    runner.start()
    assert app.manager.started.wait(30)
    yield app
    app.manager.stop()
    runner.join(30)


def dashboard_expressions() -> list[str]:
    panels = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def rule_expressions() -> list[str]:
    groups = yaml.safe_load((OBSERVABILITY / "alerts.yaml").read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def test_every_dashboard_and_alert_query_evaluates_against_a_live_controller(
    etcd: EtcdProcess, running: App, tmp_path: Path
) -> None:
    port = next(
        int(r.name.removeprefix("http-"))
        for r in running.manager.runnables
        if getattr(r, "name", "").startswith("http-")
    )
    client = connect(etcd.endpoint)
    prometheus = Prometheus(tmp_path, f"127.0.0.1:{port}")
    try:
        wait_until(prometheus.scraped, timeout=30, what="a successful scrape")
        # Written after the first scrape, so rate() sees the reconciles they cause.
        repos = repositories(client, running.settings.etcd.prefix)
        repos.for_kind(LABQUOTA).create(
            LabQuota.model_validate(
                {
                    "metadata": {"name": "team", "namespace": "default"},
                    "spec": {"hard": {"labworkers": 10}},
                }
            )
        )
        repos.for_kind(LABWORKER).create(
            LabWorker.model_validate(
                {
                    "metadata": {"name": "scraped", "namespace": "default"},
                    "spec": {"labTrack": "ccna", "instance": {"type": "m5zn.metal"}},
                }
            )
        )

        def present(query: str) -> bool:
            return bool(prometheus.api("query", query=query)["data"]["result"])

        wait_until(
            lambda: (
                present('labctl_quota_used{quota="team"} == 1')
                and present("increase(controller_runtime_reconcile_total[1m]) > 0")
            ),
            timeout=30,
            what="the quota counting the worker, and reconciles rated",
        )

        failures = {}
        for expr in [*dashboard_expressions(), *rule_expressions()]:
            answer = prometheus.api("query", query=expr.replace("$__rate_interval", "1m"))
            if answer["status"] != "success":
                failures[expr] = answer.get("error")
        assert failures == {}

        for series in (
            "controller_runtime_reconcile_total",
            "controller_runtime_reconcile_time_seconds_bucket",
            'workqueue_depth{name="labworker",controller="labworker",priority=~"high|low"}',
            'workqueue_adds_total{name="labworker",controller="labworker"}',
            "labctl_etcd_request_duration_seconds_bucket",
            "labctl_informer_last_event_age_seconds",
            "labctl_etcd_write_failing",
            "labctl_quota_hard",
        ):
            assert present(series), series
        assert not present("leader_election_master_status")  # LEADER_ELECT is off

        # The reconcile histogram's exemplars reached Prometheus with their trace ids.
        exemplars = prometheus.api(
            "query_exemplars", query="controller_runtime_reconcile_time_seconds_bucket",
            start="0", end="4102444800",
        )["data"]  # fmt: skip
        trace_ids = {e["labels"]["trace_id"] for s in exemplars for e in s["exemplars"]}
        assert trace_ids and all(len(t) == 32 for t in trace_ids)

        # The rules loaded and evaluate cleanly.
        wait_until(
            lambda: all(
                rule.get("lastEvaluation", "").startswith("2")
                and not rule["lastEvaluation"].startswith("0001")
                for g in prometheus.api("rules")["data"]["groups"]
                for rule in g["rules"]
            ),
            timeout=15,
            what="every rule evaluated once",
        )
        rules = [r for g in prometheus.api("rules")["data"]["groups"] for r in g["rules"]]
        assert len(rules) == len(rule_expressions())
        assert {r["name"]: r["health"] for r in rules} == {r["name"]: "ok" for r in rules}
    finally:
        prometheus.stop()
        client.close()

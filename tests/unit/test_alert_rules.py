"""deployment/observability: promtool checks the rules and runs their unit tests; every
series the rules and the dashboard name is one the controller exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from controller.observability import ControllerMetrics, WorkqueueMetrics

OBSERVABILITY = Path(__file__).resolve().parents[2] / "deployment" / "observability"
RULES = OBSERVABILITY / "alerts.yaml"
RULE_TESTS = OBSERVABILITY / "alerts_test.yaml"
DASHBOARD = OBSERVABILITY / "grafana-dashboard.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian: apt-get install prometheus)"
)
PROMQL_WORDS = frozenset(
    [
        "sum",
        "max",
        "min",
        "avg",
        "by",
        "without",
        "rate",
        "increase",
        "delta",
        "deriv",
        "changes",
        "histogram_quantile",
        "and",
        "or",
        "unless",
        "on",
        "ignoring",
        "le",
        "bool",
        "humanize",
    ]
)


def rule_expressions() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_rule_tests_pass() -> None:
    done = subprocess.run(
        [str(PROMTOOL), "test", "rules", str(RULE_TESTS)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=OBSERVABILITY,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_firing_unit_test() -> None:
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert set(rule_expressions()) == tested


def test_rules_and_dashboard_name_only_series_the_controller_exports() -> None:
    registry = CollectorRegistry()
    ControllerMetrics(registry)
    WorkqueueMetrics(registry)
    exported = {family.name for family in registry.collect()}
    exported |= {f"{name}_{suffix}" for name in exported for suffix in ("total", "bucket")}
    exported |= {"leader_election_master_status"}  # registered, sampled once an elector runs
    named = set()
    for expr in [*rule_expressions().values(), *dashboard_expressions()]:
        without_labels = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", " ", expr)
        named |= {
            word
            for word in re.findall(r"[a-z_][a-z0-9_]*", without_labels)
            if "_" in word and word not in PROMQL_WORDS and not word.startswith("__")
        }
    assert named, "no series found"
    assert named - exported == set()

"""The rules `labctl history` reads versions by, and the compactor's retention window."""

from __future__ import annotations

from typing import Any

import pytest

from controller.runtime.compaction import RetentionWindow, sample_interval
from controller.runtime.history import summarize, writer_of


def _doc(replicas: int = 1, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "lab.neuroglia.io/v1",
        "kind": "LabWorkerPool",
        "metadata": {"name": "p", "generation": replicas, "finalizers": []},
        "spec": {"replicas": replicas},
        "status": status,
    }


def test_only_status_finalizers_and_owner_references_are_a_controller_write() -> None:
    base = _doc(2, phase="Pending")
    status = _doc(2, phase="Ready")
    finalizer = _doc(2, phase="Pending")
    finalizer["metadata"]["finalizers"] = ["lab.neuroglia.io/cleanup"]
    label = _doc(2, phase="Pending")
    label["metadata"]["labels"] = {"tier": "gold"}
    assert writer_of(status, base, created=False) == "controller"
    assert writer_of(finalizer, base, created=False) == "controller"
    assert writer_of(label, base, created=False) == "user"
    assert writer_of(_doc(3, phase="Pending"), base, created=False) == "user"
    assert writer_of(base, None, created=True) == "user"


def test_summaries_name_the_change() -> None:
    assert summarize(_doc(3), _doc(2), created=False) == "spec.replicas: 2 → 3"
    assert (
        summarize(_doc(2, phase="Provisioning"), _doc(2, phase="Pending"), created=False)
        == "phase: Pending → Provisioning"
    )
    deleting = _doc(2)
    deleting["metadata"]["deletionTimestamp"] = "2030-01-01T00:00:00.000Z"
    assert summarize(deleting, _doc(2), created=False) == "deletion requested"
    assert summarize(_doc(2), None, created=True) == "created"
    assert summarize(None, _doc(2), created=False, invalid="x").startswith("unreadable value")
    long = _doc(2)
    long["spec"]["note"] = "y" * 500
    assert len(summarize(long, _doc(2), created=False)) <= 120


def test_the_window_targets_the_newest_sample_older_than_the_retention() -> None:
    window = RetentionWindow(retention=100.0)
    assert window.target(0.0) is None
    for now, revision in [(0.0, 10), (40.0, 20), (80.0, 30), (120.0, 40)]:
        window.observe(now, revision)
    assert window.target(99.0) is None  # nothing is 100s old yet
    assert window.target(100.0) == 10
    assert window.target(139.0) == 10  # the t=40 sample is 99s old: revision 10 still is
    assert window.target(140.0) == 20
    assert window.target(500.0) == 40  # only the newest old sample matters
    assert window.target(500.0) == 40  # and it stays the target until a newer one ages


@pytest.mark.parametrize(("retention", "interval"), [(86400.0, 3600.0), (600.0, 60.0), (5.0, 1.0)])
def test_samples_are_taken_every_tenth_of_the_retention_at_most_hourly(
    retention: float, interval: float
) -> None:
    assert sample_interval(retention) == interval

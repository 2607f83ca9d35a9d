"""The limit check, the refusal messages, the Full condition, the printer columns and which
quotas a worker event concerns."""

from __future__ import annotations

from typing import Any

from controller.quota.check import (
    LabQuotaExceeded,
    UsageRecordUnreadable,
    Violation,
    refusal_message,
    violations,
)
from controller.quota.kind import LABQUOTA, full_column, hard_column
from controller.quota.model import LabQuota
from controller.quota.reconciler import full_condition
from controller.quota.usage import Usage, move_delta, worker_delta
from controller.quota.wiring import quotas_in_namespace
from controller.resources import ObjectKey
from controller.runtime.repository import AdmissionRefused


def quota(name: str, hard: dict[str, int], used: dict[str, int] | None = None) -> LabQuota:
    doc: dict[str, Any] = {"metadata": {"name": name, "namespace": "ns"}, "spec": {"hard": hard}}
    if used is not None:
        doc["status"] = {"hard": hard, "used": used}
    return LabQuota.model_validate(doc)


def test_within_the_limit_passes_and_at_the_limit_refuses() -> None:
    q = [quota("team-a", {"labworkers": 3})]
    assert violations(q, Usage({"labworkers": 2}), worker_delta("m5zn.metal")) == []
    assert violations(q, Usage({"labworkers": 3}), worker_delta("m5zn.metal")) == [
        Violation("team-a", "labworkers", 3, 3, 1)
    ]


def test_a_zero_limit_refuses_the_first() -> None:
    found = violations([quota("none", {"labworkers": 0})], Usage(), worker_delta("a"))
    assert found == [Violation("none", "labworkers", 0, 0, 1)]


def test_type_limits_apply_only_to_their_type() -> None:
    q = [quota("metal", {"labworkers/m5zn.metal": 1})]
    used = Usage({"labworkers": 5, "labworkers/m5zn.metal": 1, "labworkers/c5.metal": 4})
    assert violations(q, used, worker_delta("c5.metal")) == []
    assert violations(q, used, worker_delta("m5zn.metal")) == [
        Violation("metal", "labworkers/m5zn.metal", 1, 1, 1)
    ]


def test_giving_back_never_fails_even_over_a_lowered_limit() -> None:
    q = [quota("team-a", {"labworkers": 1, "labworkers/a": 0})]
    used = Usage({"labworkers": 5, "labworkers/a": 5})
    assert violations(q, used, worker_delta("a", -1)) == []
    # A type change away from an over-limit type does not add to it: allowed.
    assert violations(q, used, move_delta("a", "b")) == []
    # ... but the type it moves to is checked.
    assert violations([quota("b", {"labworkers/b": 0})], used, move_delta("a", "b")) == [
        Violation("b", "labworkers/b", 0, 0, 1)
    ]


def test_every_broken_limit_of_every_quota_is_found_in_name_order() -> None:
    qs = [
        quota("team-b", {"labworkers": 10, "labworkers/a": 2}),
        quota("team-a", {"labworkers": 3, "labworkers/a": 5}),
    ]
    used = Usage({"labworkers": 3, "labworkers/a": 2})
    assert violations(qs, used, worker_delta("a")) == [
        Violation("team-a", "labworkers", 3, 3, 1),
        Violation("team-b", "labworkers/a", 2, 2, 1),
    ]


def test_refusal_message_names_quota_limit_use_and_request() -> None:
    message = refusal_message("labworkers", "w4", [Violation("team-a", "labworkers", 3, 3, 1)])
    assert message == (
        'labworkers "w4" is forbidden: exceeded quota team-a: labworkers limited to 3, '
        "used 3, requested 1"
    )
    err = LabQuotaExceeded("labworkers", "w4", [Violation("team-a", "labworkers", 3, 3, 1)])
    assert isinstance(err, AdmissionRefused) and str(err) == message
    assert err.violations[0].quota == "team-a"


def test_refusal_message_groups_several_limits_by_quota() -> None:
    message = refusal_message(
        "labworkers",
        "w9",
        [
            Violation("team-a", "labworkers", 3, 3, 1),
            Violation("team-a", "labworkers/m5zn.metal", 1, 1, 1),
            Violation("team-b", "labworkers", 5, 7, 1),
        ],
    )
    assert message == (
        'labworkers "w9" is forbidden: exceeded quota team-a: labworkers limited to 3, used 3, '
        "requested 1; labworkers/m5zn.metal limited to 1, used 1, requested 1; exceeded quota "
        "team-b: labworkers limited to 5, used 7, requested 1"
    )


def test_unreadable_record_refusal_names_the_key_and_the_way_out() -> None:
    err = UsageRecordUnreadable("labworkers", "w1", "/p/quota-usage/ns", "not JSON (x)")
    assert isinstance(err, AdmissionRefused)
    text = str(err)
    assert text.startswith(
        'labworkers "w1" is forbidden: the quota usage record /p/quota-usage/ns is unreadable '
        "(not JSON (x))"
    )
    assert "never reset" in text and "etcdctl del /p/quota-usage/ns" in text


def test_full_condition() -> None:
    assert full_condition({"labworkers": 3}, {"labworkers": 2}) == (
        "False",
        "WithinLimits",
        "every limit has room",
    )
    status, reason, message = full_condition({"labworkers": 3}, {"labworkers": 3})
    assert (status, reason) == ("True", "LimitReached") and "labworkers: 3/3" in message
    status, reason, message = full_condition(
        {"labworkers": 2, "labworkers/a": 1}, {"labworkers": 3, "labworkers/a": 1}
    )
    assert (status, reason) == ("True", "LimitExceeded")
    assert (
        "over the limit: labworkers: 3/2" in message
        and "at the limit: labworkers/a: 1/1" in message
    )
    assert full_condition({}, {}) == ("False", "WithinLimits", "every limit has room")


def test_printer_columns() -> None:
    counted = quota(
        "q",
        {"labworkers/m5zn.metal": 2, "labworkers": 5},
        {"labworkers": 3, "labworkers/m5zn.metal": 2},
    )
    assert hard_column(counted) == "labworkers: 3/5, labworkers/m5zn.metal: 2/2"
    assert full_column(counted) == "labworkers/m5zn.metal"
    fresh = quota("q", {"labworkers": 5})
    assert hard_column(fresh) == "labworkers: ?/5"
    assert full_column(fresh) == "<none>"
    assert hard_column(quota("q", {})) == "<none>"
    assert [c.name for c in LABQUOTA.columns if not c.wide] == ["HARD"]


def test_a_worker_event_concerns_every_quota_of_its_namespace_only() -> None:
    keys = ["team-a/q1", "team-ab/q", "team-a/q2", "default/q"]
    assert quotas_in_namespace(keys, "team-a") == [
        ObjectKey("team-a", "q1"),
        ObjectKey("team-a", "q2"),
    ]
    assert quotas_in_namespace(keys, "other") == []

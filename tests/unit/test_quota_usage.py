"""The usage record's arithmetic and encoding: what a create, a delete and a type change do
to the counts, and what is refused as an unreadable record."""

from __future__ import annotations

import json

import pytest

from controller.quota.usage import (
    Usage,
    UsageUnreadable,
    count,
    differences,
    move_delta,
    usage_key,
    worker_delta,
)


def test_record_key() -> None:
    assert (
        usage_key("/lab-resource-manager", "team-a") == "/lab-resource-manager/quota-usage/team-a"
    )
    assert usage_key("/p/", "team-a") == "/p/quota-usage/team-a"


def test_canonical_form_keeps_the_total_and_drops_empty_types() -> None:
    assert Usage().counts == {"labworkers": 0}
    u = Usage({"labworkers/b": 0, "labworkers/a": 2, "labworkers": 2})
    assert u.counts == {"labworkers": 2, "labworkers/a": 2}
    assert u == Usage({"labworkers": 2, "labworkers/a": 2})
    assert u.total == 2 and u.get("labworkers/a") == 2 and u.get("labworkers/zz") == 0


def test_a_create_adds_one_to_the_total_and_one_to_its_type() -> None:
    after, below = Usage().apply(worker_delta("m5zn.metal"))
    assert after.counts == {"labworkers": 1, "labworkers/m5zn.metal": 1} and below == []
    after, _ = after.apply(worker_delta("c5.metal"))
    assert after.counts == {"labworkers": 2, "labworkers/c5.metal": 1, "labworkers/m5zn.metal": 1}


def test_a_delete_gives_back_and_an_empty_type_disappears() -> None:
    start = Usage({"labworkers": 2, "labworkers/m5zn.metal": 1, "labworkers/c5.metal": 1})
    after, below = start.apply(worker_delta("m5zn.metal", -1))
    assert after.counts == {"labworkers": 1, "labworkers/c5.metal": 1} and below == []


def test_giving_back_what_was_never_counted_stops_at_zero_and_says_so() -> None:
    after, below = Usage({"labworkers": 1, "labworkers/a": 1}).apply(worker_delta("b", -1))
    assert after.counts == {"labworkers": 0, "labworkers/a": 1}
    assert below == ["labworkers/b"]
    after, below = Usage().apply(worker_delta("a", -1))
    assert after == Usage() and sorted(below) == ["labworkers", "labworkers/a"]


def test_a_type_change_moves_one_between_type_keys_and_keeps_the_total() -> None:
    assert move_delta("a", "a") == {}
    delta = move_delta("m5zn.metal", "c5.metal")
    assert delta == {"labworkers/m5zn.metal": -1, "labworkers/c5.metal": 1}
    after, _ = Usage({"labworkers": 3, "labworkers/m5zn.metal": 3}).apply(delta)
    assert after.counts == {"labworkers": 3, "labworkers/c5.metal": 1, "labworkers/m5zn.metal": 2}


def test_count_of_workers() -> None:
    assert count([]) == Usage()
    assert count(["a", "b", "a"]).counts == {"labworkers": 3, "labworkers/a": 2, "labworkers/b": 1}


def test_encode_decode_round_trip() -> None:
    u = Usage({"labworkers": 3, "labworkers/m5zn.metal": 1})
    raw = u.encode()
    assert json.loads(raw) == {"labworkers": 3, "labworkers/m5zn.metal": 1}
    assert Usage.decode("k", raw) == u
    assert Usage.decode("k", b"{}") == Usage()
    assert u.describe() == "labworkers=3, labworkers/m5zn.metal=1"


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "a JSON list, not an object of counts"),
        (b'"3"', "a JSON str, not an object of counts"),
        (b'{"labworkers": -1}', "'labworkers' is '-1', not a count"),
        (b'{"labworkers": 1.5}', "not a count"),
        (b'{"labworkers": true}', "not a count"),
        (b'{"labworkers": "3"}', "not a count"),
        (b'{"pods": 3}', "'pods' is not 'labworkers' or 'labworkers/<instance type>'"),
        (b'{"labworkers/": 3}', "is not 'labworkers' or"),
        (b"[" * 100_000, "not JSON"),
        (b" " * (300 * 1024), "bytes, at most"),
    ],
)
def test_an_unreadable_record_is_refused_naming_its_key_and_the_problem(
    raw: bytes, says: str
) -> None:
    with pytest.raises(UsageUnreadable) as info:
        Usage.decode("/p/quota-usage/team-a", raw)
    assert info.value.key == "/p/quota-usage/team-a"
    assert says in info.value.detail
    assert str(info.value).startswith("/p/quota-usage/team-a: ")


def test_differences_name_each_key_with_both_numbers() -> None:
    recorded = Usage({"labworkers": 3, "labworkers/a": 3})
    counted = Usage({"labworkers": 4, "labworkers/a": 3, "labworkers/b": 1})
    assert list(differences(recorded, counted)) == [("labworkers", 3, 4), ("labworkers/b", 0, 1)]
    assert list(differences(counted, counted)) == []

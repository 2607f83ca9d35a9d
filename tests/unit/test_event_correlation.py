"""Aggregation keys, event names and the bounded LRU the recorder remembers Events in."""

from __future__ import annotations

import re

import pytest

from controller.events.correlation import ObjectRef, aggregation_key, spam_key
from controller.events.lru import Lru
from controller.events.naming import UniqueNanos, event_name
from controller.labworker.model import LabWorker
from controller.resources.names import dns1123_subdomain_error


def worker(name: str = "w1", uid: str | None = "uid-1", namespace: str = "emea") -> LabWorker:
    return LabWorker.model_validate(
        {
            "metadata": {"name": name, "namespace": namespace, "uid": uid},
            "spec": {"labTrack": "ccna"},
        }
    )


# -- aggregation key ---------------------------------------------------------------------------


def test_object_ref_copies_the_identity() -> None:
    ref = ObjectRef.of(worker())
    assert ref == ObjectRef("lab.neuroglia.io/v1", "LabWorker", "emea", "w1", "uid-1")
    assert str(ref) == "LabWorker emea/w1"
    assert ObjectRef.of(worker(uid=None)).uid == ""


def test_the_same_event_has_the_same_key() -> None:
    ref = ObjectRef.of(worker())
    a = aggregation_key(ref, "Normal", "Provisioning", "instance i-1 requested")
    b = aggregation_key(ObjectRef.of(worker()), "Normal", "Provisioning", "instance i-1 requested")
    assert a == b and hash(a) == hash(b)


@pytest.mark.parametrize(
    "change",
    [
        {"type": "Warning"},
        {"reason": "Starting"},
        {"message": "instance i-2 requested"},
    ],
)
def test_type_reason_or_message_make_another_event(change: dict[str, str]) -> None:
    ref = ObjectRef.of(worker())
    base = {"type": "Normal", "reason": "Provisioning", "message": "instance i-1 requested"}
    assert aggregation_key(ref, **base) != aggregation_key(ref, **{**base, **change})


def test_a_recreated_object_is_another_object() -> None:
    args = ("Normal", "Provisioning", "m")
    first = aggregation_key(ObjectRef.of(worker(uid="uid-1")), *args)
    second = aggregation_key(ObjectRef.of(worker(uid="uid-2")), *args)
    assert first != second


def test_objects_without_uid_are_told_apart_by_name() -> None:
    args = ("Normal", "Provisioning", "m")
    a = aggregation_key(ObjectRef.of(worker("a", uid=None)), *args)
    b = aggregation_key(ObjectRef.of(worker("b", uid=None)), *args)
    assert a != b


def test_spam_key_is_per_source_and_object() -> None:
    ref = ObjectRef.of(worker())
    assert spam_key("ctl/a", ref) != spam_key("ctl/b", ref)
    assert spam_key("ctl/a", ref) == spam_key("ctl/a", ObjectRef.of(worker()))
    assert spam_key("ctl/a", ref) != spam_key("ctl/a", ObjectRef.of(worker(uid="uid-2")))


# -- naming ------------------------------------------------------------------------------------


def test_name_is_object_name_dot_16_hex_digits() -> None:
    assert event_name("w1", 0x17A0B1C2D3E4F506) == "w1.17a0b1c2d3e4f506"
    assert event_name("w1", 5) == "w1.0000000000000005"
    assert re.fullmatch(r"w1\.[0-9a-f]{16}", event_name("w1", 1_715_000_000_123_456_789))


@pytest.mark.parametrize("cut_at", ["-", "."])
def test_a_long_object_name_is_cut_to_a_valid_name(cut_at: str) -> None:
    name = "a" * 235 + cut_at + "b" * 17  # 253 characters: the cut lands right after cut_at
    result = event_name(name, 1)
    assert len(result) <= 253
    assert dns1123_subdomain_error(result) is None
    assert result == "a" * 235 + ".0000000000000001"


def test_names_sort_in_time_order() -> None:
    times = [9, 10, 255, 256, 1_715_000_000_000_000_000]
    names = [event_name("w", t) for t in times]
    assert names == sorted(names)


def test_unique_nanos_never_repeat_on_a_coarse_clock() -> None:
    nanos = UniqueNanos(lambda: 1000)
    assert [nanos(), nanos(), nanos()] == [1000, 1001, 1002]


def test_unique_nanos_follow_the_clock_when_it_moves_on() -> None:
    now = [1000]
    nanos = UniqueNanos(lambda: now[0])
    nanos()
    now[0] = 5000
    assert nanos() == 5000


# -- LRU ---------------------------------------------------------------------------------------


def test_lru_is_bounded_and_evicts_the_least_recently_used() -> None:
    lru: Lru[str, int] = Lru(3)
    for i, key in enumerate("abc"):
        lru.put(key, i)
    assert lru.get("a") == 0  # a is now the most recent
    lru.put("d", 3)
    assert len(lru) == 3
    assert "b" not in lru
    assert lru.get("a") == 0 and lru.get("c") == 2 and lru.get("d") == 3


def test_lru_put_refreshes_an_entry() -> None:
    lru: Lru[str, int] = Lru(2)
    lru.put("a", 1)
    lru.put("b", 2)
    lru.put("a", 10)
    lru.put("c", 3)
    assert lru.get("a") == 10 and "b" not in lru


def test_lru_default_holds_4096_entries() -> None:
    lru: Lru[int, int] = Lru()
    for i in range(5000):
        lru.put(i, i)
    assert len(lru) == 4096
    assert lru.get(0) is None and lru.get(4999) == 4999


def test_lru_pop() -> None:
    lru: Lru[str, int] = Lru(2)
    lru.put("a", 1)
    assert lru.pop("a") == 1 and lru.pop("a") is None and len(lru) == 0


def test_lru_needs_room() -> None:
    with pytest.raises(ValueError, match="at least one entry"):
        Lru(0)

"""The indexed cache: contents and indexes always agree, also under concurrent writers."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.runtime.cache import Indexer, IndexFunc


@dataclass(frozen=True)
class Obj:
    phase: str
    track: str
    labels: dict[str, str] = field(default_factory=dict, hash=False)


INDEXERS: dict[str, IndexFunc[Obj]] = {
    "phase": lambda obj: [obj.phase],
    "labTrack": lambda obj: [obj.track],
    "label": lambda obj: [f"{k}={v}" for k, v in obj.labels.items()],
}


def new_cache() -> Indexer[Obj]:
    return Indexer[Obj](indexers=INDEXERS)


def expected_index(cache: Indexer[Obj], name: str) -> dict[str, set[str]]:
    """The index recomputed from scratch from the cache's contents."""
    index: dict[str, set[str]] = {}
    keys = cache.keys()
    for key in keys:
        obj = cache.get(key)
        assert obj is not None
        for value in INDEXERS[name](obj):
            index.setdefault(value, set()).add(key)
    return index


def actual_index(cache: Indexer[Obj], name: str) -> dict[str, set[str]]:
    return {value: set(cache.index_keys(name, value)) for value in cache.index_values(name)}


def assert_indexes_consistent(cache: Indexer[Obj]) -> None:
    for name in INDEXERS:
        assert actual_index(cache, name) == expected_index(cache, name), name


def test_stores_objects_by_key_without_copying() -> None:
    cache = new_cache()
    a = Obj("Ready", "ccna")
    cache.add("default/a", a)

    assert cache.get("default/a") is a
    assert cache.get("default/missing") is None
    assert "default/a" in cache
    assert len(cache) == 1
    assert cache.keys() == ["default/a"]
    assert cache.list() == [a]
    assert cache.by_index("phase", "Ready")[0] is a


def test_update_moves_the_object_between_index_values() -> None:
    cache = new_cache()
    cache.add("a", Obj("Pending", "ccna", {"tier": "gold", "zone": "a"}))
    cache.update("a", Obj("Ready", "ccna", {"tier": "silver", "zone": "a"}))

    assert cache.index_keys("phase", "Pending") == []
    assert cache.index_keys("phase", "Ready") == ["a"]
    assert cache.index_keys("label", "tier=gold") == []
    assert cache.index_keys("label", "tier=silver") == ["a"]
    assert cache.index_keys("label", "zone=a") == ["a"]
    assert sorted(cache.index_values("label")) == ["tier=silver", "zone=a"]


def test_objects_sharing_an_index_value_are_all_found() -> None:
    cache = new_cache()
    cache.add("a", Obj("Ready", "ccna"))
    cache.add("b", Obj("Ready", "ccnp"))
    cache.add("c", Obj("Failed", "ccna"))

    assert sorted(cache.index_keys("phase", "Ready")) == ["a", "b"]
    assert sorted(o.track for o in cache.by_index("labTrack", "ccna")) == ["ccna", "ccna"]


def test_delete_removes_the_object_and_its_index_entries() -> None:
    cache = new_cache()
    a = Obj("Ready", "ccna", {"tier": "gold"})
    cache.add("a", a)
    cache.add("b", Obj("Ready", "ccnp"))

    assert cache.delete("a") is a
    assert cache.delete("a") is None
    assert cache.get("a") is None
    assert cache.index_keys("phase", "Ready") == ["b"]
    assert "tier=gold" not in cache.index_values("label")
    assert "ccna" not in cache.index_values("labTrack")


def test_replace_swaps_contents_and_returns_what_vanished() -> None:
    cache = new_cache()
    gone = Obj("Ready", "ccna", {"tier": "gold"})
    cache.add("gone", gone)
    cache.add("kept", Obj("Pending", "ccnp"))

    vanished = cache.replace(
        {"kept": Obj("Ready", "ccnp"), "new": Obj("Failed", "devnet", {"tier": "silver"})}
    )

    assert vanished == {"gone": gone}
    assert sorted(cache.keys()) == ["kept", "new"]
    assert cache.index_keys("phase", "Ready") == ["kept"]
    assert cache.index_keys("label", "tier=gold") == []
    assert_indexes_consistent(cache)


def test_replace_is_not_affected_by_later_changes_to_the_given_mapping() -> None:
    cache = new_cache()
    items = {"a": Obj("Ready", "ccna")}
    cache.replace(items)
    items["b"] = Obj("Ready", "ccna")

    assert cache.keys() == ["a"]


def test_unknown_index_name_is_reported_with_the_known_ones() -> None:
    cache = new_cache()

    with pytest.raises(KeyError, match="labTrack"):
        cache.by_index("zone", "a")


def test_failing_index_function_leaves_the_cache_unchanged() -> None:
    def broken(obj: Obj) -> list[str]:
        if obj.phase == "Broken":
            raise ValueError("cannot index")
        return [obj.phase]

    cache: Indexer[Obj] = Indexer(indexers={"phase": broken})
    cache.add("a", Obj("Ready", "ccna"))

    with pytest.raises(ValueError):
        cache.update("a", Obj("Broken", "ccna"))
    assert cache.get("a") == Obj("Ready", "ccna")
    assert cache.index_keys("phase", "Ready") == ["a"]


def test_concurrent_writers_keep_indexes_consistent_with_contents() -> None:
    cache = new_cache()
    keys = [f"ns/w-{i}" for i in range(40)]
    phases = ["Pending", "Ready", "Active", "Failed"]
    errors: list[BaseException] = []

    def write(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(2000):
                key = rng.choice(keys)
                if rng.random() < 0.3:
                    cache.delete(key)
                else:
                    labels = {"tier": rng.choice(["gold", "silver"])} if rng.random() < 0.5 else {}
                    cache.update(key, Obj(rng.choice(phases), rng.choice(["x", "y"]), labels))
                if rng.random() < 0.01:
                    cache.replace({k: Obj("Ready", "x") for k in rng.sample(keys, 10)})
        except BaseException as error:
            errors.append(error)

    writers = [threading.Thread(target=write, args=(seed,)) for seed in range(6)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(30)

    assert not errors
    assert not any(thread.is_alive() for thread in writers)
    assert_indexes_consistent(cache)


operations = st.lists(
    st.tuples(
        st.sampled_from(["update", "delete"]),
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(["Pending", "Ready"]),
        st.dictionaries(st.sampled_from(["tier", "zone"]), st.sampled_from(["1", "2"])),
    ),
    max_size=30,
)


@given(operations)
def test_any_sequence_of_updates_and_deletes_matches_a_plain_dict(
    ops: list[tuple[str, str, str, dict[str, str]]],
) -> None:
    cache = new_cache()
    model: dict[str, Obj] = {}
    for op, key, phase, labels in ops:
        if op == "update":
            obj = Obj(phase, "track", labels)
            cache.update(key, obj)
            model[key] = obj
        else:
            assert cache.delete(key) == model.pop(key, None)

    keys = cache.keys()
    assert {key: cache.get(key) for key in keys} == model
    assert_indexes_consistent(cache)

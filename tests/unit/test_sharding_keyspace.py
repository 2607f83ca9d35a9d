"""The shard of a key and the owner of a shard: stable, owner-following, minimal movement."""

from __future__ import annotations

import json
import subprocess
import sys

from controller.labworker.kind import LABWORKER
from controller.runtime.record import record_decoder
from controller.runtime.sharding import assignment, rendezvous_owner, shard_of, shard_of_stored
from controller.runtime.sharding.ownership import ShardFilter
from controller.storage import KeyValue


def test_the_shard_of_a_key_is_the_same_in_every_process() -> None:
    # Python's hash() is salted per process; a shard must not be.
    code = "from controller.runtime.sharding import shard_of; print(shard_of('ns', 'w1', 256))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(other.stdout) == shard_of("ns", "w1", 256)


def test_keys_spread_over_all_shards() -> None:
    shards = {shard_of("default", f"w{i}", 64) for i in range(5000)}
    assert shards == set(range(64))


def test_an_owned_object_lives_in_its_controller_owners_shard() -> None:
    owned = {
        "metadata": {
            "name": "pool-a-x1",
            "ownerReferences": [
                {"kind": "LabWorkerPool", "name": "other", "uid": "u0"},
                {"kind": "LabWorkerPool", "name": "pool-a", "uid": "u1", "controller": True},
            ],
        }
    }
    value = json.dumps(owned).encode()
    assert shard_of_stored("ns/pool-a-x1", value, 256) == shard_of("ns", "pool-a", 256)
    orphan = json.dumps({"metadata": {"name": "w", "ownerReferences": []}}).encode()
    assert shard_of_stored("ns/w", orphan, 256) == shard_of("ns", "w", 256)
    assert shard_of_stored("ns/w", b"{not json", 256) == shard_of("ns", "w", 256)


def test_every_shard_has_exactly_one_owner() -> None:
    members = ["a", "b", "c"]
    owned = [assignment(256, members, m) for m in members]
    assert sum(len(s) for s in owned) == 256
    assert frozenset().union(*owned) == frozenset(range(256))
    assert all(40 < len(s) < 130 for s in owned), [len(s) for s in owned]


def test_a_join_moves_only_shards_to_the_newcomer_and_a_leave_only_the_leavers() -> None:
    before = {s: rendezvous_owner(s, ["a", "b", "c"]) for s in range(256)}
    joined = {s: rendezvous_owner(s, ["a", "b", "c", "d"]) for s in range(256)}
    moved = {s for s in range(256) if before[s] != joined[s]}
    assert moved and all(joined[s] == "d" for s in moved)
    left = {s: rendezvous_owner(s, ["a", "c"]) for s in range(256)}
    moved = {s for s in range(256) if before[s] != left[s]}
    assert moved == {s for s in range(256) if before[s] == "b"}


def test_no_members_no_owner() -> None:
    assert rendezvous_owner(3, []) is None
    assert assignment(8, [], "a") == frozenset()


class HeldShards:
    """What ShardFilter asks of the coordinator: the shard count, and which it caches."""

    def __init__(self, count: int, cached: set[int]) -> None:
        self.count = count
        self.cached = cached

    def caches(self, shard: int) -> bool:
        return shard in self.cached


def test_a_cached_record_is_kept_exactly_when_its_stored_value_would_be_accepted() -> None:
    # Pruning in place (keeps) must drop what a relist (__call__) would not have listed.
    decode = record_decoder(LABWORKER)
    held = HeldShards(16, set(range(0, 16, 3)))
    shard_filter = ShardFilter(held)  # type: ignore[arg-type]
    for i in range(200):
        name = f"w{i}"
        meta: dict[str, object] = {
            "name": name,
            "namespace": "default",
            "uid": f"u{i}",
            "creationTimestamp": "2024-01-01T00:00:00Z",
        }
        if i % 2:
            owner = {"apiVersion": "lab.neuroglia.io/v1", "kind": "LabWorkerPool"}
            meta["ownerReferences"] = [
                {**owner, "name": f"pool{i % 7}", "uid": f"p{i % 7}", "controller": True}
            ]
        doc = {"apiVersion": LABWORKER.api_version, "kind": "LabWorker", "metadata": meta}
        doc["spec"] = {"labTrack": "t"}
        key = f"default/{name}"
        kv = KeyValue(f"/x/{key}", json.dumps(doc).encode(), 1, 2, 1)
        assert shard_filter.keeps(key, decode(key, kv)) == shard_filter(key, kv), key

"""EtcdStorageBackend against a real etcd: every method, CAS under contention, bad data."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from controller.storage import (
    MAX_BATCH_OPS,
    AlreadyExists,
    BatchDelete,
    BatchPut,
    Conflict,
    CorruptValue,
    EtcdStorageBackend,
    InvalidRequest,
    StorageEvent,
    connect,
)
from tests.etcdproc import EtcdProcess, wait_until

PREFIX = "/lab-resource-manager/lab-workers"


def worker(name: str, labels: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "lab.neuroglia.io/v1",
        "kind": "LabWorker",
        "metadata": {"name": name, "namespace": "default", "labels": labels or {}},
        "spec": {"labTrack": "ccna", **extra},
    }


@pytest.fixture
def backend(shared_etcd: EtcdProcess, request: pytest.FixtureRequest) -> EtcdStorageBackend:
    # One prefix per test on a shared etcd: tests cannot see each other's keys.
    return EtcdStorageBackend(connect(shared_etcd.endpoint), f"{PREFIX}-{request.node.name}")


def test_get_exists_set_create_delete(backend: EtcdStorageBackend) -> None:
    assert backend.get("default/a") is None
    assert not backend.exists("default/a")
    created = backend.create("default/a", worker("a"))
    rv = int(created["metadata"]["resourceVersion"])
    got = backend.get("default/a")
    assert got is not None and got["metadata"]["resourceVersion"] == str(rv)
    assert backend.exists("default/a")
    with pytest.raises(AlreadyExists):
        backend.create("default/a", worker("a"))
    # resourceVersion is never stored: it is the key's mod_revision.
    raw = backend.client.get(backend.prefix + "default/a")
    assert raw is not None and b"resourceVersion" not in raw.value
    assert backend.set("default/a", worker("a", desiredPhase="Stopped"))
    with pytest.raises(Conflict):
        backend.delete("default/a", expected_version=rv)  # stale version
    assert backend.delete("default/a")
    assert not backend.delete("default/a")


def test_set_with_resource_version_is_a_cas(backend: EtcdStorageBackend) -> None:
    doc = backend.create("default/s", worker("s"))
    assert backend.set("default/s", doc)  # carries the current resourceVersion: succeeds
    with pytest.raises(Conflict) as info:
        backend.set("default/s", doc)  # same, now stale
    assert info.value.current is not None


def test_compare_and_swap_returns_current_object_on_failure(backend: EtcdStorageBackend) -> None:
    doc = backend.create("default/c", worker("c"))
    rv = doc["metadata"]["resourceVersion"]
    assert backend.compare_and_swap("default/c", rv, worker("c", desiredPhase="Draining"))
    assert not backend.compare_and_swap("default/c", rv, worker("c", desiredPhase="Stopped"))
    result = backend.cas("default/c", rv, worker("c", desiredPhase="Stopped"))
    assert not result.succeeded
    assert result.current is not None and result.current["spec"]["desiredPhase"] == "Draining"
    assert result.revision == int(result.current["metadata"]["resourceVersion"])
    assert backend.cas("default/new", 0, worker("new")).succeeded  # 0 = only if absent
    assert not backend.cas("default/new", 0, worker("new")).succeeded


def test_16_threads_x_50_cas_increments_lose_nothing(backend: EtcdStorageBackend) -> None:
    backend.create("default/counter", {**worker("counter"), "status": {"hostedLabs": 0}})
    barrier = threading.Barrier(16)
    errors: list[BaseException] = []

    def incrementer() -> None:
        try:
            barrier.wait()
            current = backend.get("default/counter")
            assert current is not None
            for _ in range(50):
                while True:
                    rv = current["metadata"]["resourceVersion"]
                    current["status"]["hostedLabs"] += 1
                    result = backend.cas("default/counter", rv, current)
                    if result.succeeded:
                        current["metadata"]["resourceVersion"] = str(result.revision)
                        break
                    assert result.current is not None
                    current = result.current  # re-decide from the same round trip
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=incrementer) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    final = backend.get("default/counter")
    assert final is not None and final["status"]["hostedLabs"] == 800


def test_create_race_has_exactly_one_winner(backend: EtcdStorageBackend) -> None:
    barrier = threading.Barrier(12)
    outcomes: list[str] = []
    lock = threading.Lock()

    def racer(i: int) -> None:
        barrier.wait()
        try:
            backend.create("default/race", worker("race", desiredPhase="Ready", labTrack=f"t{i}"))
            result = "won"
        except AlreadyExists:
            result = "lost"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["lost"] * 11 + ["won"]


def test_keys_and_list_with_labels(backend: EtcdStorageBackend) -> None:
    backend.create("default/w1", worker("w1", {"tier": "gold", "region": "eu"}))
    backend.create("default/w2", worker("w2", {"tier": "silver", "region": "eu"}))
    backend.create("emea/w3", worker("w3", {"tier": "gold"}))
    assert backend.keys() == ["default/w1", "default/w2", "emea/w3"]
    assert backend.keys("default/") == ["default/w1", "default/w2"]
    assert backend.keys("*/w3") == ["emea/w3"]

    def names(selector: str) -> list[str]:
        return sorted(d["metadata"]["name"] for d in backend.list_with_labels(selector))

    assert names("tier=gold") == ["w1", "w3"]
    assert names("tier!=gold") == ["w2"]
    assert names("tier in (gold,silver),region") == ["w1", "w2"]
    assert names("tier notin (gold)") == ["w2"]
    assert names("!region") == ["w3"]
    assert names("") == ["w1", "w2", "w3"]


def test_apply_batch_is_all_or_nothing(backend: EtcdStorageBackend) -> None:
    a = backend.create("default/a", worker("a"))
    rv = int(a["metadata"]["resourceVersion"])
    backend.apply_batch(
        [
            BatchPut("default/a", worker("a", desiredPhase="Stopped"), rv),
            BatchPut("default/b", worker("b"), 0),
        ]
    )
    assert backend.exists("default/b")
    before = backend.keys()
    with pytest.raises(Conflict) as info:
        backend.apply_batch(
            [BatchPut("default/c", worker("c"), 0), BatchDelete("default/a", expected_version=rv)]
        )
    assert info.value.key.endswith("default/a")
    assert backend.keys() == before  # nothing of the failed batch was applied
    ops = [BatchPut(f"default/n{i}", worker(f"n{i}"), 0) for i in range(MAX_BATCH_OPS)]
    backend.apply_batch(ops)
    assert len(backend.keys("default/n")) == MAX_BATCH_OPS
    with pytest.raises(InvalidRequest):
        backend.apply_batch([*ops, BatchPut("default/x", worker("x"))])
    with pytest.raises(InvalidRequest):
        backend.apply_batch([BatchDelete("default/a"), BatchDelete("default/a")])


def test_malformed_values_are_reported_not_fatal(
    shared_etcd: EtcdProcess, backend: EtcdStorageBackend
) -> None:
    reported: list[CorruptValue] = []
    backend.corrupt_hooks.append(reported.append)
    backend.create("default/good", worker("good"))
    shared_etcd.put(backend.prefix + "default/broken", "{not json")  # planted with etcdctl
    shared_etcd.put(backend.prefix + "default/array", "[1,2]")
    with pytest.raises(CorruptValue) as info:
        backend.get("default/broken")
    assert "default/broken" in str(info.value)
    names = [d["metadata"]["name"] for d in backend.list()]
    assert names == ["good"]
    assert sorted(e.key.rsplit("/", 1)[1] for e in reported) == ["array", "broken"]
    # Reported, never rewritten or deleted.
    assert shared_etcd.get_raw(backend.prefix + "default/broken") == b"{not json"


def test_watch_delivers_put_and_delete_with_decoded_values(backend: EtcdStorageBackend) -> None:
    events: list[StorageEvent] = []
    handle = backend.watch(events.append)
    try:
        backend.create("default/w", worker("w"))
        doc = backend.get("default/w")
        assert doc is not None
        backend.set("default/w", worker("w", desiredPhase="Draining"))
        backend.delete("default/w")
        wait_until(lambda: len(events) == 3, what="3 watch events")
        put1, put2, deleted = events
        assert (put1.type, put1.name, put1.prev_value) == ("PUT", "default/w", None)
        assert put1.value is not None and put1.value["metadata"]["resourceVersion"] == str(
            put1.revision
        )
        assert put2.value is not None and put2.value["spec"]["desiredPhase"] == "Draining"
        assert put2.prev_value is not None and "desiredPhase" not in put2.prev_value["spec"]
        assert deleted.type == "DELETE" and deleted.value is None
        assert deleted.prev_value is not None and deleted.prev_value["metadata"]["name"] == "w"
        assert put1.revision < put2.revision < deleted.revision
    finally:
        handle.cancel()


def test_watch_survives_a_raising_callback_and_a_corrupt_value(
    shared_etcd: EtcdProcess, backend: EtcdStorageBackend
) -> None:
    seen: list[StorageEvent] = []

    def callback(ev: StorageEvent) -> None:
        if ev.name == "default/boom":
            raise RuntimeError("bug in a user's callback")
        seen.append(ev)

    handle = backend.watch(callback)
    try:
        backend.create("default/boom", worker("boom"))
        shared_etcd.put(backend.prefix + "default/garbage", "\xff not json")
        backend.create("default/after", worker("after"))
        wait_until(
            lambda: [e.name for e in seen] == ["default/garbage", "default/after"],
            what="events after a raising callback",
        )
        assert seen[0].error is not None and seen[0].value is None
        assert handle.alive()
    finally:
        handle.cancel()


def test_invalid_names_are_refused(backend: EtcdStorageBackend) -> None:
    for bad in ["", "/abs", "a\0b"]:
        with pytest.raises(InvalidRequest):
            backend.get(bad)

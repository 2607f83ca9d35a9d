"""The informer against a real etcd: snapshot list, watch, relist on compaction, bad values."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from controller.runtime.informer import (
    EventKind,
    Informer,
    InformerEvent,
    InvalidObjectError,
    NoopInformerMetrics,
)
from controller.storage import Compacted, EtcdClient, KeyValue, connect
from tests.etcdproc import EtcdProcess, wait_until

PREFIX = "/inf/items/"


def decode(key: str, kv: KeyValue) -> str:
    if not kv.value.startswith(b"ok:"):
        raise InvalidObjectError(key, "invalid-object: value must start with ok:")
    return kv.value.decode()[3:]


class Recorder:
    def __init__(self) -> None:
        self.events: list[InformerEvent[str]] = []
        self.lock = threading.Lock()

    def __call__(self, event: InformerEvent[str]) -> None:
        with self.lock:
            self.events.append(event)

    def kinds_for(self, key: str) -> list[EventKind]:
        with self.lock:
            return [e.kind for e in self.events if e.key == key]

    def last_for(self, key: str) -> InformerEvent[str]:
        with self.lock:
            return [e for e in self.events if e.key == key][-1]


class RecordingMetrics(NoopInformerMetrics):
    def __init__(self) -> None:
        self.invalid: list[tuple[str, str]] = []
        self.relists: list[str] = []

    def invalid_object(self, resource: str, reason: str) -> None:
        self.invalid.append((resource, reason))

    def relist(self, resource: str, reason: str) -> None:
        self.relists.append(reason)


@pytest.fixture
def client(etcd: EtcdProcess) -> EtcdClient:
    return connect(etcd.endpoint, timeout=2.0)


@pytest.fixture
def informer(client: EtcdClient) -> Iterator[tuple[Informer[str], Recorder, list[tuple[str, str]]]]:
    metrics = RecordingMetrics()
    inf: Informer[str] = Informer(
        client,
        PREFIX,
        decode,
        indexers={"first": lambda v: [v[:1]]},
        name="items",
        resync_period=3600,
        idle_timeout=2.0,
        metrics=metrics,
    )
    rec = Recorder()
    inf.add_handler(rec)
    inf.relist_reasons = metrics.relists  # type: ignore[attr-defined]
    yield inf, rec, metrics.invalid
    inf.stop()


def test_lists_a_snapshot_then_watches_without_gaps(
    client: EtcdClient, informer: tuple[Informer[str], Recorder, list[tuple[str, str]]]
) -> None:
    inf, rec, invalid = informer
    for i in range(2500):  # more than one page
        client.put(f"{PREFIX}k{i:04d}", f"ok:v{i}".encode())
    client.put(f"{PREFIX}bad", b"garbage")
    inf.page_size = 1000
    inf.start()
    assert inf.wait_synced(30)
    assert len(inf.cache) == 2500
    assert invalid == [("items", "invalid-object")]
    client.put(f"{PREFIX}k0000", b"ok:changed")
    client.delete(f"{PREFIX}k0001")
    client.put(f"{PREFIX}new", b"ok:new")
    wait_until(lambda: inf.get("new") == "new", what="watch event applied")
    assert inf.get("k0000") == "changed" and inf.get("k0001") is None
    assert rec.kinds_for("k0001") == [EventKind.ADDED, EventKind.DELETED]
    # The initial list hands over objects that exist (background); the watch brings changes.
    assert rec.last_for("k0002").background
    assert not rec.last_for("new").background and not rec.last_for("k0001").background
    changed = rec.last_for("k0000")
    assert (changed.kind, changed.background, changed.previous) == (
        EventKind.MODIFIED,
        False,
        "v0",
    )
    assert sorted(inf.cache.index_keys("first", "n")) == ["new"]
    ok, detail = inf.watch_healthy(max_silence=30)
    assert ok, detail


def test_relists_after_compaction_and_synthesizes_deletes(
    etcd: EtcdProcess,
    client: EtcdClient,
    informer: tuple[Informer[str], Recorder, list[tuple[str, str]]],
) -> None:
    inf, rec, _ = informer
    for name in ("stay", "vanish", "change"):
        client.put(PREFIX + name, b"ok:1")
    inf.start()
    assert inf.wait_synced(30)
    # The watch dies (as if the controller were frozen) and the changes it would have seen
    # are compacted away before it resumes from its old revision.
    watch = wait_until(lambda: inf._watch, what="the watch to start")
    watch.cancel()
    client.delete(PREFIX + "vanish")
    client.put(PREFIX + "change", b"ok:2")
    client.put(PREFIX + "born", b"ok:3")
    etcd.compact()
    inf._start_watch(inf.revision)  # resume: its start revision is gone → relist
    wait_until(lambda: inf.get("born") == "3", timeout=60, what="state after relist")
    assert inf.get("vanish") is None and inf.get("change") == "2" and inf.get("stay") == "1"
    assert EventKind.DELETED in rec.kinds_for("vanish")
    assert rec.kinds_for("change")[-1] is EventKind.MODIFIED
    assert rec.kinds_for("stay") == [EventKind.ADDED]  # unchanged objects are not re-announced
    # A relist hands over only what changed meanwhile: changes, not background work.
    assert not any(rec.last_for(k).background for k in ("vanish", "change", "born"))
    assert rec.last_for("change").previous == "1"
    assert inf.relist_reasons == ["compacted"]  # type: ignore[attr-defined]


def test_resync_hands_every_key_to_handlers(
    client: EtcdClient, informer: tuple[Informer[str], Recorder, list[tuple[str, str]]]
) -> None:
    inf, rec, _ = informer
    client.put(PREFIX + "a", b"ok:a")
    inf.resync_period = 0.2
    inf.start()
    wait_until(lambda: EventKind.RESYNC in rec.kinds_for("a"), what="a resync event")
    with rec.lock:
        assert all(e.background for e in rec.events if e.kind is EventKind.RESYNC)


class FirstLetters:
    """A KeyFilter accepting keys whose first letter is in `letters` (a shard set's stand-in)."""

    def __init__(self, letters: str) -> None:
        self.letters = frozenset(letters)
        self.generation = 1

    def change(self, letters: str) -> None:
        self.letters = frozenset(letters)
        self.generation += 1

    def __call__(self, key: str, kv: KeyValue) -> bool:
        return key[:1] in self.letters

    def keeps(self, key: str, obj: object) -> bool:
        return key[:1] in self.letters


def test_a_narrowed_filter_prunes_in_place_and_a_wider_one_relists(
    client: EtcdClient, informer: tuple[Informer[str], Recorder, list[tuple[str, str]]]
) -> None:
    inf, rec, _ = informer
    for key in ("a1", "a2", "b1", "c1"):
        client.put(PREFIX + key, b"ok:" + key.encode())
    letters = FirstLetters("abc")
    inf.accept = letters
    inf.start()
    assert inf.wait_synced(30)
    assert sorted(inf.cache.keys()) == ["a1", "a2", "b1", "c1"]

    letters.change("a")  # others took b and c over: nothing to read
    inf.refilter(narrowed=True)
    wait_until(lambda: inf.listed_generation == letters.generation, what="the prune")
    assert sorted(inf.cache.keys()) == ["a1", "a2"]
    assert inf.relists == 1  # only the initial list
    for key in ("b1", "c1"):
        gone = rec.last_for(key)
        assert (gone.kind, gone.synthetic, gone.background) == (EventKind.DELETED, True, True)
    # The watch kept running through it, with the narrowed filter.
    client.put(PREFIX + "a3", b"ok:a3")
    client.put(PREFIX + "b2", b"ok:b2")
    wait_until(lambda: inf.get("a3") == "a3", what="a watch event after the prune")
    assert inf.get("b2") is None

    letters.change("ab")  # gained b: only a listing can fill it
    inf.refilter()
    wait_until(lambda: inf.listed_generation == letters.generation, what="the relist")
    assert sorted(inf.cache.keys()) == ["a1", "a2", "a3", "b1", "b2"]
    assert inf.relist_reasons == ["refilter"]  # type: ignore[attr-defined]


def test_a_pending_relist_is_not_downgraded_to_a_prune(
    informer: tuple[Informer[str], Recorder, list[tuple[str, str]]],
) -> None:
    inf, _, _ = informer  # not started: the requests are only recorded
    inf.refilter()
    inf.refilter(narrowed=True)
    assert inf._take_request() == "refilter"
    inf.refilter(narrowed=True)
    assert inf._take_request() == "narrowed"
    inf.refilter(narrowed=True)
    inf._on_compacted(Compacted(5, 7))
    assert inf._take_request() == "compacted"

"""The etcd facade against a real etcd: KV, txn, leases, watch resume, compaction, faults."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from controller.storage import (
    Compacted,
    Compare,
    EtcdClient,
    EventType,
    LeaseKeeper,
    Op,
    Unavailable,
    WatchEvent,
    connect,
)
from controller.storage.codec import prefix_range_end
from tests.etcdproc import EtcdProcess, free_port, start_cluster, wait_until


def test_construction_and_first_call_while_etcd_is_down_then_up(tmp_path: Path) -> None:
    proc = EtcdProcess(data_dir=tmp_path / "late")
    client = connect([proc.endpoint], timeout=1.0)  # nothing listens yet: must not raise
    with pytest.raises(Unavailable):
        client.get("/x")
    proc.start()
    try:
        client.put("/x", b"1")
        kv = client.get("/x")
        assert kv is not None and kv.value == b"1"
    finally:
        proc.stop()


def test_range_pagination_reads_one_snapshot(etcd: EtcdProcess) -> None:
    client = connect(etcd.endpoint)
    for i in range(25):
        client.put(f"/p/k{i:03d}", str(i).encode())
    client.put("/q/outside", b"x")
    pages = list(client.iter_prefix("/p/", page_size=10))
    assert [len(p) for p, _ in pages] == [10, 10, 5]
    revisions = {rev for _, rev in pages}
    assert len(revisions) == 1
    keys = [kv.key for page, _ in pages for kv in page]
    assert keys == [f"/p/k{i:03d}" for i in range(25)]
    empty = list(client.iter_prefix("/none/"))
    assert empty == [([], revisions.pop())] or (empty[0][0] == [] and empty[0][1] > 0)


def test_read_ahead_pages_are_one_snapshot_and_a_compaction_reaches_the_caller(
    etcd: EtcdProcess,
) -> None:
    client = connect(etcd.endpoint)
    for i in range(60):
        client.put(f"/ra/k{i:03d}", b"before")
    pages = client.iter_prefix("/ra/", page_size=10, ahead=True)
    first, snapshot = next(pages)
    for i in range(60):  # after the snapshot: no page may show these
        client.put(f"/ra/k{i:03d}", b"after")
    rest = list(pages)
    assert [len(p) for p, _ in [(first, snapshot), *rest]] == [10] * 6
    assert {rev for _, rev in rest} == {snapshot}
    assert {kv.value for page, _ in rest for kv in page} | {kv.value for kv in first} == {b"before"}

    # Read ahead holds at most two pages beyond the one taken (one queued, one in hand), so
    # a compaction past the snapshot now must reach the caller by the fourth page.
    pages = client.iter_prefix("/ra/", page_size=10, ahead=True)
    _, snapshot = next(pages)
    client.put("/ra/k000", b"later")
    client.compact(client.revision())
    taken = 1
    with pytest.raises(Compacted):
        for _ in pages:
            taken += 1
    assert taken <= 3


def test_absent_key_and_strange_keys(etcd: EtcdProcess) -> None:
    client = connect(etcd.endpoint)
    assert client.get("/nope") is None
    odd = "/p/üñí code/\x01\x7f"
    client.put(odd, b"\xff\x00binary")
    kv = client.get(odd)
    assert kv is not None and kv.key == odd and kv.value == b"\xff\x00binary"


def test_txn_compare_mod_revision_returns_current_on_failure(etcd: EtcdProcess) -> None:
    client = connect(etcd.endpoint)
    rev = client.put("/t/a", b"v1").revision
    ok = client.txn([Compare.mod_revision("/t/a", rev)], [Op.put("/t/a", b"v2")], [Op.get("/t/a")])
    assert ok.succeeded
    stale = client.txn(
        [Compare.mod_revision("/t/a", rev)], [Op.put("/t/a", b"v3")], [Op.get("/t/a")]
    )
    assert not stale.succeeded
    current = stale.responses[0]
    assert current.kvs[0].value == b"v2"  # type: ignore[union-attr]
    assert current.kvs[0].mod_revision == ok.revision  # type: ignore[union-attr]


def test_create_if_absent_has_one_winner(etcd: EtcdProcess) -> None:
    client = connect(etcd.endpoint)
    wins: list[int] = []
    barrier = threading.Barrier(8)

    def racer(i: int) -> None:
        barrier.wait()
        r = client.txn([Compare.absent("/race")], [Op.put("/race", str(i).encode())])
        if r.succeeded:
            wins.append(i)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    kv = client.get("/race")
    assert kv is not None and kv.value == str(wins[0]).encode()


def test_lease_grant_keepalive_revoke_and_ttl_keys(etcd: EtcdProcess) -> None:
    client = connect(etcd.endpoint)
    lease = client.lease_grant(5)
    client.put("/lease/k", b"v", lease=lease.id)
    assert client.lease_keepalive_once(lease.id) == 5
    assert 0 < client.lease_time_to_live(lease.id) <= 5
    client.lease_revoke(lease.id)
    assert client.get("/lease/k") is None
    assert client.lease_time_to_live(lease.id) == -1


def test_lease_keeper_survives_a_short_etcd_restart(etcd: EtcdProcess) -> None:
    client = connect(etcd.endpoint, timeout=1.0)
    keeper = LeaseKeeper(client, ttl=10)
    client.put("/kept", b"v", lease=keeper.id)
    etcd.restart()
    # The keeper keeps refreshing after etcd comes back: the key outlives its 10 s TTL.
    refreshed_at = time.monotonic()
    wait_until(lambda: time.monotonic() - refreshed_at > 11, timeout=15, what="a TTL to pass")
    assert not keeper.expired.is_set()
    assert client.get("/kept") is not None
    keeper.revoke()
    assert client.get("/kept") is None


def _collect(client: EtcdClient, prefix: str, **kw: object) -> tuple[list[WatchEvent], object]:
    events: list[WatchEvent] = []
    lock = threading.Lock()

    def cb(batch: list[WatchEvent]) -> None:
        with lock:
            events.extend(batch)

    handle = client.watch(prefix, cb, prefix=True, **kw)  # type: ignore[arg-type]
    return events, handle


def test_watch_resumes_without_gaps_after_etcd_kill_and_restart(etcd: EtcdProcess) -> None:
    client = connect(etcd.endpoint, timeout=2.0)
    events, handle = _collect(client, "/w/", idle_timeout=2.0)
    writer = connect(etcd.endpoint, timeout=2.0)
    for i in range(20):
        writer.put(f"/w/{i}", b"a")
    wait_until(lambda: len(events) == 20, what="first 20 events")
    etcd.kill()
    etcd.start()
    for i in range(20, 40):
        writer.put(f"/w/{i}", b"b")
    writer.delete("/w/0")
    wait_until(lambda: len(events) == 41, timeout=30, what="events after restart")
    revisions = [e.revision for e in events]
    assert revisions == sorted(set(revisions)), "no duplicates, in order"
    assert [e.kv.key for e in events[:40]] == [f"/w/{i}" for i in range(40)]
    assert events[-1].type is EventType.DELETE and events[-1].kv.key == "/w/0"
    assert handle.restarts >= 1  # type: ignore[attr-defined]
    handle.cancel()  # type: ignore[attr-defined]
    assert not handle.alive()  # type: ignore[attr-defined]


def test_watch_from_compacted_revision_reports_compacted(etcd: EtcdProcess) -> None:
    client = connect(etcd.endpoint)
    first = client.put("/c/a", b"1").revision
    for i in range(5):
        client.put("/c/a", str(i).encode())
    compact_at = client.put("/c/a", b"last").revision
    client.compact(compact_at)
    got: list[Compacted] = []
    done = threading.Event()

    def on_compacted(exc: Compacted) -> None:
        got.append(exc)
        done.set()

    handle = client.watch(
        "/c/", lambda b: None, prefix=True, start_revision=first, on_compacted=on_compacted
    )
    assert done.wait(10)
    assert got[0].compact_revision == compact_at
    assert handle.compacted is got[0]
    with pytest.raises(Compacted):
        client.range("/c/a", revision=first)


def test_sigstopped_etcd_gives_unavailable_within_timeout(etcd: EtcdProcess) -> None:
    client = connect(etcd.endpoint, timeout=1.0)
    client.put("/s", b"1")
    etcd.pause()
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable):
            client.get("/s")
        with pytest.raises(Unavailable) as info:
            client.txn([Compare.absent("/s2")], [Op.put("/s2", b"x")])
        # A txn whose request left may have been applied: the error says so.
        assert info.value.maybe_applied
        assert time.monotonic() - started < 30  # a bound against hanging, not a speed claim
    finally:
        etcd.resume()
    kv = client.get("/s")
    assert kv is not None


def _put_surely(client: EtcdClient, key: str, value: bytes) -> None:
    """The caller's side of an unknown outcome: a put the client would not re-send (etcd lost
    its leader mid-proposal, say) is re-read, and sent again only if it did not land."""
    for _ in range(5):
        try:
            client.put(key, value)
            return
        except Unavailable as exc:
            if not exc.maybe_applied:
                raise
            current = client.get(key)
            if current is not None and current.value == value:
                return
    raise AssertionError(f"{key} never landed")


def test_failover_to_next_member_when_first_is_killed(tmp_path: Path) -> None:
    members = start_cluster(tmp_path, 3)
    try:
        # Killing a member may cost an election (seconds on a loaded machine): allow for it.
        client = connect([m.endpoint for m in members], timeout=15.0)
        client.put("/f/before", b"1")
        members[0].kill()
        for i in range(20):
            _put_surely(client, f"/f/{i}", b"x")
        assert client.current_endpoint != members[0].endpoint
        assert len(client.range("/f/", prefix_range_end("/f/")).kvs) == 21
    finally:
        for m in members:
            m.stop()


def test_unreachable_endpoints_fail_over_in_order(etcd: EtcdProcess) -> None:
    dead = f"127.0.0.1:{free_port()}"
    client = connect([dead, etcd.endpoint], timeout=3.0)
    client.put("/o", b"1")
    assert client.current_endpoint == etcd.endpoint

"""Sharded active replicas as real processes on one real etcd (docs/architecture.md, Sharding).

Every replica reconciles its share of the keys at the same time; these tests hold them to:

- all workers converge, and **no key is ever reconciled by two replicas at once**: every
  reconcile of every process is appended, with its start and end on the host's monotonic
  clock, to one file (`LABCTL_TEST_RECONCILE_LOG`), and overlapping intervals of one key in
  two replicas fail the test — across joins, leaves and a SIGKILL;
- **no side effect is doubled**: the sim cloud (kept in etcd) holds one instance per uid, and
  its audit trail shows one create per uid;
- a replica SIGKILLed mid-convergence has its shards held by the survivors within its lease
  TTL (+ 5 s), and the workers in them converge;
- a replica SIGSTOPped past its lease makes no provider call after it wakes (refused before
  the call leaves, by the lease bound) and exits non-zero; its shards are already held by the
  others.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from controller.labworker.sim import SimProvider, read_audit_log
from controller.storage import EtcdClient, connect
from tests.e2e.harness import PREFIX, ControllerProcess, apply, list_workers, worker_manifest
from tests.etcdproc import EtcdProcess, wait_until

TTL = 3
SHARDS = 32
OWNERS = f"{PREFIX}/shards/owners/"


def replicas(
    etcd: EtcdProcess, tmp_path: Path, names: list[str], **extra: str
) -> dict[str, ControllerProcess]:
    shared = {
        "SHARDING": "true",
        "SHARD_COUNT": str(SHARDS),
        "SHARD_LEASE_TTL": str(TTL),
        "LEADER_ELECTION_TTL": str(TTL),
        "LAB_SIM_DELAY": "0.2",
        "LAB_SIM_AUDIT_LOG": str(tmp_path / "sim-audit.jsonl"),
        "LABCTL_TEST_RECONCILE_LOG": str(tmp_path / "reconciles.jsonl"),
        "WATCH_HEARTBEAT_INTERVAL": "1",
        "SHUTDOWN_GRACE": "10",
        **extra,
    }
    found = {}
    for name in names:
        (tmp_path / name).mkdir()
        found[name] = ControllerProcess(
            etcd, tmp_path / name, env_extra={**shared, "LEADER_ELECTION_ID": name}
        )
    return found


def shard_holders(client: EtcdClient) -> dict[int, str]:
    kvs, _ = client.list_prefix(OWNERS)
    return {int(kv.key[len(OWNERS) :]): kv.value.decode() for kv in kvs}


def ready_count(etcd: EtcdProcess) -> int:
    return sum(w.get("status", {}).get("phase") == "Ready" for w in list_workers(etcd))


def overlapping_reconciles(path: Path) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Pairs of reconciles of one key (same controller) by two replicas whose intervals meet."""
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # blank, or cut short by a SIGKILL (that reconcile never ended anyway)
        by_key[(entry["controller"], entry["key"])].append(entry)
    found = []
    for (_, key), entries in by_key.items():
        entries.sort(key=lambda e: e["start"])
        latest_end: dict[str, Any] | None = None
        for entry in entries:
            if (
                latest_end is not None
                and entry["start"] < latest_end["end"]
                and entry["replica"] != latest_end["replica"]
            ):
                found.append((key, latest_end, entry))
            if latest_end is None or entry["end"] > latest_end["end"]:
                latest_end = entry
    return found


def assert_one_instance_per_worker(client: EtcdClient, etcd: EtcdProcess, audit: Path) -> None:
    uids = {w["metadata"]["uid"] for w in list_workers(etcd)}
    created = SimProvider(client, PREFIX).created()
    assert set(created) == uids
    assert all(len(ids) == 1 for ids in created.values()), "an instance was created twice"
    creates = Counter(e["uid"] for e in read_audit_log(audit) if e["effect"] == "created")
    assert set(creates.values()) == {1}, "one create per worker"


def test_three_replicas_converge_1000_workers_through_a_sigkill(
    etcd: EtcdProcess, tmp_path: Path
) -> None:
    procs = replicas(etcd, tmp_path, ["a", "b", "c"])
    client = connect(etcd.endpoint)
    try:
        for proc in procs.values():
            proc.start()
        for proc in procs.values():
            proc.wait_ready(timeout=120)
        holders = shard_holders(client)
        assert len(holders) == SHARDS and set(holders.values()) == {"a", "b", "c"}

        apply(etcd, [worker_manifest(f"w{i:04d}") for i in range(1000)])
        wait_until(lambda: ready_count(etcd) >= 200, timeout=300, what="200 workers Ready")

        killed_at = time.monotonic()
        procs["c"].kill()  # mid-convergence: c's shards hold workers still on their way
        wait_until(
            lambda: (
                set(shard_holders(client).values()) == {"a", "b"}
                and len(shard_holders(client)) == SHARDS
            ),
            timeout=TTL + 5,
            what="c's shards held by a and b within its lease TTL + 5 s",
        )
        moved_after = time.monotonic() - killed_at
        wait_until(lambda: ready_count(etcd) == 1000, timeout=300, what="all 1,000 workers Ready")

        overlaps = overlapping_reconciles(tmp_path / "reconciles.jsonl")
        assert not overlaps, (
            f"{len(overlaps)} keys reconciled by two replicas at once: {overlaps[:2]}"
        )
        assert_one_instance_per_worker(client, etcd, tmp_path / "sim-audit.jsonl")
        by_replica = Counter(e["identity"] for e in read_audit_log(tmp_path / "sim-audit.jsonl"))
        assert set(by_replica) == {"a", "b", "c"}, f"every replica did work: {by_replica}"
        print(f"c's shards moved {moved_after:.1f}s after SIGKILL; calls {dict(by_replica)}")
        for name in ("a", "b"):
            assert procs[name].terminate() == 0
    finally:
        for proc in procs.values():
            proc.kill()
        client.close()


def test_a_replica_stopped_past_its_lease_makes_no_call_after_it_wakes(
    etcd: EtcdProcess, tmp_path: Path
) -> None:
    procs = replicas(etcd, tmp_path, ["a", "b"], LAB_SIM_DELAY="1")
    a, b = procs["a"], procs["b"]
    audit = tmp_path / "sim-audit.jsonl"
    client = connect(etcd.endpoint)
    try:
        a.start()
        b.start()
        a.wait_ready(timeout=120)
        b.wait_ready(timeout=120)
        apply(etcd, [worker_manifest(f"w{i:03d}") for i in range(80)])
        wait_until(
            lambda: (
                any(e["identity"] == "b" for e in read_audit_log(audit))
                if audit.exists()
                else False
            ),
            what="b provisioning its share",
        )
        assert b.proc is not None
        b.proc.send_signal(signal.SIGSTOP)
        stopped_at = time.time()
        wait_until(
            lambda: (
                set(shard_holders(client).values()) == {"a"}
                and len(shard_holders(client)) == SHARDS
            ),
            timeout=TTL + 10,
            what="a holding every shard once b's lease expired",
        )
        woke_at = time.time()
        b.proc.send_signal(signal.SIGCONT)
        assert b.proc.wait(60) != 0, "b must exit non-zero once it finds its shards lost"
        wait_until(lambda: ready_count(etcd) == 80, timeout=120, what="80 workers Ready")

        late = [e for e in read_audit_log(audit) if e["identity"] == "b" and e["time"] > woke_at]
        assert not late, f"b called the cloud after waking: {late[:3]}"
        in_stop = [
            e
            for e in read_audit_log(audit)
            if e["identity"] == "b" and stopped_at < e["time"] <= woke_at
        ]
        assert not in_stop
        assert_one_instance_per_worker(client, etcd, audit)
        refusals = [
            line
            for line in b.logs()
            if "refused" in str(line.get("event", "")) or "refused" in str(line.get("message", ""))
        ]
        print(f"b logged {len(refusals)} refusals after waking")
        assert a.terminate() == 0
    finally:
        for proc in procs.values():
            if proc.proc is not None and proc.proc.poll() is None:
                proc.proc.send_signal(signal.SIGCONT)
            proc.kill()
        client.close()


def test_scaling_1_to_3_to_1_replicas_under_load_leaves_no_worker_behind(
    etcd: EtcdProcess, tmp_path: Path
) -> None:
    procs = replicas(etcd, tmp_path, ["a", "b", "c"])
    a, b, c = procs["a"], procs["b"], procs["c"]
    client = connect(etcd.endpoint)
    try:
        a.start().wait_ready(timeout=120)
        apply(etcd, [worker_manifest(f"w{i:03d}") for i in range(200)])
        b.start()
        c.start()
        b.wait_ready(timeout=120)
        c.wait_ready(timeout=120)
        assert set(shard_holders(client).values()) == {"a", "b", "c"}

        # a only lost shards: it dropped their objects in place, it did not relist.
        def events_of_a() -> list[tuple[Any, Any]]:
            return [(line.get("event"), line.get("reason")) for line in a.logs()]

        wait_until(lambda: ("informer_pruned", None) in events_of_a(), what="a pruning")
        assert ("informer_listed", "refilter") not in events_of_a()
        apply(etcd, [worker_manifest(f"x{i:03d}") for i in range(200)])
        assert b.terminate() == 0
        assert c.terminate() == 0
        # A clean leave hands the shards over at once (revoked lease), not after a TTL.
        wait_until(
            lambda: (
                set(shard_holders(client).values()) == {"a"}
                and len(shard_holders(client)) == SHARDS
            ),
            timeout=30,
            what="a holding every shard after b and c left",
        )
        wait_until(lambda: ready_count(etcd) == 400, timeout=180, what="400 workers Ready")
        overlaps = overlapping_reconciles(tmp_path / "reconciles.jsonl")
        assert not overlaps, (
            f"{len(overlaps)} keys reconciled by two replicas at once: {overlaps[:2]}"
        )
        assert_one_instance_per_worker(client, etcd, tmp_path / "sim-audit.jsonl")
        assert a.terminate() == 0
    finally:
        for proc in procs.values():
            proc.kill()
        client.close()

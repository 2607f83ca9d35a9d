"""End-to-end: two `labctl run` replicas share one simulated cloud (in etcd) across a failover.

Issue 7 item 6: with the simulated cloud in each process's memory, the new leader had never
heard of the old leader's instances, so after a SIGKILL failover Ready workers went
HostUnhealthy and workers mid-provisioning went Failed. Here the leader is SIGKILLed while
workers are provisioning; the standby takes over; every phase every worker ever had is read
back from etcd's history (a watch from revision 1), so even a transient Failed or
HostUnhealthy (a condition reason on a Ready worker) is seen.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections import Counter, defaultdict
from pathlib import Path

from controller.labworker.reasons import HOST_UNHEALTHY
from controller.labworker.sim import SimProvider, read_audit_log
from controller.storage import EtcdClient, EventType, WatchEvent, connect
from tests.e2e.harness import (
    PREFIX,
    REPO,
    ControllerProcess,
    apply,
    base_env,
    labctl_cmd,
    list_workers,
    worker_manifest,
)
from tests.etcdproc import EtcdProcess, free_port, wait_until

WORKERS = f"{PREFIX}/lab-workers/"
FIRST_BATCH, SECOND_BATCH = 60, 40
TTL = 3


def stored_phases(client: EtcdClient) -> dict[str, str]:
    kvs, _ = client.list_prefix(WORKERS)
    return {kv.key: (json.loads(kv.value).get("status") or {}).get("phase") or "" for kv in kvs}


def status_history(client: EtcdClient) -> dict[str, list[tuple[str, set[str]]]]:
    """Every (phase, condition reasons) each worker key ever stored, in order, replayed
    from etcd's history."""
    kvs, _ = client.list_prefix(WORKERS)
    last = max(kv.mod_revision for kv in kvs)
    history: dict[str, list[tuple[str, set[str]]]] = defaultdict(list)
    seen = threading.Event()

    def deliver(events: list[WatchEvent]) -> None:
        for event in events:
            if event.type is EventType.PUT:
                status = json.loads(event.kv.value).get("status") or {}
                reasons = {c.get("reason", "") for c in status.get("conditions") or []}
                history[event.kv.key].append((status.get("phase") or "", reasons))
            if event.revision >= last:
                seen.set()

    handle = client.watch(WORKERS, deliver, prefix=True, start_revision=1)
    try:
        assert seen.wait(30), "the watch did not replay the history up to now"
    finally:
        handle.cancel()
    return dict(history)


def metric_sum(ctl: ControllerProcess, name: str) -> float:
    total = 0.0
    for line in ctl.get("/metrics")[1].splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_sigkill_failover_mid_provisioning_loses_no_instance(
    etcd: EtcdProcess, tmp_path: Path
) -> None:
    audit = tmp_path / "sim-audit.jsonl"
    shared = {
        "LEADER_ELECT": "true",
        "LEADER_ELECTION_TTL": str(TTL),
        "LAB_SIM_DELAY": "1",
        "LAB_SIM_AUDIT_LOG": str(audit),
        "HEALTH_CHECK_INTERVAL": "1",
    }
    replicas = {
        name: ControllerProcess(
            etcd, tmp_path / name, env_extra={**shared, "LEADER_ELECTION_ID": name}
        )
        for name in ("a", "b")
    }
    for name in replicas:
        (tmp_path / name).mkdir()
    a, b = replicas["a"], replicas["b"]
    client = connect(etcd.endpoint)
    try:
        apply(etcd, [worker_manifest(f"f{i:03d}") for i in range(FIRST_BATCH)])
        a.start().wait_ready()
        wait_until(lambda: metric_sum(a, "leader_election_master_status") == 1.0, what="a leads")
        b.start()
        wait_until(
            lambda: metric_sum(b, "leader_election_master_status") == 0.0, what="b stands by"
        )
        wait_until(
            lambda: list(stored_phases(client).values()) == ["Ready"] * FIRST_BATCH,
            timeout=90,
            what=f"the first {FIRST_BATCH} workers Ready under a",
        )

        apply(etcd, [worker_manifest(f"s{i:03d}") for i in range(SECOND_BATCH)])
        wait_until(
            lambda: (
                sum(p in ("Provisioning", "Starting") for p in stored_phases(client).values()) >= 5
            ),
            what="the second batch provisioning under a",
        )
        a.kill()  # SIGKILL mid-provisioning: no resignation, b waits out the lease
        total = FIRST_BATCH + SECOND_BATCH
        wait_until(
            lambda: list(stored_phases(client).values()) == ["Ready"] * total,
            timeout=TTL + 90,
            what="b taking over and every worker Ready",
        )
        assert metric_sum(b, "leader_election_master_status") == 1.0
        # b health-checks the Ready hosts a made (HEALTH_CHECK_INTERVAL=1): the reconciles
        # that used to turn them HostUnhealthy. Several rounds of them over the whole fleet:
        wait_until(
            lambda: metric_sum(b, "controller_runtime_reconcile_total") >= 3 * total,
            timeout=60,
            what="b re-checking every worker's host",
        )
        assert list(stored_phases(client).values()) == ["Ready"] * total
        assert b.terminate() == 0

        history = status_history(client)
        assert len(history) == total
        failed = sorted(k for k, states in history.items() if any(p == "Failed" for p, _ in states))
        unhealthy = sorted(
            k for k, states in history.items() if any(HOST_UNHEALTHY in r for _, r in states)
        )
        assert not failed, f"{len(failed)} workers went Failed, e.g. {failed[:3]}"
        assert not unhealthy, f"{len(unhealthy)} workers went HostUnhealthy, e.g. {unhealthy[:3]}"
        phases = [[phase for phase, _ in states] for states in history.values()]
        assert all(p[-1] == "Ready" and "Provisioning" in p for p in phases), "history replayed"

        workers = list_workers(etcd)
        for worker in workers:
            ready = [c for c in worker["status"]["conditions"] if c["type"] == "Ready"]
            assert [c["status"] for c in ready] == ["True"], worker["metadata"]["name"]
        uids = {w["metadata"]["uid"] for w in workers}
        created = SimProvider(client, PREFIX).created()
        assert set(created) == uids
        assert all(len(ids) == 1 for ids in created.values()), "an instance was created twice"
        entries = read_audit_log(audit)
        creates = Counter(e["uid"] for e in entries if e["effect"] == "created")
        assert set(creates) <= uids and set(creates.values()) == {1}, "one create per worker"
        assert not [e for e in entries if e["outcome"] == "fatal"]
        by_b = [e for e in entries if e["identity"] == "b"]
        assert by_b, "b made no provider call: the failover happened after the work was done"
    finally:
        a.kill()
        b.kill()
        client.close()


def test_a_bad_sim_setting_stops_labctl_run_with_one_error_line(etcd: EtcdProcess) -> None:
    env = base_env(
        etcd,
        LAB_SIM_DELAY="fast",
        METRICS_PORT=str(free_port()),
        HEALTH_PORT=str(free_port()),
        HTTP_HOST="127.0.0.1",
    )
    res = subprocess.run(
        [*labctl_cmd(), "run"], env=env, capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert res.returncode == 1
    assert "Traceback" not in res.stderr + res.stdout
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: LAB_PROVIDER=sim: LAB_SIM_DELAY / --lab-sim-delay = 'fast': "
        "not a number of seconds >= 0"
    ]

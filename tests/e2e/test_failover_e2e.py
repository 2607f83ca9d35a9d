"""Leader failover as an operator would drive it: resign, SIGKILL, and a leader stalled past
its lease (SIGSTOP) that wakes up while new workers arrive.

The simulated cloud lives in etcd (shared by both replicas) and keeps an audit trail of every
side-effecting call with the caller's identity: that is how these tests see provider calls.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from controller.labworker.sim import read_audit_log
from tests.e2e.harness import (
    ControllerProcess,
    all_in_phase,
    apply,
    worker_manifest,
)
from tests.etcdproc import EtcdProcess, wait_until

TTL = 3


def replicas(
    etcd: EtcdProcess, tmp_path: Path, audit: Path, **extra: str
) -> list[ControllerProcess]:
    out = []
    for identity in ("a", "b"):
        (tmp_path / identity).mkdir()
        env = {
            "LEADER_ELECT": "true",
            "LEADER_ELECTION_TTL": str(TTL),
            "LEADER_ELECTION_ID": identity,
            "LAB_SIM_AUDIT_LOG": str(audit),
            **extra,
        }
        out.append(ControllerProcess(etcd, tmp_path / identity, env_extra=env))
    return out


def test_a_resigning_leader_hands_over_at_once(etcd: EtcdProcess, tmp_path: Path) -> None:
    first, second = replicas(etcd, tmp_path, tmp_path / "audit.jsonl")
    try:
        first.start().wait_ready()
        wait_until(lambda: first.leader_status() == 1.0, what="the first replica leading")
        second.start().wait_ready()
        wait_until(lambda: second.leader_status() == 0.0, what="the second standing by")
        assert first.terminate(timeout=30) == 0  # SIGTERM: drain, resign
        # The standby is elected on the resignation itself, not on the lease running out: a
        # handover slower than the lease TTL means it waited for expiry.
        wait_until(lambda: second.leader_status() == 1.0, timeout=TTL, what="the handover")
        apply(etcd, [worker_manifest(f"r{i}") for i in range(5)])
        wait_until(lambda: all_in_phase(etcd, "Ready", 5), timeout=60, what="5 Ready")
        assert second.terminate(timeout=30) == 0
    finally:
        first.kill()
        second.kill()


def test_a_deposed_leader_makes_no_provider_call_after_it_wakes(
    etcd: EtcdProcess, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    old, new = replicas(etcd, tmp_path, audit, LAB_SIM_DELAY="1")
    try:
        old.start().wait_ready()
        wait_until(lambda: old.leader_status() == 1.0, what="'a' leading")
        apply(etcd, [worker_manifest(f"w{i}") for i in range(5)])
        wait_until(lambda: all_in_phase(etcd, "Ready", 5), timeout=60, what="5 Ready under 'a'")
        new.start().wait_ready()
        wait_until(lambda: new.leader_status() == 0.0, what="'b' standing by")

        assert old.proc is not None
        old.proc.send_signal(signal.SIGSTOP)  # stalled past its lease, as in a long GC pause
        wait_until(lambda: new.leader_status() == 1.0, timeout=TTL * 5, what="'b' taking over")
        apply(etcd, [worker_manifest(f"w{i}") for i in range(5, 15)])
        # Wake the old leader while 'b' is mid-way through provisioning the new workers: its
        # cache and queue fill with work it no longer owns.
        wait_until(
            lambda: any(e["identity"] == "b" and e["call"] == "provision" for e in _audit(audit)),
            timeout=30,
            what="'b' provisioning",
        )
        woke_at = time.time()
        old.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: all_in_phase(etcd, "Ready", 15), timeout=90, what="15 Ready")
        assert old.proc.wait(30) == 1, "a deposed leader exits non-zero to be restarted"

        late = [e for e in _audit(audit) if e["identity"] == "a" and e["time"] >= woke_at]
        assert late == [], f"the deposed leader made provider calls after waking: {late}"
        calls_by_b = [e for e in _audit(audit) if e["identity"] == "b"]
        assert {e["uid"] for e in calls_by_b if e["call"] == "provision"}, "'b' did the work"
        events = [str(line.get("message", line.get("event", ""))) for line in old.logs()]
        assert any("lost leadership" in e for e in events)
    finally:
        old.kill()
        new.kill()


def _audit(path: Path) -> list[dict[str, object]]:
    return read_audit_log(path) if path.exists() else []

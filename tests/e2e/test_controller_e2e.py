"""End-to-end: `labctl run` as a subprocess against a real etcd, driven with `labctl`/etcdctl.

Each scenario waits for conditions (phases in etcd), never for fixed times.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.labworker.model import LabWorker
from controller.labworker.repository import LabWorkerRepository
from controller.labworker.sim import SimProvider
from controller.storage import connect
from tests.e2e.harness import (
    PREFIX,
    ControllerProcess,
    all_in_phase,
    apply,
    labctl,
    list_workers,
    phases,
    worker_manifest,
)
from tests.etcdproc import EtcdProcess, wait_until

KEYS = f"{PREFIX}/lab-workers/"


@pytest.fixture
def controller(etcd: EtcdProcess, tmp_path: Path) -> Iterator[ControllerProcess]:
    ctl = ControllerProcess(etcd, tmp_path)
    try:
        yield ctl
    finally:
        ctl.kill()


def repo_for(etcd: EtcdProcess) -> LabWorkerRepository:
    return LabWorkerRepository.for_prefix(connect(etcd.endpoint), PREFIX)


def test_300_workers_converge_then_drain_stop_start_terminate_delete(
    etcd: EtcdProcess, controller: ControllerProcess
) -> None:
    apply(etcd, [worker_manifest(f"w{i:03d}", labTrack=f"track-{i % 3}") for i in range(300)])
    controller.start().wait_ready()
    wait_until(lambda: all_in_phase(etcd, "Ready", 300), timeout=180, what="300 workers Ready")
    ready = list_workers(etcd, "default")
    assert all(w["status"]["observedGeneration"] == w["metadata"]["generation"] for w in ready)
    assert all("lab.neuroglia.io/finalizer" in w["metadata"]["finalizers"] for w in ready)

    def set_desired(name: str, desired: str) -> None:
        apply(etcd, [worker_manifest(name, labTrack="track-0", desiredPhase=desired)])

    def phase_of(name: str) -> str:
        return phases(etcd).get(f"default/{name}", "<gone>")

    # drain → stop → start again
    set_desired("w000", "Stopped")
    wait_until(lambda: phase_of("w000") == "Stopped", timeout=60, what="w000 Stopped")
    set_desired("w000", "Ready")
    wait_until(lambda: phase_of("w000") == "Ready", timeout=60, what="w000 Ready again")
    # drain only, then back
    set_desired("w003", "Draining")
    wait_until(lambda: phase_of("w003") == "Draining", timeout=60, what="w003 Draining")
    set_desired("w003", "Ready")
    wait_until(lambda: phase_of("w003") == "Ready", timeout=60, what="w003 Ready")
    # terminate through desiredPhase: the object stays, Terminated
    set_desired("w006", "Terminated")
    wait_until(lambda: phase_of("w006") == "Terminated", timeout=60, what="w006 Terminated")
    # delete: finalizer teardown, then the key disappears
    res = labctl(etcd, "delete", "labworker", "w009")
    assert "deleted" in res.stdout
    labctl(etcd, "wait", "labworker/w009", "--for=delete", "--timeout=60s")
    assert etcd.get_raw(KEYS + "default/w009") is None
    assert phase_of("w012") == "Ready"
    assert controller.terminate() == 0


def test_concurrent_spec_writer_loses_nothing(
    etcd: EtcdProcess, controller: ControllerProcess
) -> None:
    names = [f"c{i}" for i in range(20)]
    apply(etcd, [worker_manifest(n) for n in names])
    controller.start().wait_ready()
    repo = repo_for(etcd)
    repo.max_conflict_retries = 1000
    stop = threading.Event()
    writes: dict[str, int] = {n: 0 for n in names}
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            round_ = 0
            while not stop.is_set() and round_ < 15:
                round_ += 1
                for n in names:

                    def bump(w: LabWorker, r: int = round_) -> None:
                        w.spec.instance.tags["round"] = str(r)

                    if repo.update_spec("default", n, bump).written:
                        writes[n] += 1
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=writer)
    t.start()
    t.join(120)
    stop.set()
    assert not errors, errors

    def converged() -> bool:
        for w in list_workers(etcd, "default"):
            st = w.get("status", {})
            if (
                st.get("phase") != "Ready"
                or st.get("observedGeneration") != w["metadata"]["generation"]
            ):
                return False
        return True

    wait_until(converged, timeout=120, what="all Ready at their latest generation")
    for w in list_workers(etcd, "default"):
        name = w["metadata"]["name"]
        assert w["spec"]["instance"]["tags"]["round"] == "15"  # the last spec write survived
        assert w["metadata"]["generation"] == 1 + writes[name]  # one bump per spec change


def test_etcd_killed_and_restarted_mid_convergence(
    etcd: EtcdProcess, controller: ControllerProcess
) -> None:
    controller.env_extra["LAB_SIM_DELAY"] = "0.2"
    apply(etcd, [worker_manifest(f"k{i:02d}") for i in range(60)])
    controller.start().wait_ready()
    wait_until(
        lambda: any(p not in ("", "Pending") for p in phases(etcd).values()),
        what="convergence under way",
    )
    etcd.kill()
    etcd.start()
    wait_until(lambda: all_in_phase(etcd, "Ready", 60), timeout=180, what="60 Ready after restart")
    assert controller.alive()
    metrics = controller.get("/metrics")[1]
    assert "labctl_informer_watch_restarts_total" in metrics


def test_watch_revision_compacted_while_controller_is_stopped(
    etcd: EtcdProcess, controller: ControllerProcess
) -> None:
    apply(etcd, [worker_manifest(f"p{i}") for i in range(10)])
    controller.start().wait_ready()
    wait_until(lambda: all_in_phase(etcd, "Ready", 10), timeout=60, what="10 Ready")
    assert controller.proc is not None
    controller.proc.send_signal(signal.SIGSTOP)  # frozen with its old watch revision
    try:
        etcd.restart()  # the frozen controller's watch stream is now dead
        apply(etcd, [worker_manifest(f"p{i}", desiredPhase="Stopped") for i in range(5)])
        labctl(etcd, "delete", "labworker", "p9")  # sets deletionTimestamp
        apply(etcd, [worker_manifest("p-new")])
        for _ in range(3):
            apply(etcd, [worker_manifest("p8", labTrack="churn")])
            apply(etcd, [worker_manifest("p8")])
        etcd.compact()
    finally:
        controller.proc.send_signal(signal.SIGCONT)

    def converged() -> bool:
        p = phases(etcd)
        return (
            all(p.get(f"default/p{i}") == "Stopped" for i in range(5))
            and all(p.get(f"default/p{i}") == "Ready" for i in (5, 6, 7, 8))
            and "default/p9" not in p
            and p.get("default/p-new") == "Ready"
        )

    wait_until(converged, timeout=120, what="convergence after compaction")
    relists = [
        line
        for line in controller.get("/metrics")[1].splitlines()
        if line.startswith("labctl_informer_relists_total{") and 'reason="compacted"' in line
    ]
    assert relists and float(relists[0].rsplit(" ", 1)[1]) >= 1


def test_sigkill_mid_run_never_creates_a_second_instance(
    etcd: EtcdProcess, controller: ControllerProcess
) -> None:
    controller.env_extra.update(LAB_SIM_DELAY="2")
    apply(etcd, [worker_manifest(f"s{i:02d}") for i in range(40)])
    controller.start().wait_ready()
    wait_until(
        lambda: sum(p == "Provisioning" for p in phases(etcd).values()) >= 5,
        what="workers provisioning",
    )
    controller.kill()  # SIGKILL mid-run
    controller.start().wait_ready()
    wait_until(lambda: all_in_phase(etcd, "Ready", 40), timeout=180, what="40 Ready after SIGKILL")
    created = SimProvider(connect(etcd.endpoint), PREFIX).created()  # the cloud, in etcd
    uids = {w["metadata"]["uid"] for w in list_workers(etcd, "default")}
    assert set(created) == uids
    assert all(len(ids) == 1 for ids in created.values()), "an instance was created twice"


def test_garbage_under_the_prefix_is_reported_not_touched(
    etcd: EtcdProcess, controller: ControllerProcess
) -> None:
    garbage: dict[str, bytes] = {
        KEYS + "default/not-json": b"{this is not json",
        KEYS + "default/schema-invalid": json.dumps(
            {"metadata": {"name": "schema-invalid"}, "spec": {"instance": {"volumeSizeGb": 5}}}
        ).encode(),
        KEYS + "default/huge": b'{"pad":"' + b"x" * (1024 * 1024) + b'"}',
        KEYS + "odd/key/with/slashes": json.dumps(worker_manifest("slashes")).encode(),
        KEYS + "default/\u00e9t\u00e9 \x01": b"[]",
    }
    for key, value in garbage.items():
        etcd.put(key, value)
    apply(etcd, [worker_manifest(f"g{i}") for i in range(10)])
    controller.start().wait_ready()
    wait_until(lambda: all_in_phase(etcd, "Ready", 10), timeout=60, what="the valid fleet Ready")
    for key, value in garbage.items():
        assert etcd.get_raw(key) == value, f"{key!r} was modified"
    metrics = controller.get("/metrics")[1]
    invalid = [
        line
        for line in metrics.splitlines()
        if line.startswith("labctl_informer_invalid_objects_total{")
    ]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in invalid) >= len(garbage)
    errors = [line for line in controller.logs() if line.get("level") == "error"]
    for name in ("not-json", "schema-invalid", "huge", "odd/key"):
        assert any(name in str(line.get("message", line.get("event", ""))) for line in errors), (
            f"no error logged for {name}"
        )
    assert controller.alive()


def test_sigterm_exits_zero_within_grace(etcd: EtcdProcess, controller: ControllerProcess) -> None:
    controller.env_extra.update(LAB_SIM_DELAY="1", SHUTDOWN_GRACE="10")
    apply(etcd, [worker_manifest(f"t{i:02d}") for i in range(50)])
    controller.start().wait_ready()
    wait_until(
        lambda: any(p == "Provisioning" for p in phases(etcd).values()), what="work in flight"
    )
    assert controller.terminate(timeout=30) == 0
    events = [str(line.get("message", line.get("event", ""))) for line in controller.logs()]
    assert any("SIGTERM" in e for e in events)
    assert any("stopped cleanly" in e for e in events)
    # Nothing half-written: every stored worker is still a valid LabWorker.
    for w in list_workers(etcd, "default"):
        LabWorker.model_validate(w)


def test_labctl_rejects_invalid_manifests_before_writing(etcd: EtcdProcess, tmp_path: Path) -> None:
    good: dict[str, Any] = worker_manifest("fine")
    bad = worker_manifest("broken", instance={"volumeSizeGb": 50})
    (tmp_path / "m.yaml").write_text(json.dumps(good) + "\n---\n" + json.dumps(bad) + "\n")
    res = labctl(etcd, "apply", "-f", str(tmp_path / "m.yaml"), check=False)
    assert res.returncode == 1
    assert "spec.instance.volumeSizeGb" in res.stderr and "nothing applied" in res.stderr
    assert etcd.get_raw(KEYS + "default/fine") is None
    res = labctl(etcd, "get", "labworkers", "missing", check=False)
    assert res.returncode == 1 and "not found" in res.stderr
    res = labctl(
        etcd, "wait", "labworker/missing", "--for=phase=Ready", "--timeout=1s", check=False
    )
    assert res.returncode == 1 and "timed out" in res.stderr


def test_two_replicas_with_leader_election_fail_over(etcd: EtcdProcess, tmp_path: Path) -> None:
    election = {"LEADER_ELECT": "true", "LEADER_ELECTION_TTL": "3"}
    first = ControllerProcess(
        etcd, tmp_path / "a", env_extra={**election, "LEADER_ELECTION_ID": "a"}
    )
    second = ControllerProcess(
        etcd, tmp_path / "b", env_extra={**election, "LEADER_ELECTION_ID": "b"}
    )
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    try:
        apply(etcd, [worker_manifest(f"h{i}") for i in range(10)])
        first.start().wait_ready()
        wait_until(lambda: all_in_phase(etcd, "Ready", 10), timeout=60, what="10 Ready")
        second.start()

        wait_until(lambda: second.leader_status() == 0.0, what="the second replica standing by")
        assert first.leader_status() == 1.0
        first.kill()  # SIGKILL: no resignation; the standby waits out the lease TTL
        apply(etcd, [worker_manifest(f"h{i}") for i in range(10, 15)])
        wait_until(
            lambda: all_in_phase(etcd, "Ready", 15),
            timeout=90,
            what="the standby taking over and converging new workers",
        )
        assert second.leader_status() == 1.0
        assert second.terminate() == 0
    finally:
        first.kill()
        second.kill()

"""Fault-handling figures with DEFAULT settings: how fast the controller notices and recovers.

    python -m bench.faults [--runs 3]

Each scenario runs `labctl run` as real processes against a fresh etcd started with etcd's
own defaults (progress notifications every 10 minutes, i.e. useless as a liveness signal),
and the controller with its defaults (WATCH_IDLE_TIMEOUT 6 s, WATCH_HEARTBEAT_INTERVAL 2 s,
LEADER_ELECTION_TTL 15 s); only ports and LAB_SIM_DELAY=0 are set. Printed: the median and the
spread over `--runs` runs of

- dead-watch detection: the etcd connection is black-holed by a TCP proxy (sockets open, no
  byte moves); time until `/readyz` reports the watch dead;
- failover after SIGKILL of the leader: time until the standby's first status write of a
  worker created right after the kill (goal: lease TTL + 2 s);
- failover after SIGTERM of the leader (it resigns): the same (goal: 2 s);
- idle SIGTERM: time from SIGTERM to the process exit.

Unlike the other benches this one uses the test suite's fault tools (tests/faultproxy.py,
tests/e2e/harness.py), so it runs from a checkout.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from bench._etcd import BenchEtcd, etcd_version
from controller.labworker.model import LabWorker
from controller.labworker.repository import LabWorkerRepository
from controller.storage import connect
from tests.e2e.harness import ControllerProcess
from tests.etcdproc import EtcdProcess, wait_until
from tests.faultproxy import FaultProxy

DEFAULT_TTL = 15


def _as_fixture(etcd: BenchEtcd, endpoint: str | None = None) -> EtcdProcess:
    """The harness wants an EtcdProcess only for its endpoint."""
    proc = EtcdProcess(data_dir=Path(tempfile.mkdtemp()))
    port = (endpoint or etcd.endpoint).rpartition(":")[2]
    proc.client_port = int(port)
    return proc


def _controller(target: EtcdProcess, workdir: Path, **env: str) -> ControllerProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    return ControllerProcess(target, workdir, env_extra=env)


def dead_watch_detection(workdir: Path) -> float:
    etcd = BenchEtcd.start()
    try:
        with FaultProxy(etcd.endpoint) as proxy:
            ctl = _controller(_as_fixture(etcd, proxy.endpoint), workdir).start()
            try:
                ctl.wait_ready()
                time.sleep(3)  # a steady state: a few heartbeats have come back
                proxy.blackhole()
                started = time.monotonic()
                wait_until(
                    lambda: (
                        ctl.get("/readyz?verbose")[0] == 503 and "labworker-watch" in _failing(ctl)
                    ),
                    timeout=60,
                    interval=0.05,
                    what="the dead watch to show in /readyz",
                )
                return time.monotonic() - started
            finally:
                ctl.kill()
    finally:
        etcd.stop()


def _failing(ctl: ControllerProcess) -> str:
    return "\n".join(
        line for line in ctl.get("/readyz?verbose")[1].splitlines() if "fail" in line.lower()
    )


def failover(workdir: Path, stop_leader: Callable[[ControllerProcess], None]) -> float:
    etcd = BenchEtcd.start()
    try:
        target = _as_fixture(etcd)
        election = {"LEADER_ELECT": "true"}
        first = _controller(target, workdir / "a", LEADER_ELECTION_ID="a", **election).start()
        second = _controller(target, workdir / "b", LEADER_ELECTION_ID="b", **election)
        try:
            first.wait_ready()
            wait_until(lambda: first.leader_status() == 1.0, what="a leading")
            second.start().wait_ready()
            wait_until(lambda: second.leader_status() == 0.0, what="b standing by")
            repo = LabWorkerRepository.for_prefix(connect(etcd.endpoint))
            name = f"f-{uuid.uuid4().hex[:8]}"
            worker = LabWorker.model_validate(
                {"metadata": {"name": name}, "spec": {"labTrack": "ccna"}}
            )
            started = time.monotonic()
            stop_leader(first)
            # Created once the old leader is gone, so only the standby can write it.
            assert first.proc is not None
            first.proc.wait(60)
            repo.create(worker)

            def written() -> bool:
                current = repo.get("default", name)
                return current is not None and current.status.phase is not None

            wait_until(written, timeout=DEFAULT_TTL * 3, interval=0.02, what="the first write")
            return time.monotonic() - started
        finally:
            first.kill()
            second.kill()
    finally:
        etcd.stop()


def idle_sigterm(workdir: Path) -> float:
    etcd = BenchEtcd.start()
    try:
        ctl = _controller(_as_fixture(etcd), workdir).start()
        try:
            ctl.wait_ready()
            time.sleep(2)
            assert ctl.proc is not None
            started = time.monotonic()
            ctl.proc.send_signal(signal.SIGTERM)
            code = ctl.proc.wait(60)
            elapsed = time.monotonic() - started
            if code != 0:
                raise RuntimeError(f"idle SIGTERM exited {code}")
            return elapsed
        finally:
            ctl.kill()
    finally:
        etcd.stop()


def _kill(ctl: ControllerProcess) -> None:
    assert ctl.proc is not None
    ctl.proc.kill()


def _term(ctl: ControllerProcess) -> None:
    assert ctl.proc is not None
    ctl.proc.send_signal(signal.SIGTERM)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    scenarios: list[tuple[str, str, Callable[[Path], float]]] = [
        ("dead-watch detection (black-holed connection)", "<= 10 s", dead_watch_detection),
        ("failover: leader SIGKILL -> standby's first write", f"<= {DEFAULT_TTL + 2} s",
         lambda d: failover(d, _kill)),
        ("failover: leader SIGTERM (resign) -> first write", "<= 2 s",
         lambda d: failover(d, _term)),
        ("idle SIGTERM -> exit", "-", idle_sigterm),
    ]  # fmt: skip
    print(f"# bench.faults: default settings, {args.runs} runs each, etcd {etcd_version()}\n")
    print("| scenario | goal | median | min | max |")
    print("|---|---|---|---|---|")
    for title, goal, scenario in scenarios:
        figures = [scenario(base / f"{len(title)}-{i}") for i in range(args.runs)]
        print(
            f"| {title} | {goal} | {statistics.median(figures):.2f} s | {min(figures):.2f} s "
            f"| {max(figures):.2f} s |",
            flush=True,
        )


if __name__ == "__main__":
    main()

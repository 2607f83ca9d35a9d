"""Run `labctl` as real processes against a real etcd, the way an operator would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.labworker.repository import LabWorkerRepository
from controller.storage import connect
from tests.etcdproc import EtcdProcess, http_get, wait_until

REPO = Path(__file__).resolve().parents[2]
PREFIX = "/lab-resource-manager"


def labctl_cmd() -> list[str]:
    return [sys.executable, "-m", "controller.cli"]


def base_env(etcd: EtcdProcess, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LAB_", "ETCD_"))}
    env.update(
        ETCD_ENDPOINTS=etcd.endpoint,
        ETCD_PREFIX=PREFIX,
        PYTHONPATH=str(REPO),
        LOG_FORMAT="json",
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
    )
    env.update(extra)
    return env


def labctl(
    etcd: EtcdProcess,
    *args: str,
    input: str | None = None,
    check: bool = True,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [*labctl_cmd(), *args],
        env=base_env(etcd),
        capture_output=True,
        text=True,
        input=input,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )
    if check and res.returncode != 0:
        raise AssertionError(f"labctl {' '.join(args)} exited {res.returncode}: {res.stderr}")
    return res


def worker_manifest(name: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "lab.neuroglia.io/v1",
        "kind": "LabWorker",
        "metadata": {"name": name, "namespace": namespace, "labels": {"fleet": "e2e"}},
        "spec": {"labTrack": spec.pop("labTrack", "ccna"), **spec},
    }


def apply(etcd: EtcdProcess, docs: list[dict[str, Any]]) -> None:
    text = "\n---\n".join(json.dumps(d) for d in docs)
    labctl(etcd, "apply", "-f", "-", input=text)


@dataclass
class ControllerProcess:
    """`labctl run` in a subprocess with JSON logs captured to a file."""

    etcd: EtcdProcess
    workdir: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    metrics_port: int = 0
    """0: the controller picks a free port itself and logs it (no race between parallel
    tests choosing "free" ports); `get` reads the port from the log."""
    health_port: int = 0
    starts: int = 0

    @property
    def log_path(self) -> Path:
        return self.workdir / f"controller-{self.starts}.log"

    def start(self) -> ControllerProcess:
        self.starts += 1
        settings = {
            "LAB_SIM_DELAY": "0",
            "METRICS_PORT": str(self.metrics_port),
            "HEALTH_PORT": str(self.health_port),
            "HTTP_HOST": "127.0.0.1",
            "CONTROLLER_WORKERS": "8",
            **self.env_extra,
        }
        env = base_env(self.etcd, **settings)
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [*labctl_cmd(), "run"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
        )
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        wait_until(
            lambda: self.get("/readyz")[0] == 200, timeout=timeout, what="controller /readyz"
        )

    def get(self, path: str) -> tuple[int, str]:
        port = self._port("/metrics" if path == "/metrics" else "/healthz")
        if not port:
            return 0, "not serving yet"
        try:
            status, body = http_get(f"http://127.0.0.1:{port}{path}", timeout=3)
        except OSError as exc:
            return 0, str(exc)
        return status, body.decode()

    def _port(self, path: str) -> int:
        """The port this run of the controller serves `path` on, from its own log line."""
        fixed = self.metrics_port if path == "/metrics" else self.health_port
        if fixed or not self.log_path.exists():
            return fixed
        for raw in self.log_path.read_text(errors="replace").splitlines():
            if '"serving HTTP"' in raw:
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue  # a line still being written
                if path in line.get("paths", []):
                    return int(line["port"])
        return 0

    def leader_status(self) -> float:
        """`leader_election_master_status` from /metrics: 1 leading, 0 standing by, -1 unknown."""
        for line in self.get("/metrics")[1].splitlines():
            if line.startswith("leader_election_master_status{"):
                return float(line.rsplit(" ", 1)[1])
        return -1.0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def logs(self) -> list[dict[str, Any]]:
        lines = []
        for i in range(1, self.starts + 1):
            path = self.workdir / f"controller-{i}.log"
            for raw in path.read_text().splitlines():
                if raw.strip():
                    lines.append(json.loads(raw))
        return lines


def list_workers(etcd: EtcdProcess, namespace: str | None = None) -> list[dict[str, Any]]:
    """The stored workers, read straight from etcd in this process: polling loops must see
    short phases (Provisioning lasts about a second) that a labctl subprocess per poll,
    taking seconds on a loaded machine, would miss. Invalid values are skipped, as the
    controller and `labctl get` skip them; `labctl get` has its own tests."""
    client = connect(etcd.endpoint)
    try:
        repository = LabWorkerRepository.for_prefix(client, PREFIX)
        return [w.to_dict() for w in repository.list(namespace, on_invalid=lambda _err: None)]
    finally:
        client.close()


def phases(etcd: EtcdProcess) -> dict[str, str]:
    return {
        f"{w['metadata']['namespace']}/{w['metadata']['name']}": w.get("status", {}).get(
            "phase", ""
        )
        for w in list_workers(etcd)
    }


def all_in_phase(etcd: EtcdProcess, phase: str, expected: int) -> bool:
    current = phases(etcd)
    return len(current) == expected and all(p == phase for p in current.values())

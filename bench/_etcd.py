"""A throwaway single-member etcd for the benchmarks, or an existing one given by address.

The bench starts its own etcd so that its figures never depend on what else lives in a
shared cluster, and so it can read the server's own CPU time next to the client's. It is
self-contained (no import of tests/) so the bench runs with nothing but the package on path.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ETCD_BIN = os.environ.get("ETCD_BIN") or shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL_BIN = os.environ.get("ETCDCTL_BIN") or shutil.which("etcdctl") or "/usr/bin/etcdctl"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def etcd_version() -> str:
    """The local etcd binary's version (the bench reports the server's own when it can)."""
    out = subprocess.run([ETCD_BIN, "--version"], capture_output=True, text=True, check=False)
    first = out.stdout.splitlines()[0] if out.stdout else "unknown"
    return first.removeprefix("etcd Version: ").strip()


@dataclass
class BenchEtcd:
    """An etcd to benchmark against; `pid` is None when it is not ours (no CPU figures)."""

    endpoint: str
    fsync: bool
    pid: int | None = None
    _proc: subprocess.Popen[bytes] | None = None
    _tmp: Path | None = None

    @classmethod
    def start(
        cls, *, fsync: bool = False, timeout: float = 30.0, quota_bytes: int | None = None
    ) -> BenchEtcd:
        """Debian's etcd on free loopback ports with a temp data dir; blocks until healthy.

        `quota_bytes` raises the backend quota (default 2 GiB) for 100k-worker fleets.
        """
        tmp = Path(tempfile.mkdtemp(prefix="bench-etcd-"))
        client_url = f"http://127.0.0.1:{free_port()}"
        peer_url = f"http://127.0.0.1:{free_port()}"
        args = [
            ETCD_BIN,
            "--name", "bench",
            "--data-dir", str(tmp / "data"),
            "--listen-client-urls", client_url,
            "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url,
            "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"bench={peer_url}",
            "--initial-cluster-state", "new",
            "--log-level", "error",
            "--logger", "zap",
        ]  # fmt: skip
        if quota_bytes:
            args += ["--quota-backend-bytes", str(quota_bytes)]
        if not fsync:
            args.append("--unsafe-no-fsync")  # benchmark only: never in deployment
        log = open(tmp / "etcd.log", "ab")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen(args, stdout=log, stderr=log)
        etcd = cls(client_url.removeprefix("http://"), fsync, proc.pid, proc, tmp)
        deadline = time.monotonic() + timeout
        while not etcd.healthy():
            if proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {proc.returncode}; see {tmp / 'etcd.log'}")
            if time.monotonic() > deadline:
                etcd.stop()
                raise RuntimeError(f"etcd at {client_url} not healthy after {timeout:.0f}s")
            time.sleep(0.1)
        return etcd

    @classmethod
    def existing(cls, endpoint: str) -> BenchEtcd:
        return cls(endpoint.removeprefix("http://"), fsync=True)

    def etcdctl(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[bytes]:
        env = {**os.environ, "ETCDCTL_API": "3"}
        cmd = [
            ETCDCTL_BIN,
            f"--endpoints=http://{self.endpoint}",
            "--dial-timeout=10s",
            "--command-timeout=60s",
            *args,
        ]
        return subprocess.run(cmd, capture_output=True, timeout=timeout, env=env, check=False)

    def healthy(self) -> bool:
        try:
            return self.etcdctl("endpoint", "health", timeout=5.0).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def cpu_seconds(self) -> float | None:
        """The server's user+system CPU so far (from /proc), to set beside the client's."""
        if self.pid is None:
            return None
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

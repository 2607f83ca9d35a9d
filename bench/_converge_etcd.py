"""The throwaway etcd of bench/converge.py: Debian's etcd with room for 100k-worker fleets.

Its own (rather than bench/_etcd.py's) because it needs a larger backend quota: the default
2 GiB fills up with several 100k-worker fleets and their revision history.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ETCD_BIN = os.environ.get("ETCD_BIN") or shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL_BIN = os.environ.get("ETCDCTL_BIN") or shutil.which("etcdctl") or "/usr/bin/etcdctl"
QUOTA_BYTES = 8 * 1024**3


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def etcd_version() -> str:
    out = subprocess.run([ETCD_BIN, "--version"], capture_output=True, text=True, check=False)
    first = out.stdout.splitlines()[0] if out.stdout else "unknown"
    return first.removeprefix("etcd Version: ").strip()


class ConvergeEtcd:
    """One single-member etcd on free loopback ports with a temp data dir."""

    def __init__(self, *, fsync: bool = False, timeout: float = 30.0) -> None:
        self.fsync = fsync
        self._tmp = Path(tempfile.mkdtemp(prefix="bench-converge-etcd-"))
        client_url = f"http://127.0.0.1:{_free_port()}"
        peer_url = f"http://127.0.0.1:{_free_port()}"
        self.endpoint = client_url.removeprefix("http://")
        args = [
            ETCD_BIN,
            "--name", "bench",
            "--data-dir", str(self._tmp / "data"),
            "--listen-client-urls", client_url,
            "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url,
            "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"bench={peer_url}",
            "--initial-cluster-state", "new",
            "--quota-backend-bytes", str(QUOTA_BYTES),
            "--log-level", "error",
            "--logger", "zap",
        ]  # fmt: skip
        if not fsync:
            args.append("--unsafe-no-fsync")  # benchmark only: never in deployment
        log = open(self._tmp / "etcd.log", "ab")  # noqa: SIM115 - lives as long as the process
        self._proc = subprocess.Popen(args, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"etcd exited with {self._proc.returncode}; see {self._tmp / 'etcd.log'}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"etcd at {client_url} not healthy after {timeout:.0f}s")
            time.sleep(0.1)

    def healthy(self) -> bool:
        cmd = [ETCDCTL_BIN, f"--endpoints=http://{self.endpoint}", "endpoint", "health"]
        env = {**os.environ, "ETCDCTL_API": "3"}
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=5, env=env, check=False)
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0

    def cpu_seconds(self) -> float:
        """The server's user+system CPU so far, to set beside the client's."""
        try:
            stat = Path(f"/proc/{self._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        shutil.rmtree(self._tmp, ignore_errors=True)

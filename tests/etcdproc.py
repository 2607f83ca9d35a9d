"""Real etcd processes for tests: start, kill, pause, restart, compact, clusters.

Tests never mock etcd. This module starts Debian's `etcd` binary on free loopback ports with
a temporary data dir, and gives tests the fault levers they need (SIGKILL, SIGSTOP/SIGCONT,
restart on the same ports and data, compaction through etcdctl).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ETCD_BIN = os.environ.get("ETCD_BIN") or shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL_BIN = os.environ.get("ETCDCTL_BIN") or shutil.which("etcdctl") or "/usr/bin/etcdctl"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll `predicate` until it returns a truthy value; fail the test with `what` otherwise."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what} (last error: {last_exc!r})"
    )


@dataclass
class TLSFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


@dataclass
class EtcdProcess:
    """One etcd member. `start()` blocks until it answers /health (or the cluster forms)."""

    data_dir: Path
    name: str = "default"
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    initial_cluster: str | None = None
    tls: TLSFiles | None = None
    extra_args: Sequence[str] = ()
    progress_notify_interval: str | None = "1s"
    """etcd's watch progress-notify interval; None = etcd's own default (10 minutes), which
    is what a production etcd has unless its operator changed it."""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.endpoint}"

    def args(self) -> list[str]:
        peer_url = f"http://127.0.0.1:{self.peer_port}"
        args = [
            ETCD_BIN,
            "--name",
            self.name,
            "--data-dir",
            str(self.data_dir),
            "--listen-client-urls",
            self.url,
            "--advertise-client-urls",
            self.url,
            "--listen-peer-urls",
            peer_url,
            "--initial-advertise-peer-urls",
            peer_url,
            "--initial-cluster",
            self.initial_cluster or f"{self.name}={peer_url}",
            "--initial-cluster-state",
            "new",
            "--initial-cluster-token",
            "test-" + self.data_dir.parent.name,
            "--unsafe-no-fsync",  # test fixture only: never in deployment
            "--log-level",
            "error",
            "--logger",
            "zap",
        ]
        if self.progress_notify_interval:
            args += ["--experimental-watch-progress-notify-interval", self.progress_notify_interval]
        if self.tls:
            args += [
                "--cert-file",
                str(self.tls.server_cert),
                "--key-file",
                str(self.tls.server_key),
                "--trusted-ca-file",
                str(self.tls.ca),
                "--client-cert-auth",
            ]
        return [*args, *self.extra_args]

    def spawn(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir.parent / f"{self.name}.log", "ab")  # noqa: SIM115 - lives with proc
        self.proc = subprocess.Popen(self.args(), stdout=log, stderr=log)

    def start(self, timeout: float = 30.0) -> EtcdProcess:
        """Spawn and wait until healthy. A "free" port can be taken by a parallel test between
        choosing it and etcd binding it: then a single member's FIRST start tries again on
        fresh ports (a restart must come back where its clients look; a cluster's members
        name each other's ports)."""
        first_start = self.proc is None
        for attempt in range(3):
            self.spawn()
            if self._wait_started(timeout):
                return self
            movable = first_start and self.initial_cluster is None and attempt < 2
            if not (movable and self._lost_its_port()):
                raise RuntimeError(f"etcd {self.name} exited; see {self._log_path()}")
            self.client_port, self.peer_port = free_port(), free_port()
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait_started(self, timeout: float) -> bool:
        """True once healthy; False if the process exited first."""
        assert self.proc is not None
        proc = self.proc
        wait_until(
            lambda: proc.poll() is not None or self.healthy(),
            timeout=timeout,
            what=f"etcd {self.name} at {self.url} healthy",
        )
        return proc.poll() is None

    def _log_path(self) -> Path:
        return self.data_dir.parent / f"{self.name}.log"

    def _log_text(self) -> str:
        path = self._log_path()
        return path.read_text(errors="replace").lower() if path.exists() else ""

    def _lost_its_port(self) -> bool:
        """It exited because a parallel test bound its "free" port first."""
        return "address already in use" in self._log_text()

    def wait_healthy(self, timeout: float = 30.0) -> None:
        wait_until(self.healthy, timeout=timeout, what=f"etcd {self.name} at {self.url} healthy")

    def healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"etcd {self.name} exited with {self.proc.returncode}")
        try:
            self.etcdctl("endpoint", "health", timeout=3.0)  # exit 0 only when healthy
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            return False
        return True

    def etcdctl(self, *args: str, timeout: float = 10.0, input: bytes | None = None) -> str:
        cmd = [ETCDCTL_BIN, f"--endpoints={self.url}", "--command-timeout=5s"]
        if self.tls:
            cmd += [
                f"--cacert={self.tls.ca}",
                f"--cert={self.tls.client_cert}",
                f"--key={self.tls.client_key}",
            ]
        env = {**os.environ, "ETCDCTL_API": "3"}
        res = subprocess.run(
            [*cmd, *args], capture_output=True, timeout=timeout, env=env, input=input, check=False
        )
        if res.returncode != 0:
            raise subprocess.CalledProcessError(
                res.returncode, cmd + list(args), res.stdout, res.stderr
            )
        return res.stdout.decode()

    def revision(self) -> int:
        out = json.loads(self.etcdctl("endpoint", "status", "-w", "json"))
        return int(out[0]["Status"]["header"]["revision"])

    def compact(self, revision: int | None = None) -> int:
        rev = revision if revision is not None else self.revision()
        self.etcdctl("compaction", str(rev), "--physical")
        return rev

    def put(self, key: str, value: bytes | str) -> None:
        data = value.encode() if isinstance(value, str) else value
        # Values go through stdin so binary / huge values work (etcdctl reads value from stdin
        # when only the key is given).
        self.etcdctl("put", key, input=data)

    def get_raw(self, key: str) -> bytes | None:
        out = json.loads(self.etcdctl("get", key, "-w", "json"))
        kvs = out.get("kvs") or []
        if not kvs:
            return None
        import base64

        return base64.b64decode(kvs[0].get("value", ""))

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def restart(self, timeout: float = 30.0) -> None:
        self.kill()
        # Same ports and data dir: clients pointed at this endpoint must find it again.
        self.start(timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_cluster(base: Path, members: int = 3) -> list[EtcdProcess]:
    """A loopback cluster; members are spawned together so the first election can happen.

    A "free" port can be taken by a parallel test before a member binds it, and members name
    each other's ports: then the whole cluster starts again, on fresh ports and data dirs."""
    for attempt in range(3):
        root = base if attempt == 0 else base / f"retry-{attempt}"
        procs = [EtcdProcess(data_dir=root / f"m{i}", name=f"m{i}") for i in range(members)]
        initial = ",".join(f"{p.name}=http://127.0.0.1:{p.peer_port}" for p in procs)
        for p in procs:
            p.initial_cluster = initial
            p.spawn()
        exited = [p for p in procs if not p._wait_started(60)]
        if not exited:
            return procs
        for p in procs:
            p.stop()
        if attempt == 2 or not all(p._lost_its_port() for p in exited):
            raise RuntimeError(f"etcd {exited[0].name} exited; see {exited[0]._log_path()}")
    raise AssertionError("unreachable")  # pragma: no cover


def generate_tls(base: Path) -> TLSFiles:
    """A throwaway CA plus server and client certificates for 127.0.0.1 (openssl CLI)."""
    base.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=base)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    )
    ext = base / "san.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n"
    )
    for who, cn in (("server", "etcd-server"), ("client", "root")):
        run(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={cn}",
            "-keyout",
            f"{who}.key",
            "-out",
            f"{who}.csr",
        )
        run(
            "x509",
            "-req",
            "-in",
            f"{who}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            f"{who}.crt",
            "-extfile",
            str(ext),
        )
    return TLSFiles(
        ca=base / "ca.crt",
        server_cert=base / "server.crt",
        server_key=base / "server.key",
        client_cert=base / "client.crt",
        client_key=base / "client.key",
    )


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()

"""Scale-out benchmark: N new workers converged by 1, 2, 3 sharded replicas (separate
processes), each beside the raw CAS ceiling of the same number of processes, in one run.

For every replica count R:

1. R `labctl run` processes with SHARDING=true (sim provider, LAB_SIM_DELAY=0) start against
   one throwaway etcd and split the shards; then N new workers are stored (128-put
   transactions) and the clock runs until a watch on the prefix has seen every one Ready.
   Controller writes are the workers' status writes the watch saw (creates excluded).
2. The raw CAS ceiling: R processes × `--threads` threads of the storage facade alone doing
   the same number of CAS writes of converged-worker documents, no reads, no conflicts.

3. With `--memory N` (default 100k): N converged workers stored, then R replicas started;
   per replica, the seconds from start to its shards held and its cache synced, the objects
   it caches and its resident memory above an idle replica's — so memory per replica
   falls with R.

Printed per R: seconds to all Ready, controller writes/s, raw CAS/s, their ratio, the
speed-up over one replica, and CPU: milliseconds per write of the controllers (sum over
processes) and of etcd, and how many cores each used meanwhile — on a 2-core machine, that
says who saturates first. Figures only; nothing is asserted.

    python -m bench.scale_out                      # 10k workers, 1/2/3 replicas (~4 min)
    python -m bench.scale_out --workers 1000 --replicas 1,3
    python -m bench.scale_out --workers 1000 --memory 100000   # + start/memory at 100k
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _converge_data as data
from bench._etcd import BenchEtcd, etcd_version
from controller.labworker.kind import LABWORKER
from controller.storage import EtcdClient, EtcdStorageBackend, EventType, WatchEvent, connect

ROOT = "/bench-scale-out"
REPO = Path(__file__).resolve().parents[1]
QUOTA_BYTES = 8 * 1024**3
TARGET_RATIO = 0.8


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- controllers ---------------------------------------------------------------------------------


def start_controllers(
    endpoint: str,
    prefix: str,
    replicas: int,
    shards: int,
    workers: int,
    logdir: Path,
    log_level: str = "WARNING",
) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(replicas):
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LAB_"))},
            "PYTHONPATH": str(REPO),
            "ETCD_ENDPOINTS": endpoint,
            "ETCD_PREFIX": prefix,
            "SHARDING": "true",
            "SHARD_COUNT": str(shards),
            "LEADER_ELECTION_ID": f"r{i}",
            "LAB_SIM_DELAY": "0",
            "CONTROLLER_WORKERS": str(workers),
            "METRICS_PORT": "0",
            "HEALTH_PORT": "0",
            "HTTP_HOST": "127.0.0.1",
            "LOG_LEVEL": log_level,
            "LOG_FORMAT": "json",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
        }
        out = open(logdir / f"controller-{prefix.rsplit('/', 1)[1]}-{i}.log", "wb")  # noqa: SIM115
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "controller.cli", "run"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        )
    return procs


def wait_for_shards(
    client: EtcdClient, prefix: str, replicas: int, shards: int, timeout: float = 120
) -> None:
    owners = f"{prefix}/shards/owners/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kvs, _ = client.list_prefix(owners)
        if len(kvs) == shards and len({kv.value for kv in kvs}) == replicas:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{replicas} replicas did not split {shards} shards within {timeout} s")


def stop_controllers(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


class ReadyCounter:
    """Counts status writes and Ready workers from a watch on the worker prefix."""

    def __init__(self, client: EtcdClient, prefix: str, expected: int, from_revision: int) -> None:
        self.expected = expected
        self.status_writes = 0
        self._ready: set[str] = set()
        self.done = threading.Event()
        self.finished_at = 0.0
        self._lock = threading.Lock()
        self._handle = client.watch(
            LABWORKER.prefix(prefix),
            self._on,
            prefix=True,
            start_revision=from_revision,
            name="bench ready counter",
        )

    def _on(self, batch: list[WatchEvent]) -> None:
        with self._lock:
            for ev in batch:
                if ev.type is not EventType.PUT or ev.kv.version == 1:
                    continue
                self.status_writes += 1
                if b'"phase":"Ready"' in ev.kv.value:
                    self._ready.add(ev.kv.key)
            if len(self._ready) >= self.expected and not self.done.is_set():
                self.finished_at = time.perf_counter()
                self.done.set()

    def cancel(self) -> None:
        self._handle.cancel()


@dataclass
class Run:
    replicas: int
    seconds: float
    writes: int
    controller_cpu: float
    etcd_cpu: float

    @property
    def writes_per_s(self) -> float:
        return self.writes / self.seconds


def converge(
    etcd: BenchEtcd, client: EtcdClient, args: argparse.Namespace, replicas: int
) -> tuple[Run, dict[str, Any] | None]:
    prefix = f"{ROOT}/r{replicas}"
    procs = start_controllers(
        etcd.endpoint, prefix, replicas, args.shards, args.controller_workers, args.logdir
    )
    try:
        wait_for_shards(client, prefix, replicas, args.shards)
        start_revision = client.revision() + 1
        counter = ReadyCounter(client, prefix, args.workers, start_revision)
        cpu0 = sum(cpu_seconds(p.pid) for p in procs)
        etcd0 = etcd.cpu_seconds() or 0.0
        started = time.perf_counter()
        data.load(client, prefix, args.workers, data.new_fleet(args.workers))
        if not counter.done.wait(args.timeout):
            raise RuntimeError(f"{replicas} replicas: not all Ready within {args.timeout}s")
        seconds = counter.finished_at - started
        used = sum(cpu_seconds(p.pid) for p in procs) - cpu0
        etcd_used = (etcd.cpu_seconds() or 0.0) - etcd0
        counter.cancel()
        _, converged = data.stored_phases(client, prefix)
        return Run(replicas, seconds, counter.status_writes, used, etcd_used), converged
    finally:
        stop_controllers(procs)
        data.drop(client, prefix)


# -- start-up and memory per replica ----------------------------------------------------------

LISTED = re.compile(r"listed (\d+) objects .* in ([\d.]+)s")
PRUNED = re.compile(r"dropped \d+ objects in place, (\d+) left")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def last_listing(log_path: Path) -> tuple[int, float] | None:
    """(objects cached, seconds of the last listing) of the LabWorker informer, from the JSON
    log: a listing sets both, a prune in place (a replica that lost shards) the count."""
    found = None
    for raw in log_path.read_text(errors="replace").splitlines():
        if "labworkers" not in raw:
            continue
        if match := LISTED.search(raw):
            found = (int(match.group(1)), float(match.group(2)))
        elif (match := PRUNED.search(raw)) and found is not None:
            found = (int(match.group(1)), found[1])
    return found


@dataclass
class Footprint:
    replicas: int
    ready_s: list[float]
    cached: list[int]
    list_s: list[float]
    rss: list[int]


def footprint(
    client: EtcdClient, args: argparse.Namespace, prefix: str, replicas: int
) -> Footprint:
    procs = start_controllers(
        args.etcd_endpoint, prefix, replicas, args.shards, args.controller_workers,
        args.logdir, log_level="INFO",
    )  # fmt: skip
    started = time.perf_counter()
    try:
        wait_for_shards(client, prefix, replicas, args.shards, timeout=600)
        ready = time.perf_counter() - started
        logs = [
            args.logdir / f"controller-{prefix.rsplit('/', 1)[1]}-{i}.log" for i in range(replicas)
        ]
        time.sleep(2.0)  # let a last refilter relist finish and freed memory go back
        listings = [last_listing(path) or (0, 0.0) for path in logs]
        rss = [rss_bytes(p.pid) for p in procs]
        return Footprint(
            replicas, [ready] * replicas, [n for n, _ in listings], [t for _, t in listings], rss
        )
    finally:
        stop_controllers(procs)


def memory(
    client: EtcdClient, args: argparse.Namespace, counts: list[int], template: dict[str, Any]
) -> list[Footprint]:
    idle = footprint(client, args, f"{ROOT}/idle", 1)
    prefix = f"{ROOT}/mem"
    log(f"storing {args.memory:,} converged workers…")
    data.load(client, prefix, args.memory, data.replicas_of(template))
    found = [idle]
    for n in counts:
        log(f"starting {n} replica(s) on {args.memory:,} converged workers…")
        found.append(footprint(client, args, prefix, n))
    return found  # the etcd is thrown away next


def report_memory(found: list[Footprint], args: argparse.Namespace) -> None:
    idle = found[0].rss[0]
    print(f"\nstart-up and memory: {args.memory:,} converged workers, {args.shards} shards")
    print(
        "replicas  start → shards held + synced s  list s (per replica)  cached per replica  RSS MiB per replica  bytes/cached worker"
    )
    for fp in found[1:]:
        per = [(r - idle) / c if c else 0.0 for r, c in zip(fp.rss, fp.cached, strict=True)]
        print(
            f"{fp.replicas:>8}  {max(fp.ready_s):>31.1f}  "
            f"{' '.join(f'{t:.1f}' for t in fp.list_s):>20}  "
            f"{' '.join(f'{c:,}' for c in fp.cached):>18}  "
            f"{' '.join(f'{r / 2**20:.0f}' for r in fp.rss):>19}  "
            f"{' '.join(f'{b:,.0f}' for b in per)}"
        )
    print(f"(an idle replica: {idle / 2**20:.0f} MiB RSS)")


# -- raw CAS ceiling -------------------------------------------------------------------------


def raw_cas_child(endpoint: str, prefix: str, writes: int, threads: int, go: Path) -> None:
    """One process of the ceiling: its own keys, `threads` threads, then prints its window."""
    client = connect(endpoint, pool_size=threads + 2)
    template = data.new_fleet(1)(0)[1]
    make = data.replicas_of(template)
    keys_per_thread = 64
    _, revisions = data.load(client, prefix, keys_per_thread * threads, make)
    backend = EtcdStorageBackend(client, LABWORKER.prefix(prefix))
    docs = dict(make(i) for i in range(keys_per_thread * threads))
    names = sorted(docs)
    quotas = [writes // threads + (1 if t < writes % threads else 0) for t in range(threads)]
    print("loaded", flush=True)
    while not go.exists():
        time.sleep(0.005)

    def run(t: int) -> None:
        mine = names[t::threads]
        for j in range(quotas[t]):
            name = mine[j % len(mine)]
            outcome = backend.cas(name, revisions[name], docs[name])
            if not outcome.succeeded:
                raise RuntimeError(f"raw CAS on {name} conflicted")
            revisions[name] = outcome.revision

    started = time.time()
    with ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(run, t) for t in range(threads)]:
            f.result()
    print(json.dumps({"start": started, "end": time.time()}), flush=True)


@dataclass
class Ceiling:
    processes: int
    writes: int
    seconds: float
    client_cpu: float
    etcd_cpu: float

    @property
    def writes_per_s(self) -> float:
        return self.writes / self.seconds


def raw_cas(
    etcd: BenchEtcd, client: EtcdClient, args: argparse.Namespace, n: int, writes: int
) -> Ceiling:
    go = args.logdir / f"go-{n}"
    go.unlink(missing_ok=True)
    procs = []
    for i in range(n):
        procs.append(
            subprocess.Popen(
                [
                    sys.executable, "-m", "bench.scale_out", "--raw-cas-child",
                    etcd.endpoint, f"{ROOT}/raw{n}-{i}", str(writes // n), str(args.threads),
                    str(go),
                ],
                stdout=subprocess.PIPE,
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
        )  # fmt: skip
    for proc in procs:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"loaded":
            raise RuntimeError("a raw CAS process failed to load its keys")
    cpu0 = sum(cpu_seconds(p.pid) for p in procs)
    etcd0 = etcd.cpu_seconds() or 0.0
    go.touch()
    windows = []
    client_cpu = 0.0
    for proc in procs:
        assert proc.stdout is not None
        windows.append(json.loads(proc.stdout.readline()))
        client_cpu += cpu_seconds(proc.pid)
    etcd_used = (etcd.cpu_seconds() or 0.0) - etcd0
    for proc in procs:
        proc.wait(60)
    for i in range(n):
        data.drop(client, f"{ROOT}/raw{n}-{i}")
    seconds = max(w["end"] for w in windows) - min(w["start"] for w in windows)
    return Ceiling(n, (writes // n) * n, seconds, client_cpu - cpu0, etcd_used)


# -- report -----------------------------------------------------------------------------------


def report(runs: list[Run], ceilings: dict[int, Ceiling], args: argparse.Namespace) -> None:
    print(
        f"\nscale-out: {args.workers:,} new workers, {args.shards} shards, "
        f"CONTROLLER_WORKERS={args.controller_workers}, {os.cpu_count()} cores, "
        f"etcd {etcd_version()} (no fsync)\n"
    )
    header = (
        "replicas", "all Ready s", "ctl writes/s", "raw CAS/s", "ratio", "speed-up",
        "ctl ms/write", "etcd ms/write", "ctl cores", "etcd cores", "raw: etcd cores",
    )  # fmt: skip
    rows = []
    base = runs[0].writes_per_s if runs else 1.0
    for run in runs:
        ceiling = ceilings[run.replicas]
        rows.append(
            (
                str(run.replicas),
                f"{run.seconds:.1f}",
                f"{run.writes_per_s:,.0f}",
                f"{ceiling.writes_per_s:,.0f}",
                f"{run.writes_per_s / ceiling.writes_per_s:.2f}",
                f"{run.writes_per_s / base:.2f}x",
                f"{run.controller_cpu / run.writes * 1000:.2f}",
                f"{run.etcd_cpu / run.writes * 1000:.2f}",
                f"{run.controller_cpu / run.seconds:.2f}",
                f"{run.etcd_cpu / run.seconds:.2f}",
                f"{ceiling.etcd_cpu / ceiling.seconds:.2f}",
            )
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    print(
        f"\ntarget: aggregate ratio >= {TARGET_RATIO} (controller writes/s ÷ raw CAS/s of the "
        "same number of processes). 'cores' = CPU seconds per wall second: when controllers "
        "plus etcd reach the machine's cores, adding replicas cannot add throughput."
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--raw-cas-child":
        endpoint, prefix, writes, threads, go = argv[1:6]
        raw_cas_child(endpoint, prefix, int(writes), int(threads), Path(go))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=10_000)
    parser.add_argument("--replicas", default="1,2,3")
    parser.add_argument("--shards", type=int, default=256)
    parser.add_argument("--controller-workers", type=int, default=8)
    parser.add_argument("--threads", type=int, default=8, help="raw CAS threads per process")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument(
        "--memory", type=int, default=0, help="also start replicas on this many converged workers"
    )
    parser.add_argument(
        "--memory-replicas", default="1,3", help="replica counts of the --memory figures"
    )
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.replicas.split(",")]
    etcd = BenchEtcd.start(quota_bytes=QUOTA_BYTES)
    args.logdir = Path(etcd._tmp or ".")
    args.etcd_endpoint = etcd.endpoint
    client = connect(etcd.endpoint, pool_size=16)
    try:
        runs: list[Run] = []
        ceilings: dict[int, Ceiling] = {}
        template: dict[str, Any] | None = None
        for n in counts:
            log(f"converging {args.workers:,} workers with {n} replica(s)…")
            run, template = converge(etcd, client, args, n)
            runs.append(run)
            log(
                f"  {run.seconds:.1f}s, {run.writes:,} status writes; raw CAS with {n} process(es)…"
            )
            ceilings[n] = raw_cas(etcd, client, args, n, run.writes)
        report(runs, ceilings, args)
        if args.memory and template is not None:
            memory_counts = [int(n) for n in args.memory_replicas.split(",")]
            report_memory(memory(client, args, memory_counts, template), args)
    finally:
        client.close()
        etcd.stop()


if __name__ == "__main__":
    main()

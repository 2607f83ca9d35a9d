"""Storage benchmark: our etcd facade against etcd3-py's model API and python-etcd3 (gRPC).

Prints figures and ratios; it never asserts on time (the machine is shared and noisy). Each
throughput cell is run in several rounds, the three clients back to back within a round, so
a ratio compares figures taken seconds apart; tables show medians over rounds.

    python -m bench.storage            # ~5.5 min: 3 rounds x 1.2 s cells, lists of 10k and 100k
    python -m bench.storage --quick    # ~1 min: 1 round x 1 s cells, list of 10k
    python -m bench.storage --endpoint 127.0.0.1:2379   # an existing etcd (keys under /bench/)

Without --endpoint it starts Debian's etcd on a free loopback port with a temp data dir and
`--unsafe-no-fsync` (pass --fsync for real disk syncs). python-etcd3 lives in its own venv
(bench/.venv, created on first use) and runs in its own process: see python_etcd3_worker.py.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if not __package__:  # run as `python bench/storage.py`: make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._etcd import BenchEtcd
from bench.python_etcd3_worker import WORKLOADS, measure_cell, timed
from controller.labworker.model import LabWorker
from controller.storage import (
    MAX_BATCH_OPS,
    BatchPut,
    Compare,
    EtcdClient,
    EtcdStorageBackend,
    KeyValue,
    Op,
    RangeResult,
    connect,
)

BENCH_DIR = Path(__file__).resolve().parent
WORKER_SCRIPT = BENCH_DIR / "python_etcd3_worker.py"
DEFAULT_VENV = BENCH_DIR / ".venv"  # matched by the project's `.venv/` gitignore rule
GRPC_REQUIREMENTS = ("etcd3==0.12.0", "protobuf<4", "grpcio")
ROOT_PREFIX = "/bench"
BIG_PAGE = 10_000
"""A second page size to list with: etcd 3.4 spends less CPU on fewer, larger pages."""

FACADE, ETCD3PY, GRPC = "facade", "etcd3-py", "python-etcd3"
CLIENT_TITLES = {
    FACADE: "(a) facade",
    ETCD3PY: "(b) etcd3-py model",
    GRPC: "(c) python-etcd3",
}


def log(message: str) -> None:
    """Progress goes to stderr so that stdout holds only the report."""
    print(message, file=sys.stderr, flush=True)


# -- realistic data ----------------------------------------------------------------------------

TRACKS = ("ccna", "ccnp", "devnet", "cyberops")
PHASES = ("Ready", "Active", "Provisioning", "Stopped")


def labworker_document(index: int) -> dict[str, Any]:
    """A LabWorker as the controller stores it (~360 bytes of compact JSON)."""
    track = TRACKS[index % len(TRACKS)]
    return {
        "apiVersion": "lab.neuroglia.io/v1",
        "kind": "LabWorker",
        "metadata": {
            "name": f"{track}-worker-{index:06d}",
            "namespace": "default",
            "uid": str(uuid.UUID(int=index + 1)),
            "labels": {"tier": "standard"},
            "generation": 1,
            "creationTimestamp": "2024-05-01T12:00:00.000Z",
        },
        "spec": {"labTrack": track, "instance": {"type": "m5zn.metal"}},
        "status": {
            "phase": PHASES[index % len(PHASES)],
            "observedGeneration": 1,
            "address": f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}",
        },
    }


def document_bytes(index: int) -> bytes:
    return json.dumps(labworker_document(index), separators=(",", ":")).encode()


# -- the clients, behind the harness's Driver protocol -----------------------------------------


class FacadeDriver:
    """Our facade, used the way the controller uses it: no read before a CAS.

    A successful txn returns the new revision (its header), so the next increment starts
    from what this thread wrote — the informer-cache pattern. A conflicting txn returns the
    current value from its failure branch. Either way an increment costs one round trip
    once the first read is done; (b) and (c) read before every attempt.
    """

    def __init__(self, client: EtcdClient) -> None:
        self.client = client
        self._known = threading.local()

    def get(self, key: str) -> None:
        self.client.get(key)

    def put(self, key: str, value: bytes) -> None:
        self.client.put(key, value)

    def read_int(self, key: str) -> int:
        kv = self.client.get(key)
        return int(kv.value) if kv else 0

    def increment(self, key: str) -> int:
        known: dict[str, tuple[int, int]] = self._known.__dict__.setdefault("by_key", {})
        if key not in known:
            kv = self.client.get(key)
            assert kv is not None, f"counter {key} vanished"
            known[key] = (int(kv.value), kv.mod_revision)
        value, revision = known[key]
        conflicts = 0
        while True:
            result = self.client.txn(
                [Compare.mod_revision(key, revision)],
                [Op.put(key, str(value + 1).encode())],
                [Op.get(key)],
            )
            if result.succeeded:
                known[key] = (value + 1, result.revision)
                return conflicts
            conflicts += 1
            current = result.responses[0]
            assert isinstance(current, RangeResult) and current.kvs, f"counter {key} vanished"
            value, revision = int(current.kvs[0].value), current.kvs[0].mod_revision


class Etcd3pyDriver:
    """etcd3-py's own model API, as a user of that library would write it; re-reads on conflict.

    The bench is the one place outside controller/storage that imports etcd3: it is the
    yardstick the facade is measured against.
    """

    def __init__(self, endpoint: str, pool_size: int) -> None:
        import etcd3

        host, _, port = endpoint.rpartition(":")
        self.client = etcd3.Client(host, int(port), pool_size=pool_size)

    def get(self, key: str) -> None:
        self.client.range(key)

    def put(self, key: str, value: bytes) -> None:
        self.client.put(key, value)

    def read_int(self, key: str) -> int:
        kvs = self.client.range(key).kvs
        return int(kvs[0].value) if kvs else 0

    def increment(self, key: str) -> int:
        conflicts = 0
        while True:
            kv = self.client.range(key).kvs[0]
            txn = self.client.Txn()
            txn.If(txn.key(key).mod == kv.mod_revision)
            txn.Then(txn.put(key, str(int(kv.value) + 1).encode()))
            if txn.commit().succeeded:
                return conflicts
            conflicts += 1

    def range_prefix(self, prefix: str) -> int:
        return len(self.client.range(prefix, prefix=True).kvs or ())


class GrpcWorker:
    """python-etcd3 in its own venv and process, spoken to in JSON lines."""

    def __init__(self, python: Path, endpoint: str) -> None:
        self._proc = subprocess.Popen(
            [str(python), str(WORKER_SCRIPT), "--endpoint", endpoint],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.name = str(self.request({"cmd": "ping"})["client"])

    def request(self, payload: dict[str, Any]) -> dict[str, Any]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(payload) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"python-etcd3 worker exited ({self._proc.wait()})")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"python-etcd3 worker: {reply['error']}")
        return reply

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self._proc.stdin.close()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()


def grpc_venv_python(venv: Path) -> tuple[Path | None, str]:
    """The venv's python with python-etcd3 installed (creating it if needed), or why not."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import etcd3, grpc"]
    if python.exists() and subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return python, ""
    log(f"creating {venv} with {' '.join(GRPC_REQUIREMENTS)} (first use only)...")
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "-q", *GRPC_REQUIREMENTS],
    ]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"{' '.join(step[:4])}: {exc}"
        if done.returncode != 0:
            return None, f"{' '.join(step[:4])} failed: {done.stderr.strip()[-300:]}"
    if subprocess.run(probe, capture_output=True, check=False).returncode != 0:
        return None, "python-etcd3 installed but does not import"
    return python, ""


# -- throughput --------------------------------------------------------------------------------


@dataclass
class Cell:
    workload: str
    concurrency: int
    rounds: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def median(self, client: str, metric: str) -> float | None:
        runs = self.rounds.get(client)
        return statistics.median(r[metric] for r in runs) if runs else None

    def ratio(self, num: str, den: str) -> float | None:
        """Median of per-round ratios: each compares runs taken seconds apart."""
        pairs = zip(self.rounds.get(num, ()), self.rounds.get(den, ()), strict=False)
        ratios = [a["ops_per_s"] / b["ops_per_s"] for a, b in pairs if b["ops_per_s"] > 0]
        return statistics.median(ratios) if ratios else None

    def check(self) -> str:
        if not self.workload.startswith("cas"):
            return ""
        lost = sum(r["lost"] for runs in self.rounds.values() for r in runs)
        if self.workload == "cas-shared":
            a = self.rounds.get(FACADE, [{}])[-1]
            status = "ok" if lost == 0 else f"LOST {lost}"
            return f"{status}, (a) {a.get('final', '?')}=={a.get('increments', '?')}"
        return "ok" if lost == 0 else f"LOST {lost}"


Runner = Callable[[str, int, float, str], dict[str, Any]]


def run_throughput(
    runners: dict[str, Runner],
    concurrencies: Sequence[int],
    rounds: int,
    duration: float,
) -> list[Cell]:
    cells = [Cell(w, c) for w in WORKLOADS for c in concurrencies]
    for rnd in range(1, rounds + 1):
        started = time.perf_counter()
        for cell in cells:
            for client, run in runners.items():
                prefix = f"{ROOT_PREFIX}/tp/{client}/{cell.workload}/c{cell.concurrency}/r{rnd}"
                result = run(cell.workload, cell.concurrency, duration, prefix)
                cell.rounds.setdefault(client, []).append(result)
        log(f"throughput round {rnd}/{rounds} done in {time.perf_counter() - started:.0f}s")
    return cells


def fmt_num(value: float | None, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{unit}"


def print_throughput(cells: list[Cell], clients: Sequence[str], rounds: int) -> None:
    print(f"\n## Throughput (ops/s and latency in ms; medians of {rounds} round(s))\n")
    header = ["workload", "conc"]
    for client in clients:
        header += [f"{CLIENT_TITLES[client]} ops/s", "p50", "p99"]
    if ETCD3PY in clients:
        header.append("a/b")
    if GRPC in clients:
        header.append("a/c")
    header.append("CAS check")
    rows = [header]
    for cell in cells:
        row = [cell.workload, str(cell.concurrency)]
        for client in clients:
            row += [
                fmt_num(cell.median(client, "ops_per_s")),
                fmt_num(cell.median(client, "p50_ms"), digits=1),
                fmt_num(cell.median(client, "p99_ms"), digits=1),
            ]
        if ETCD3PY in clients:
            row.append(fmt_num(cell.ratio(FACADE, ETCD3PY), "x", 1))
        if GRPC in clients:
            row.append(fmt_num(cell.ratio(FACADE, GRPC), "x", 2))
        row.append(cell.check())
        rows.append(row)
    print_markdown_table(rows)
    shared = [c for c in cells if c.workload == "cas-shared" and c.concurrency > 1]
    if shared:
        print("\nConflicts retried per increment on the shared key (median over rounds):")
        for cell in shared:
            per_client = []
            for client in clients:
                conflicts, ops = cell.median(client, "conflicts"), cell.median(client, "ops")
                if conflicts is not None and ops:
                    per_client.append(f"{CLIENT_TITLES[client]} {conflicts / ops:.2f}")
            print(f"- x{cell.concurrency}: " + ", ".join(per_client))


def print_markdown_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(cells: list[str]) -> str:
        aligned = [
            c.ljust(w) if i < 2 or i == len(cells) - 1 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(aligned) + " |"

    print(line(rows[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows[1:]:
        print(line(row))


def print_throughput_targets(cells: list[Cell], clients: Sequence[str]) -> None:
    cas = [c for c in cells if c.workload.startswith("cas")]
    print("\nTargets (issue): CAS (a) >= 5x (b) and >= 0.8x (c)")
    for other, target in ((ETCD3PY, 5.0), (GRPC, 0.8)):
        if other not in clients:
            continue
        ratios = [(c, c.ratio(FACADE, other)) for c in cas]
        met = [c for c, r in ratios if r is not None and r >= target]
        worst = min((r for _, r in ratios if r is not None), default=None)
        print(
            f"- (a)/{CLIENT_TITLES[other].split()[0]} on CAS >= {target}x: met in "
            f"{len(met)}/{len(cas)} cells (lowest {fmt_num(worst, 'x', 2)})"
        )


# -- listing -----------------------------------------------------------------------------------


def load_documents(backend: EtcdStorageBackend, count: int, threads: int = 4) -> float:
    """Write `count` LabWorker documents in 128-put transactions; returns seconds."""

    def batch(start: int) -> None:
        ops = [
            BatchPut(f"default/worker-{i:06d}", labworker_document(i))
            for i in range(start, min(start + MAX_BATCH_OPS, count))
        ]
        backend.apply_batch(ops)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(batch, range(0, count, MAX_BATCH_OPS)))
    return time.perf_counter() - t0


@dataclass
class ListRow:
    label: str
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    server_cpus: list[float] = field(default_factory=list)
    note: str = ""

    def add(self, wall: float, cpu: float | None = None, server: float | None = None) -> None:
        self.walls.append(wall)
        if cpu is not None:
            self.cpus.append(cpu)
        if server is not None:
            self.server_cpus.append(server)

    def cells(self) -> list[str]:
        wall = statistics.median(self.walls) if self.walls else None
        cpu = statistics.median(self.cpus) if self.cpus else None
        server = statistics.median(self.server_cpus) if self.server_cpus else None
        runs = f"{len(self.walls)}" if self.walls else "-"
        return [
            self.label,
            fmt_num(wall, " s", 2),
            fmt_num(cpu, " s", 2),
            fmt_num(server, " s", 2),
            runs,
            self.note,
        ]


def without_gc(fn: Callable[[], object]) -> Callable[[], object]:
    """Run `fn` with the cyclic GC off, then freeze what it built so later passes skip it."""

    def wrapped() -> object:
        gc.disable()
        try:
            return fn()
        finally:
            gc.enable()
            gc.freeze()

    return wrapped


def list_benchmark(
    etcd: BenchEtcd,
    client: EtcdClient,
    etcd3py: Etcd3pyDriver | None,
    grpc: GrpcWorker | None,
    size: int,
    repeats: int,
    etcd3py_too: bool,
) -> tuple[list[ListRow], float]:
    backend = EtcdStorageBackend(client, f"{ROOT_PREFIX}/list{size}")
    log(f"loading {size:,} documents...")
    load_s = load_documents(backend, size)
    prefix = backend.prefix

    def measure(row: ListRow, fn: Callable[[], object], expect: int = size) -> None:
        for _ in range(repeats):
            server0 = etcd.cpu_seconds()
            wall, cpu, result = timed(fn)
            server1 = etcd.cpu_seconds()
            count = len(result) if isinstance(result, list) else result
            if count != expect:
                raise RuntimeError(f"{row.label}: listed {count}, expected {expect}")
            del result
            server = server1 - server0 if server0 is not None and server1 is not None else None
            row.add(wall, cpu, server)
            gc.unfreeze()  # undo without_gc's freeze so the next run starts from the same heap
            gc.collect()

    def raw() -> list[KeyValue]:
        return client.list_prefix(prefix)[0]

    def raw_big_pages() -> list[KeyValue]:
        return client.list_prefix(prefix, page_size=BIG_PAGE)[0]

    def models() -> list[LabWorker]:
        return [LabWorker.model_validate(doc) for doc in backend.list()]

    def models_from_json() -> list[LabWorker]:
        return [LabWorker.model_validate_json(kv.value) for kv in raw()]

    facade_rows: list[tuple[ListRow, Callable[[], object]]] = [
        (ListRow("(a) client.list_prefix -> KeyValue"), raw),
        (ListRow(f"(a) same, page_size={BIG_PAGE:,}"), raw_big_pages),
        (ListRow("(a') backend.list() -> dicts, gc as-is"), backend.list),
        (ListRow("(a') same, gc disabled during the load"), without_gc(backend.list)),
        (ListRow("(a'') dicts -> LabWorker.model_validate, gc as-is"), models),
        (ListRow("(a'') same, gc disabled during the load"), without_gc(models)),
        (
            ListRow("(a''') KeyValue -> LabWorker.model_validate_json, gc disabled"),
            without_gc(models_from_json),
        ),
    ]
    log(f"listing {size:,} with the facade...")
    for row, fn in facade_rows:
        measure(row, fn)
    rows = [row for row, _ in facade_rows]

    row = ListRow("(b) etcd3-py range(prefix=True), model objects")
    if etcd3py is not None and etcd3py_too:
        log(f"listing {size:,} with etcd3-py (slow: one run)...")
        server0 = etcd.cpu_seconds()
        wall, cpu, count = timed(lambda: etcd3py.range_prefix(prefix))
        server1 = etcd.cpu_seconds()
        if count != size:
            raise RuntimeError(f"etcd3-py listed {count}, expected {size}")
        row.add(wall, cpu, server1 - server0 if server0 is not None and server1 else None)
        row.note = "one run (too slow to repeat)"
    else:
        row.note = "skipped (~75 s at 100k; --full measures it)"
    rows.append(row)

    if grpc is not None:
        log(f"listing {size:,} with python-etcd3...")
        server0 = etcd.cpu_seconds()
        reply = grpc.request({"cmd": "list", "prefix": prefix, "repeats": repeats})
        server1 = etcd.cpu_seconds()
        if reply["count"] != size:
            raise RuntimeError(f"python-etcd3 listed {reply['count']}, expected {size}")
        # The worker cannot see etcd's pid: etcd's CPU is averaged over all its listings.
        server = None
        if server0 is not None and server1 is not None:
            server = (server1 - server0) / (2 * repeats)
        raw_row = ListRow("(c) python-etcd3 get_prefix -> (value, meta)", note="etcd CPU: mean")
        for wall, cpu in zip(reply["raw_s"], reply["raw_cpu_s"], strict=True):
            raw_row.add(wall, cpu, server)
        decoded = ListRow("(c') python-etcd3 get_prefix + json.loads", note="etcd CPU: mean")
        for wall in reply["decoded_s"]:
            decoded.add(wall, None, server)
        rows += [raw_row, decoded]

    ctl = ListRow("etcdctl get --prefix -w json", note="etcd's own Go client (gRPC)")
    for _ in range(repeats):
        cmd = ["get", prefix, "--prefix", "-w", "json"]
        server0, t0 = etcd.cpu_seconds(), time.perf_counter()
        done = etcd.etcdctl(*cmd)
        wall, server1 = time.perf_counter() - t0, etcd.cpu_seconds()
        if done.returncode != 0:  # a reference figure only: note it and go on
            error = done.stderr.decode().strip().splitlines() or ["no error output"]
            ctl.note = f"failed: {error[-1][-200:]}"
            log(f"etcdctl get --prefix failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
            break
        ctl.add(wall, None, server1 - server0 if server0 is not None and server1 else None)
    rows.append(ctl)
    return rows, load_s


def print_listing(size: int, rows: list[ListRow], load_s: float, doc_size: float) -> None:
    print(
        f"\n## Listing {size:,} LabWorker documents (~{doc_size:.0f} bytes each; "
        f"loaded in {load_s:.1f} s = {size / load_s:,.0f} docs/s via 128-put txns x4 threads)\n"
    )
    header = ["what", "wall (median)", "client CPU", "etcd CPU", "runs", "note"]
    print_markdown_table([header, *(r.cells() for r in rows)])


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="etcd client benchmark (prints, never asserts)")
    parser.add_argument("--endpoint", help="use this etcd (host:port) instead of starting one")
    parser.add_argument("--quick", action="store_true", help="~1 min: 1 round, 1 s cells, 10k list")
    parser.add_argument("--full", action="store_true", help="also list 100k with etcd3-py (~75 s)")
    parser.add_argument("--rounds", type=int, help="rounds per throughput cell (default 3)")
    parser.add_argument("--duration", type=float, help="seconds per cell (default 1.2)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--list-sizes", type=int, nargs="+", help="default 10000 100000")
    parser.add_argument("--list-repeats", type=int, help="runs per listing row (default 3)")
    parser.add_argument(
        "--with-grpc",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compare with python-etcd3 in its own venv (default on)",
    )
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="venv for python-etcd3")
    parser.add_argument("--fsync", action="store_true", help="run our etcd with fsync on")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-listing", action="store_true")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (1.0 if args.quick else 1.2)
    args.list_sizes = args.list_sizes or ([10_000] if args.quick else [10_000, 100_000])
    args.list_repeats = args.list_repeats or (1 if args.quick else 3)
    return args


def describe_machine(
    etcd: BenchEtcd, server_version: str, clients: dict[str, str]
) -> Iterator[str]:
    yield f"- machine: {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"
    yield f"- Python {platform.python_version()}, etcd {server_version} at {etcd.endpoint}"
    if etcd.pid is None:
        yield "- etcd: existing server given by --endpoint (fsync as configured there)"
    elif etcd.fsync:
        yield "- etcd: started by the bench, temp data dir, fsync ON"
    else:
        yield "- etcd: started by the bench, temp data dir, **--unsafe-no-fsync** (bench only)"
    for name, description in clients.items():
        yield f"- {CLIENT_TITLES[name]}: {description}"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    etcd = BenchEtcd.existing(args.endpoint) if args.endpoint else BenchEtcd.start(fsync=args.fsync)
    grpc: GrpcWorker | None = None
    notes: list[str] = []
    started = time.perf_counter()
    try:
        pool = max(32, max(args.concurrency) * 2)
        client = connect([etcd.endpoint], pool_size=pool)
        client.delete(ROOT_PREFIX + "/", ROOT_PREFIX + "0")  # leftovers of an earlier run
        facade = FacadeDriver(client)
        etcd3py = Etcd3pyDriver(etcd.endpoint, pool)
        descriptions = {
            FACADE: "controller.storage (etcd3-py's HTTP transport, our own JSON decoding)",
            ETCD3PY: "etcd3-py 0.1.6 `Client.range/put/Txn` (swagger model objects)",
        }
        if args.with_grpc:
            python, why = grpc_venv_python(args.venv)
            if python is None:
                notes.append(f"python-etcd3 skipped: {why}")
            else:
                grpc = GrpcWorker(python, etcd.endpoint)
                descriptions[GRPC] = f"{grpc.name} over gRPC, in its own process ({args.venv})"
        else:
            notes.append("python-etcd3 skipped (--no-with-grpc)")

        print("# Storage benchmark\n")
        command = " ".join(["python -m bench.storage", *(sys.argv[1:] if argv is None else argv)])
        print(f"`{command}`")
        print()
        server_version = str(client.status().get("version", "?"))
        for line in describe_machine(etcd, server_version, descriptions):
            print(line)
        for note in notes:
            print(f"- note: {note}")
        sys.stdout.flush()

        value = document_bytes(7)
        if not args.skip_throughput:
            runners: dict[str, Runner] = {
                FACADE: lambda w, c, d, p: measure_cell(facade, w, c, d, p, value),
                ETCD3PY: lambda w, c, d, p: measure_cell(etcd3py, w, c, d, p, value),
            }
            if grpc is not None:
                worker = grpc

                def run_grpc(w: str, c: int, d: float, p: str) -> dict[str, Any]:
                    request = {"cmd": "cell", "workload": w, "concurrency": c, "duration": d}
                    return worker.request({**request, "prefix": p, "value": value.decode()})

                runners[GRPC] = run_grpc
            cells = run_throughput(runners, args.concurrency, args.rounds, args.duration)
            print(
                f"\nCells of {args.duration:g} s; get/put use one ~{len(value)}-byte key per "
                "thread; a CAS increment is read + txn(compare mod_revision, put n+1), where on "
                "conflict (a) takes the current value from the txn's failure branch (and after a success it continues from the revision the txn returned, with no read) and (b), (c) "
                "re-read. Ratios are medians of per-round ratios. CAS check: lost updates summed over "
                "all clients and rounds ('ok' = none), and for the shared key (a)'s final counter "
                "value == the increments its threads made (last round)."
            )
            print_throughput(cells, list(runners), args.rounds)
            print_throughput_targets(cells, list(runners))
            sys.stdout.flush()

        if not args.skip_listing:
            doc_size = statistics.mean(len(document_bytes(i)) for i in range(1000))
            listed: dict[int, list[ListRow]] = {}
            for size in args.list_sizes:
                with_etcd3py = size <= 10_000 or args.full
                rows, load_s = list_benchmark(
                    etcd, client, etcd3py, grpc, size, args.list_repeats, with_etcd3py
                )
                listed[size] = rows
                print_listing(size, rows, load_s, doc_size)
                sys.stdout.flush()
            print(
                "\nclient CPU = this process's CPU time during the call (the rest of the wall "
                "time is waiting for etcd); etcd CPU = the server's CPU over the same window "
                "(only when the bench started etcd). (a) pages 5,000 keys per range request (the facade default) unless "
                "stated; "
                "(b) and (c) read the prefix in one response; etcdctl is etcd's Go client."
            )
            if 100_000 in listed:
                print("\nTarget (issue): list 100k in under 5 s. Measured (median wall):")
                for row in listed[100_000]:
                    if row.label.startswith("(a") and row.walls:
                        print(f"- {row.label}: {statistics.median(row.walls):.2f} s")
        print(f"\nTotal bench time: {time.perf_counter() - started:.0f} s")
    finally:
        if grpc is not None:
            grpc.close()
        if etcd.pid is None:  # someone else's etcd: leave nothing behind
            with contextlib.suppress(Exception):
                connect([etcd.endpoint]).delete(ROOT_PREFIX + "/", ROOT_PREFIX + "0")
        etcd.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

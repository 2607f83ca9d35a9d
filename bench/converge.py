"""Controller convergence benchmark: how fast a fleet becomes Ready, and what it costs.

Prints figures, ratios and targets; it never asserts on time (the machine is shared and
noisy). Everything runs against one throwaway etcd (Debian's 3.4, 8 GiB quota,
`--unsafe-no-fsync` unless --fsync) with the controller IN-PROCESS, built by `build_app`
exactly as `labctl run` builds it, with the sim provider at LAB_SIM_DELAY=0: the figures are
the controller's and etcd's, not a simulated cloud's.

1. Convergence: N new workers (made from manifests/samples) loaded, then the controller
   started; time until all N are Ready in the informer cache (what the controller sees),
   confirmed by one listing of etcd. Beside it, the raw CAS ceiling: the storage facade
   alone doing the same number of CAS writes with the same number of threads, so the
   ratio says how much of etcd's write rate the controller turns into progress.
2. Event → reconcile-start latency of spec changes written at a steady 100/s to a
   converged fleet of 1,000.
3. Memory per cached (converged) worker, and 4. time to a synced cache, each in a fresh
   subprocess (bench/_converge_cache.py).

    python -m bench.converge            # ~7 min: 1k and 10k; 8 workers x 2 rounds, 16 x 1
    python -m bench.converge --quick    # ~1 min: 1k only, 1 round, cache at 10k
    python -m bench.converge --full     # + 100k workers, 8 threads, 1 round: ~18 min more

Options: --workers 8,16 (CONTROLLER_WORKERS values; extra rounds only for the first),
--rounds N, --sizes 1000,10000 and --cache-sizes 10000,100000 (override the fleets; an empty
--cache-sizes skips 3-4), --skip-latency (leave out 2), --latency-seconds S, --fsync. The
before/after figures of docs/benchmarks.md come from

    python -m bench.converge --workers 8 --rounds 1 --skip-latency --cache-sizes 10000,100000

run alternately in a checkout of each commit. `raw_cas_ceiling(..., processes=n)` and
`start_controller_processes(n, env)` are the pieces for a bench of several controller
processes (shards): the ceiling is then measured with as many writer processes.

The default configuration (CONTROLLER_WORKERS=8) runs twice and the tables show medians;
other worker counts, and the 100k fleet, run once.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if not __package__:  # run as `python bench/converge.py`: make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _converge_data as data
from bench._etcd import BenchEtcd, etcd_version
from bench._raw_cas import cas_loop
from controller import config
from controller.app import App, build_app
from controller.labworker.kind import LABWORKER
from controller.labworker.model import LabWorker
from controller.resources import ObjectKey
from controller.runtime.controller import Controller
from controller.runtime.informer import Informer, InformerEvent
from controller.runtime.record import Record
from controller.storage import EtcdClient, EtcdStorageBackend, connect

ROOT = "/bench-converge"
QUOTA_BYTES = 8 * 1024**3
"""Several 100k-worker fleets and their history outgrow etcd's default 2 GiB quota."""
READY = "Ready"
LATENCY_RATE = 100.0
LATENCY_FLEET = 1_000

LABWORKER_CONTROLLER = "labworker"
"""The name controller/labworker/setup.py gives the LabWorker controller (app.controller(name))."""

TARGET_RATIO = 0.8
TARGET_P99_MS = 50.0
TARGET_BYTES_PER_WORKER = 3 * 1024
TARGET_SYNC_100K_S = 10.0


def log(message: str) -> None:
    """Progress goes to stderr so that stdout holds only the report."""
    print(message, file=sys.stderr, flush=True)


def settings_for(endpoint: str, prefix: str, workers: int) -> config.Settings:
    return config.load(
        None,
        environ={
            "ETCD_ENDPOINTS": endpoint,
            "ETCD_PREFIX": prefix,
            "LAB_SIM_DELAY": "0",
            "CONTROLLER_WORKERS": str(workers),
            "METRICS_PORT": "0",
            "HEALTH_PORT": "0",
        },
    )


# -- 1. convergence ----------------------------------------------------------------------------


@dataclass
class Cpu:
    """CPU seconds spent meanwhile by this process (all threads) and by etcd."""

    client: float
    server: float

    def per(self, count: int) -> str:
        """ "client+server" milliseconds per operation."""
        return f"{self.client / count * 1000:.2f}+{self.server / count * 1000:.2f}"


class CpuMeter:
    def __init__(self, etcd: BenchEtcd) -> None:
        self.etcd = etcd
        self._client = time.process_time()
        self._server = etcd.cpu_seconds()

    def read(self) -> Cpu:
        return Cpu(time.process_time() - self._client, self.etcd.cpu_seconds() - self._server)


@dataclass
class RawCas:
    writes: int
    seconds: float
    cpu: Cpu

    @property
    def writes_per_s(self) -> float:
        return self.writes / self.seconds


@dataclass
class Convergence:
    n: int
    workers: int
    load_s: float = 0.0
    sync_s: float = 0.0
    """manager.run() → cache synced and workers started."""
    converge_s: float = 0.0
    """manager.run() → all N Ready in the cache."""
    reconciles: int = 0
    txns: int = 0
    writes: int = 0
    """Successful writes: the etcd revision advanced by exactly this much."""
    conflicts: int = 0
    per_worker: list[int] = field(default_factory=list)
    ready_in_etcd: int = 0
    phases_in_etcd: dict[str, int] = field(default_factory=dict)
    cpu: Cpu | None = None
    raw: RawCas | None = None
    converged_doc: dict[str, Any] | None = None

    @property
    def reconciles_per_s(self) -> float:
        return self.reconciles / self.converge_s

    @property
    def writes_per_s(self) -> float:
        return self.writes / self.converge_s

    @property
    def raw_cas_per_s(self) -> float:
        return self.raw.writes_per_s if self.raw else 0.0

    @property
    def ratio(self) -> float:
        return self.writes_per_s / self.raw_cas_per_s if self.raw_cas_per_s else 0.0

    def cpu_ms(self, side: str) -> float:
        """CPU ms per write while converging: side "client" (this process) or "server"."""
        return getattr(self.cpu, side) / self.writes * 1000 if self.cpu else 0.0

    def raw_cpu_ms(self, side: str) -> float:
        raw = self.raw
        return getattr(raw.cpu, side) / raw.writes * 1000 if raw else 0.0


def labworker_controller(app: App) -> Controller:
    """The runtime Controller that reconciles LabWorkers (its queue, counters, reconcile)."""
    return app.controller(LABWORKER_CONTROLLER)


def labworker_informer(app: App) -> Informer[Record[LabWorker]]:
    """The manager's one shared LabWorker informer (keys "ns/name", index "phase")."""
    return app.manager.informer(LABWORKER)


class Instrumented:
    """Counters hooked into a built app: txns sent, reconciles per worker thread."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.controller = labworker_controller(app)
        self.informer = labworker_informer(app)
        self._lock = threading.Lock()
        self.txns = 0
        self.per_thread: Counter[str] = Counter()
        app.client.request_hooks.append(self._on_request)
        inner = self.controller._reconcile

        def counted(key: ObjectKey) -> Any:
            name = threading.current_thread().name
            self.per_thread[name] += 1  # one thread per name: no lost updates
            return inner(key)

        self.controller._reconcile = counted

    def _on_request(self, method: str, _seconds: float, _error: BaseException | None) -> None:
        if method.endswith("txn"):
            with self._lock:
                self.txns += 1

    def conflicts(self) -> int:
        value = self.app.registry.get_sample_value(
            "labctl_cas_conflicts_total", {"controller": LABWORKER_CONTROLLER}
        )
        return int(value or 0)

    def ready(self) -> int:
        """Ready workers in the cache, counted without copying the index: polled every 20 ms,
        a copy of 10k keys would be bench CPU billed to the controller."""
        return len(self.informer.cache._index_named("phase").get(READY, ()))


class RunningController:
    """`manager.run()` on a thread, the way `labctl run` runs it on the main thread."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.thread = threading.Thread(target=app.manager.run, name="manager", daemon=True)

    def start(self) -> float:
        started = time.perf_counter()
        self.thread.start()
        return started

    def stop(self) -> None:
        self.app.manager.stop()
        self.thread.join(60)
        self.app.client.close()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)


def wait_idle(app: App, quiet: float = 0.3, timeout: float = 60.0) -> None:
    """Until the queue is empty and no reconcile finished for `quiet` seconds: the last
    Ready writes still echo back as watch events after the cache shows all Ready."""
    controller = labworker_controller(app)
    deadline = time.monotonic() + timeout
    last, since = controller.reconciles, time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the controller did not go idle within {timeout:.0f}s")
        time.sleep(0.02)
        now = controller.reconciles
        if now != last or controller.queue.len() > 0:
            last, since = now, time.monotonic()


def converge(
    etcd: BenchEtcd,
    client: EtcdClient,
    n: int,
    workers: int,
    tag: str,
    *,
    keep_running: bool = False,
) -> tuple[Convergence, RunningController | None]:
    prefix = f"{ROOT}/{tag}"
    result = Convergence(n, workers)
    result.load_s, _ = data.load(client, prefix, n, data.new_fleet(n))
    app = build_app(settings_for(etcd.endpoint, prefix, workers))
    probe = Instrumented(app)
    runner = RunningController(app)
    revision_before = client.revision()
    cpu = CpuMeter(etcd)
    started = runner.start()
    timeout = 120 + n * 0.05
    try:
        wait_for(app.manager.started.is_set, timeout, "the controller to start")
        result.sync_s = time.perf_counter() - started
        wait_for(lambda: probe.ready() >= n, timeout, f"{n} workers Ready")
        result.converge_s = time.perf_counter() - started
        result.cpu = cpu.read()
    except TimeoutError:
        runner.stop()
        raise
    result.reconciles = probe.controller.reconciles
    result.txns = probe.txns
    result.conflicts = probe.conflicts()
    result.writes = client.revision() - revision_before
    result.per_worker = sorted(probe.per_thread.values())
    result.phases_in_etcd, result.converged_doc = data.stored_phases(client, prefix)
    result.ready_in_etcd = result.phases_in_etcd.get(READY, 0)
    if keep_running:
        return result, runner
    runner.stop()
    return result, None


def raw_cas_ceiling(
    etcd: BenchEtcd,
    client: EtcdClient,
    template: dict[str, Any],
    writes: int,
    threads: int,
    tag: str,
    *,
    processes: int = 1,
) -> RawCas:
    """The facade alone: `writes` CAS transactions from `processes` x `threads` threads.

    Each thread owns distinct keys (so no CAS ever conflicts) and writes them round-robin,
    comparing the mod_revision its previous write returned; every value is a converged
    worker's document, as big as the controller's status writes. With `processes` > 1 the
    writes are split between child processes (bench/_raw_cas.py) started together: the
    ceiling to set beside as many controller processes. CPU is the writers' (this process,
    or the children's sum) and etcd's.
    """
    prefix = f"{ROOT}/{tag}"
    keys_per_thread = 64
    total_threads = threads * processes
    make = data.replicas_of(template)
    _, revisions = data.load(client, prefix, keys_per_thread * total_threads, make)
    etcd_prefix = LABWORKER.prefix(prefix)
    docs = dict(make(i) for i in range(keys_per_thread * total_threads))
    try:
        if processes == 1:
            return _raw_cas_here(
                etcd, EtcdStorageBackend(client, etcd_prefix), docs, revisions, writes, threads
            )
        return _raw_cas_children(etcd, etcd_prefix, docs, revisions, writes, threads, processes)
    finally:
        data.drop(client, prefix)


def _raw_cas_here(
    etcd: BenchEtcd,
    backend: EtcdStorageBackend,
    docs: dict[str, dict[str, Any]],
    revisions: dict[str, int],
    writes: int,
    threads: int,
) -> RawCas:
    barrier = threading.Barrier(threads + 1)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            cas_loop(backend, docs, revisions, writes, threads, start=barrier)
        except BaseException as exc:  # reported below, on the bench's thread
            outcome.append(exc)
            barrier.abort()

    runner = threading.Thread(target=run, name="raw-cas")
    runner.start()
    cpu = CpuMeter(etcd)
    barrier.wait()
    started = time.perf_counter()
    runner.join()
    elapsed = time.perf_counter() - started
    if outcome:
        raise outcome[0]
    return RawCas(writes, elapsed, cpu.read())


def _raw_cas_children(
    etcd: BenchEtcd,
    etcd_prefix: str,
    docs: dict[str, dict[str, Any]],
    revisions: dict[str, int],
    writes: int,
    threads: int,
    processes: int,
) -> RawCas:
    names = sorted(docs)
    root = Path(__file__).resolve().parents[1]
    children = []
    for p in range(processes):
        mine = names[p::processes]
        job = {
            "endpoint": etcd.endpoint,
            "prefix": etcd_prefix,
            "revisions": {n: revisions[n] for n in mine},
            "documents": {n: docs[n] for n in mine},
            "writes": writes // processes + (1 if p < writes % processes else 0),
            "threads": threads,
        }
        child = subprocess.Popen(
            [sys.executable, "-m", "bench._raw_cas"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=root,
        )
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(json.dumps(job) + "\n")
        child.stdin.flush()
        children.append(child)
    for child in children:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("a raw CAS child failed to start")
    server = etcd.cpu_seconds()
    started = time.perf_counter()
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    client_cpu = 0.0
    for child in children:
        assert child.stdout is not None
        answer = child.stdout.readline()
        if child.wait(120) != 0 or not answer:
            raise RuntimeError("a raw CAS child failed")
        client_cpu += json.loads(answer)["cpu"]
    elapsed = time.perf_counter() - started
    server_after = etcd.cpu_seconds()
    server_cpu = server_after - server if server is not None and server_after is not None else 0.0
    return RawCas(writes, elapsed, Cpu(client_cpu, server_cpu))


def start_controller_processes(
    n: int, env: dict[str, str], *, extra_args: Sequence[str] = ()
) -> list[subprocess.Popen[bytes]]:
    """`n` controllers as separate processes (`labctl run`), each with `env` added to this
    process's environment: for benches of several replicas or shards. The caller stops them
    (terminate, then wait) and reads their CPU from /proc/<pid>/stat like etcd's."""
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-c", "from controller.cli import main; main()", "run", *extra_args]
    return [
        subprocess.Popen(
            cmd,
            env={**os.environ, **env},
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]


# -- 2. event → reconcile-start latency --------------------------------------------------------


@dataclass
class Latency:
    writes: int
    rate: float
    total_ms: list[float]
    """Write returned → first reconcile that sees it starts."""
    delivery_ms: list[float]
    """Write returned → its watch event reaches the informer's handlers."""
    queued_ms: list[float]
    """Watch event handled → that reconcile starts (workqueue wait)."""


def pct(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def event_latency(app: App, duration: float, rate: float) -> Latency:
    """Spec writes at a steady `rate` to random workers, timed three ways (see Latency).

    Starts once the controller is idle, so the figures are the steady state's, not the tail
    of the convergence.

    A write is "seen" by the first reconcile of its key whose cached copy has at least the
    write's revision: that reconcile acts on it, whatever event queued it.
    """
    starts: dict[str, list[tuple[float, int]]] = {}
    events: dict[tuple[str, int], float] = {}
    controller = labworker_controller(app)
    informer = labworker_informer(app)
    inner = controller._reconcile

    def timed(key: ObjectKey) -> Any:
        now = time.perf_counter()
        text = str(key)  # the informer's cache key, "ns/name"
        record = informer.get(text)
        starts.setdefault(text, []).append((now, record.revision if record else 0))
        return inner(key)

    def on_event(event: InformerEvent[Record[LabWorker]]) -> None:
        events.setdefault((event.key, event.revision), time.perf_counter())

    wait_idle(app)
    controller._reconcile = timed
    informer._handlers.insert(0, on_event)  # before the controller's: the arrival time
    repository = app.manager.repository(LABWORKER)
    keys = informer.cache.keys()
    rng = random.Random(42)
    written: list[tuple[str, int, float]] = []
    count = int(duration * rate)
    began = time.perf_counter()
    for i in range(count):
        delay = began + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        key = rng.choice(keys)

        def tag(worker: LabWorker, value: str = str(i)) -> None:
            worker.spec.instance.tags["bench"] = value

        update = repository.update_spec(*ObjectKey.parse(key), tag)
        done = time.perf_counter()
        assert update.object is not None and update.object.metadata.resource_version
        written.append((key, int(update.object.metadata.resource_version), done))
    achieved = count / (time.perf_counter() - began)
    wait_for(lambda: _all_seen(written, starts), 30, "reconciles of every bench write")
    controller._reconcile = inner
    informer._handlers.remove(on_event)

    total, delivery, queued = [], [], []
    for key, revision, done in written:
        first = next(t for t, seen in starts[key] if seen >= revision)
        arrived = events[(key, revision)]
        total.append((first - done) * 1000)
        delivery.append((arrived - done) * 1000)
        queued.append((first - arrived) * 1000)
    return Latency(count, achieved, total, delivery, queued)


def _all_seen(
    written: list[tuple[str, int, float]], starts: dict[str, list[tuple[float, int]]]
) -> bool:
    return all(any(seen >= rev for _, seen in starts.get(key, ())) for key, rev, _ in written)


# -- 3 + 4. cache memory and sync time (subprocess) --------------------------------------------


@dataclass
class CacheFigures:
    n: int
    load_s: float
    sync_s: float
    bytes_per_worker: float
    after_gc_per_worker: float
    after_trim_per_worker: float
    peak_bytes_per_worker: float
    rss_before_mb: float
    peak_rss_mb: float
    doc_bytes: int
    object_bytes: int
    cached: int


def cache_figures(
    endpoint: str, client: EtcdClient, template: dict[str, Any], n: int
) -> CacheFigures:
    prefix = f"{ROOT}/cache-{n}"
    load_s, _ = data.load(client, prefix, n, data.replicas_of(template), threads=6)
    log(f"  loaded {n:,} converged workers in {load_s:.1f}s; informer in a fresh process...")
    cmd = [
        sys.executable,
        "-m",
        "bench._converge_cache",
        "--endpoint",
        endpoint,
        "--prefix",
        prefix,
        "--expect",
        str(n),
    ]
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=root, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"cache child failed: {done.stderr.strip()[-2000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    data.drop(client, prefix)
    return CacheFigures(
        n=n,
        load_s=load_s,
        sync_s=out["sync_seconds"],
        bytes_per_worker=(out["rss_after"] - out["rss_before"]) / n,
        after_gc_per_worker=(out["rss_after_gc"] - out["rss_before"]) / n,
        after_trim_per_worker=(out["rss_after_trim"] - out["rss_before"]) / n,
        peak_bytes_per_worker=(out["peak"] - out["rss_before"]) / n,
        rss_before_mb=out["rss_before"] / 2**20,
        peak_rss_mb=out["peak"] / 2**20,
        doc_bytes=out["raw_value_bytes"],
        object_bytes=out["record_object_bytes"],
        cached=out["cached"],
    )


# -- report ------------------------------------------------------------------------------------


def med(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float], fmt: str = "{:,.0f}") -> str:
    """Median, and the range when there were several rounds."""
    text = fmt.format(med(values))
    if len(values) > 1:
        text += f" ({fmt.format(min(values))}–{fmt.format(max(values))})"
    return text


def print_table(rows: list[list[str]], right_from: int = 1) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.rjust(w) if i >= right_from else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    print(line(rows[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows[1:]:
        print(line(row))


def print_convergence(results: dict[tuple[int, int], list[Convergence]]) -> None:
    print("\n## 1. Convergence (new → Ready), LAB_SIM_DELAY=0, controller in-process\n")
    rows = [
        [
            "N",
            "workers",
            "rounds",
            "start → all Ready s",
            "start → synced s",
            "reconciles/s",
            "reconciles",
            "writes",
            "txns",
            "conflicts",
            "per worker min–max",
            "Ready in etcd",
        ]
    ]
    for (n, w), runs in sorted(results.items()):
        rows.append(
            [
                f"{n:,}",
                str(w),
                str(len(runs)),
                spread([r.converge_s for r in runs], "{:.2f}"),
                spread([r.sync_s for r in runs], "{:.2f}"),
                spread([r.reconciles_per_s for r in runs]),
                f"{med([r.reconciles for r in runs]):,.0f}",
                f"{med([r.writes for r in runs]):,.0f}",
                f"{med([r.txns for r in runs]):,.0f}",
                f"{med([r.conflicts for r in runs]):,.0f}",
                f"{runs[-1].per_worker[0]:,}–{runs[-1].per_worker[-1]:,}",
                f"{min(r.ready_in_etcd for r in runs):,}/{n:,}",
            ]
        )
    print_table(rows, right_from=2)
    print(
        "\nMedians (min–max) over rounds. writes = successful transactions (the etcd revision "
        "delta); txns also count lost CAS compares (conflicts). Ready in etcd: one listing of "
        "etcd after the cache said all N were Ready (lowest over rounds). per worker: "
        "reconciles done by each worker thread (last round)."
    )
    print("\n### Against the raw CAS ceiling\n")
    rows = [
        [
            "N",
            "workers",
            "controller writes/s",
            "raw CAS/s",
            "ratio",
            "controller CPU ms/write",
            "etcd CPU ms/write",
            "raw writer CPU ms/write",
            "raw etcd CPU ms/write",
        ]
    ]
    for (n, w), runs in sorted(results.items()):
        rows.append(
            [
                f"{n:,}",
                str(w),
                spread([r.writes_per_s for r in runs]),
                spread([r.raw_cas_per_s for r in runs]),
                spread([r.ratio for r in runs], "{:.2f}"),
                spread([r.cpu_ms("client") for r in runs], "{:.2f}"),
                spread([r.cpu_ms("server") for r in runs], "{:.2f}"),
                spread([r.raw_cpu_ms("client") for r in runs], "{:.2f}"),
                spread([r.raw_cpu_ms("server") for r in runs], "{:.2f}"),
            ]
        )
    print_table(rows, right_from=2)
    print(
        "\nraw CAS/s = the storage facade alone (EtcdStorageBackend.cas), as many CAS writes "
        "as the controller made, from as many threads as it has workers, each thread on its "
        "own keys (never a conflict), values = a converged worker's document, no reads. ratio = "
        "controller writes/s ÷ raw CAS/s (median of per-round ratios). CPU ms/write = CPU "
        "seconds per successful write (etcd revision delta): the controller's process (all "
        "threads: informer, workers, event recorder, the bench's 20 ms poll) and etcd's "
        "(/proc/<pid>/stat utime + stime) while converging; the raw writer's and etcd's "
        "during the ceiling run."
    )


def print_latency(lat: Latency) -> None:
    print(
        f"\n## 2. Event → reconcile start, {LATENCY_FLEET:,} converged workers, "
        f"{lat.writes:,} spec writes at {lat.rate:.0f}/s\n"
    )
    rows = [["interval", "p50 ms", "p90 ms", "p99 ms", "max ms"]]
    for title, samples in (
        ("write returned → reconcile starts", lat.total_ms),
        ("  write returned → watch event handled", lat.delivery_ms),
        ("  watch event handled → reconcile starts", lat.queued_ms),
    ):
        rows.append(
            [title] + [f"{pct(samples, q):.1f}" for q in (0.5, 0.9, 0.99)] + [f"{max(samples):.1f}"]
        )
    print_table(rows, right_from=1)
    print(
        "\nThe write is repository.update_spec (read + CAS) changing spec.instance.tags; the "
        "reconcile counted is the first one of that key whose cached copy has the write's "
        "revision. A negative delivery means the watch event beat the writer's own response."
    )


def marginal_bytes(figs: list[CacheFigures]) -> float | None:
    """RSS per worker between the smallest and largest fleet: what one more cached worker
    costs, without the fixed part (list pages, arenas) that dominates a small fleet."""
    if len(figs) < 2:
        return None
    small, big = figs[0], figs[-1]
    grown = big.bytes_per_worker * big.n - small.bytes_per_worker * small.n
    return grown / (big.n - small.n)


def print_cache(figs: list[CacheFigures]) -> None:
    print("\n## 3–4. Informer cache of converged workers (fresh process per size)\n")
    rows = [
        [
            "cached workers",
            "stored value B",
            "record objects B",
            "RSS/worker B",
            "after gc B",
            "after malloc_trim B",
            "peak/worker B",
            "RSS before → peak MB",
            "start → synced s",
        ]
    ]
    for f in figs:
        rows.append(
            [
                f"{f.cached:,}",
                f"{f.doc_bytes:,}",
                f"{f.object_bytes:,}",
                f"{f.bytes_per_worker:,.0f}",
                f"{f.after_gc_per_worker:,.0f}",
                f"{f.after_trim_per_worker:,.0f}",
                f"{f.peak_bytes_per_worker:,.0f}",
                f"{f.rss_before_mb:,.0f} → {f.peak_rss_mb:,.0f}",
                f"{f.sync_s:.2f}",
            ]
        )
    print_table(rows, right_from=1)
    print(
        "\nRSS/worker = (VmRSS after sync − VmRSS before informer.start()) / N, the "
        "controller's own ADDED events queued; after gc = the same after gc.collect(); after "
        "malloc_trim = the same once glibc has handed freed heap back to the OS (what stays is "
        "live data plus pymalloc arenas pinned by fragmentation); peak = (VmHWM after sync − "
        "VmRSS before) / N. RSS before = the process with everything imported and the app "
        "built; peak MB = VmHWM (not ru_maxrss, which a child inherits from its parent across "
        "fork + exec). record objects = sys.getsizeof of what one record owns (key, record, "
        "raw value, unshared strings); the rest is dict and index slots and allocator slack. "
        "start → synced = informer.start() to wait_synced() (paginated list at one revision, "
        "decode + validate, index)."
    )
    slope = marginal_bytes(figs)
    if slope is not None:
        print(
            f"\nMarginal cost, {figs[0].n:,} → {figs[-1].n:,} workers: {slope:,.0f} B per "
            "cached worker (the RSS growth divided by the added workers)."
        )


def print_targets(
    results: dict[tuple[int, int], list[Convergence]],
    lat: Latency | None,
    caches: list[CacheFigures],
) -> None:
    print("\n## Targets\n")
    rows = [["figure", "measured", "target", "met"]]

    def add(figure: str, value: float, shown: str, target: str, ok: bool) -> None:
        rows.append([figure, shown, target, "met" if ok else "NOT MET"])

    for (n, w), runs in sorted(results.items()):
        ratio = med([r.ratio for r in runs])
        add(
            f"controller writes/s ÷ raw CAS/s, {n:,} workers, {w} threads",
            ratio,
            f"{ratio:.2f}",
            f"≥ {TARGET_RATIO}",
            ratio >= TARGET_RATIO,
        )
    if lat is not None:
        p99 = pct(lat.total_ms, 0.99)
        add(
            "event → reconcile start p99 at 100 writes/s",
            p99,
            f"{p99:.1f} ms",
            "< 50 ms",
            p99 < TARGET_P99_MS,
        )
    for f in caches:
        add(
            f"cache memory per worker at {f.cached:,}",
            f.bytes_per_worker,
            f"{f.bytes_per_worker:,.0f} B",
            "< 3 KB (3,072 B)",
            f.bytes_per_worker < TARGET_BYTES_PER_WORKER,
        )
    slope = marginal_bytes(caches)
    if slope is not None:
        add(
            f"cache memory per added worker, {caches[0].n:,} → {caches[-1].n:,}",
            slope,
            f"{slope:,.0f} B",
            "< 3 KB (3,072 B)",
            slope < TARGET_BYTES_PER_WORKER,
        )
    big = [f for f in caches if f.n >= 100_000]
    for f in big:
        add(
            f"start → cache synced, {f.cached:,} workers",
            f.sync_s,
            f"{f.sync_s:.2f} s",
            "< 10 s",
            f.sync_s < TARGET_SYNC_100K_S,
        )
    print_table(rows, right_from=1)


# -- main --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="1k only, one round, cache at 10k")
    mode.add_argument(
        "--full", action="store_true", help="also converge 100k workers (~18 min more)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="rounds of the first --workers value (default 2; --quick 1); others run once",
    )
    parser.add_argument(
        "--workers", default="8,16", help="CONTROLLER_WORKERS values to run (default 8,16)"
    )
    parser.add_argument(
        "--latency-seconds",
        type=float,
        default=20.0,
        help="how long spec changes are written at 100/s (default 20)",
    )
    parser.add_argument("--fsync", action="store_true", help="let etcd fsync (slower, real)")
    parser.add_argument("--sizes", help="fleet sizes to converge, e.g. 1000,10000 (overrides)")
    parser.add_argument(
        "--cache-sizes", help="fleet sizes for the cache figures, e.g. 10000,100000 (overrides)"
    )
    parser.add_argument(
        "--skip-latency", action="store_true", help="leave out the event → reconcile latency"
    )
    args = parser.parse_args(argv)

    sizes = [1_000] if args.quick else [1_000, 10_000] + ([100_000] if args.full else [])
    cache_sizes = [10_000] if args.quick else [10_000, 100_000]
    if args.sizes:
        sizes = [int(n) for n in args.sizes.split(",")]
    if args.cache_sizes is not None:
        cache_sizes = [int(n) for n in args.cache_sizes.split(",") if n]
    rounds = args.rounds or (1 if args.quick else 2)
    worker_counts = [int(w) for w in args.workers.split(",")]

    began = time.monotonic()
    etcd = BenchEtcd.start(fsync=args.fsync, quota_bytes=QUOTA_BYTES)
    client = connect([etcd.endpoint], pool_size=32, timeout=120.0)
    try:
        print("# Controller convergence benchmark (bench/converge.py)\n")
        print(
            f"- etcd {etcd_version()} at {etcd.endpoint}, single member, "
            f"{'fsync on' if args.fsync else '--unsafe-no-fsync (benchmark only)'}, "
            f"--quota-backend-bytes {QUOTA_BYTES // 1024**3} GiB"
        )
        print(
            f"- Python {platform.python_version()}, {os.cpu_count()} CPUs shared by etcd, the "
            "controller and the bench; LAB_SIM_DELAY=0; logging not configured (INFO records "
            "are dropped, as with LOG_LEVEL=WARNING); no tracing exporter"
        )
        print(f"- sizes {sizes}, workers {worker_counts}, {rounds} round(s)")

        results: dict[tuple[int, int], list[Convergence]] = {}
        latency: Latency | None = None
        template: dict[str, Any] | None = None
        for rnd in range(1, rounds + 1):
            for n in sizes:
                for w in worker_counts:
                    if rnd > 1 and w != worker_counts[0]:
                        continue  # extra rounds only for the default configuration
                    if n >= 100_000 and (rnd > 1 or w != worker_counts[0]):
                        continue  # ~18 min each: once, default configuration only
                    want_latency = (
                        not args.skip_latency
                        and latency is None
                        and n == LATENCY_FLEET
                        and w == worker_counts[0]
                    )
                    log(f"round {rnd}: converging {n:,} workers with {w} threads...")
                    res, runner = converge(
                        etcd,
                        client,
                        n,
                        w,
                        f"c{n}-w{w}-r{rnd}",
                        keep_running=want_latency,
                    )
                    log(
                        f"  {res.converge_s:.2f}s, {res.reconciles} reconciles, {res.writes} "
                        f"writes, {res.conflicts} conflicts; raw CAS ceiling..."
                    )
                    if runner is not None:
                        log(f"  event latency: {args.latency_seconds:.0f}s at {LATENCY_RATE:.0f}/s")
                        latency = event_latency(runner.app, args.latency_seconds, LATENCY_RATE)
                        runner.stop()
                    assert res.converged_doc is not None
                    template = template or res.converged_doc
                    res.raw = raw_cas_ceiling(
                        etcd, client, res.converged_doc, res.writes, w, f"raw-{n}-w{w}-r{rnd}"
                    )
                    log(f"  raw {res.raw_cas_per_s:,.0f} CAS/s → ratio {res.ratio:.2f}")
                    data.drop(client, f"{ROOT}/c{n}-w{w}-r{rnd}")
                    results.setdefault((n, w), []).append(res)

        assert template is not None
        caches = []
        for n in cache_sizes:
            log(f"cache: {n:,} converged workers")
            caches.append(cache_figures(etcd.endpoint, client, template, n))

        print_convergence(results)
        if latency is not None:
            print_latency(latency)
        print_cache(caches)
        print_targets(results, latency, caches)
        print(f"\nWhole run: {(time.monotonic() - began) / 60:.1f} min")
    finally:
        client.close()
        etcd.stop()


if __name__ == "__main__":
    main()

"""Priority queue benchmark: a new worker applied while a restart re-reconciles a fleet.

A restarted controller lists every stored worker and hands each to its queue. With 100k
converged workers that is 100k quick reconciles, minutes of work in all; a worker a user
applies meanwhile should not wait for them (docs/architecture.md, Work queue). Target: it
reaches Ready in < 2 s beyond the sim provider's own delay.

One throwaway etcd (as bench/converge.py: Debian's etcd, --unsafe-no-fsync) holds N
converged workers, stored directly as a converged worker and its simulated instance
replicated under new names and uids (so their reconciles are the no-op checks of a real
restart). Then, for PRIORITY_QUEUE on and off in the same run: the controller is built
in-process by `build_app` exactly as `labctl run` builds it (sim provider with its delay);
1 s after it starts reconciling (caches synced, the backlog queued), a new worker is
created; the time from that write to the worker's Ready in the controller's cache is
printed, minus the sim's own delay (measured on an idle controller in the same run).
Prints figures, never asserts on time.

    python -m bench.priority                  # 100k workers, LAB_SIM_DELAY=1
    python -m bench.priority --workers 10000  # quicker
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if not __package__:  # run as `python bench/priority.py`: make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _converge_data as data
from bench._etcd import BenchEtcd, etcd_version
from bench.converge import QUOTA_BYTES, RunningController, log, wait_for, wait_idle
from controller import config
from controller.app import build_app
from controller.labworker.kind import LABWORKER
from controller.labworker.model import LabWorker
from controller.labworker.phase import Phase
from controller.labworker.sim import instances_prefix
from controller.runtime.informer import InformerEvent
from controller.runtime.record import Record
from controller.storage import BatchPut, EtcdClient, EtcdStorageBackend, connect

ROOT = "/bench-priority"
LABWORKER_CONTROLLER = "labworker"
TARGET_BEYOND_SIM_S = 2.0
SIM_STEPS_TO_READY = 2
"""The sim's instance runs one step after provisioning, its host is up one step later."""


def settings_for(
    endpoint: str, prefix: str, *, sim_delay: float, priority_queue: bool = True
) -> config.Settings:
    return config.load(
        None,
        environ={
            "ETCD_ENDPOINTS": endpoint,
            "ETCD_PREFIX": prefix,
            "LAB_SIM_DELAY": str(sim_delay),
            "PRIORITY_QUEUE": "true" if priority_queue else "false",
            "METRICS_PORT": "0",
            "HEALTH_PORT": "0",
        },
    )


# -- the converged fleet -----------------------------------------------------------------------


def converged_template(endpoint: str, client: EtcdClient) -> tuple[data.Document, data.Document]:
    """One worker converged by the controller itself: its stored document and instance."""
    prefix = f"{ROOT}/template"
    data.load(client, prefix, 1, data.new_fleet(1))
    app = build_app(settings_for(endpoint, prefix, sim_delay=0))
    runner = RunningController(app)
    runner.start()
    try:
        wait_for(lambda: data.stored_phases(client, prefix)[0].get("Ready") == 1, 60, "Ready")
        wait_idle(app)
    finally:
        runner.stop()
    _, worker = data.stored_phases(client, prefix)
    assert worker is not None
    kv = client.get(instances_prefix(prefix) + worker["metadata"]["uid"])
    assert kv is not None, "the sim keeps an instance per worker uid"
    return worker, json.loads(kv.value)


def seed(
    client: EtcdClient, prefix: str, n: int, worker: data.Document, instance: data.Document
) -> float:
    """Store `n` copies of the converged worker and of its instance; returns seconds."""
    workers = EtcdStorageBackend(client, LABWORKER.prefix(prefix))
    instances = EtcdStorageBackend(client, instances_prefix(prefix))
    worker_text, instance_text = json.dumps(worker), json.dumps(instance)

    def put(indices: range) -> None:
        worker_ops, instance_ops = [], []
        for i in indices:
            key, doc = data.renamed(json.loads(worker_text), i)
            copy = json.loads(instance_text)
            copy.update(uid=doc["metadata"]["uid"], name=doc["metadata"]["name"])
            worker_ops.append(BatchPut(key, doc))
            instance_ops.append(BatchPut(copy["uid"], copy))
        workers.apply_batch(worker_ops)
        instances.apply_batch(instance_ops)

    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(put, data.batches(n)))
    return time.perf_counter() - started


# -- one restart -------------------------------------------------------------------------------


@dataclass
class Run:
    label: str
    sync_s: float
    """manager.run() → caches synced and workers started."""
    backlog: int
    """Keys queued when the new worker was applied."""
    ready_s: float
    """The new worker's create returned → its Ready reached the controller's cache."""
    reconciles: int
    """Reconciles done by then (the backlog's and the new worker's)."""


def new_worker(name: str) -> LabWorker:
    _, doc = data.new_fleet(1)(0)
    doc["metadata"] = {"name": name, "namespace": "default"}
    doc.pop("status", None)
    return LabWorker.model_validate(doc)


def restart(
    endpoint: str,
    prefix: str,
    label: str,
    *,
    sim_delay: float,
    priority_queue: bool,
    apply_after: float,
    timeout: float,
) -> Run:
    app = build_app(
        settings_for(endpoint, prefix, sim_delay=sim_delay, priority_queue=priority_queue)
    )
    controller = app.controller(LABWORKER_CONTROLLER)
    name = f"new-{label}"
    ready = threading.Event()
    ready_at: list[float] = []

    def on_event(event: InformerEvent[Record[Any]]) -> None:
        mine = event.key == f"default/{name}" and event.obj is not None
        if mine and not ready.is_set() and event.obj.decode().status.phase is Phase.READY:
            ready_at.append(time.perf_counter())
            ready.set()

    app.manager.informer(LABWORKER).add_handler(on_event)
    runner = RunningController(app)
    started = runner.start()
    try:
        wait_for(app.manager.started.is_set, timeout, "the controller to start")
        sync_s = time.perf_counter() - started
        time.sleep(apply_after)
        backlog = controller.queue.len()
        app.manager.repository(LABWORKER).create(new_worker(name))
        applied = time.perf_counter()
        if not ready.wait(timeout):
            raise TimeoutError(f"{name} did not become Ready within {timeout:.0f}s")
        return Run(label, sync_s, backlog, ready_at[0] - applied, controller.reconciles)
    finally:
        runner.stop()


# -- report ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=100_000, help="converged fleet size")
    parser.add_argument(
        "--sim-delay", type=float, default=1.0, help="LAB_SIM_DELAY, seconds per sim step"
    )
    parser.add_argument("--apply-after", type=float, default=1.0, help="seconds after start")
    parser.add_argument(
        "--runs", default="on,off", help="which restarts: on, off (FIFO takes minutes at 100k)"
    )
    args = parser.parse_args(argv)

    etcd = BenchEtcd.start(quota_bytes=QUOTA_BYTES)
    client = connect(etcd.endpoint, timeout=120.0)
    try:
        log("converging one worker for the template...")
        worker, instance = converged_template(etcd.endpoint, client)
        prefix = f"{ROOT}/fleet"
        log(f"storing {args.workers:,} converged workers and their instances...")
        seed_s = seed(client, prefix, args.workers, worker, instance)
        log(f"  stored in {seed_s:.1f}s")
        timeout = 600 + args.workers * 0.01
        common = {"sim_delay": args.sim_delay, "apply_after": args.apply_after, "timeout": timeout}
        log("idle controller (the sim's own delay)...")
        idle = restart(etcd.endpoint, f"{ROOT}/idle", "idle", priority_queue=True, **common)
        runs = [idle]
        wanted = set(args.runs.split(","))
        for label, on in (("on", True), ("off", False)):
            if label not in wanted:
                continue
            log(f"restart on {args.workers:,} converged workers, PRIORITY_QUEUE={label}...")
            runs.append(restart(etcd.endpoint, prefix, label, priority_queue=on, **common))
            done = runs[-1]
            log(f"  apply → Ready {done.ready_s:.2f}s (backlog {done.backlog:,} at apply)")
    finally:
        client.close()
        etcd.stop()

    print(f"\n## Priority queue: a new worker during a restart on {args.workers:,} workers\n")
    print(
        f"`python -m bench.priority --workers {args.workers}` · LAB_SIM_DELAY={args.sim_delay:g}"
        f" · CONTROLLER_WORKERS=8 (default) · applied {args.apply_after:g}s after the controller"
        f" started reconciling · etcd {etcd_version()} · Python {platform.python_version()}"
        f" · {platform.machine()}\n"
    )
    sim = SIM_STEPS_TO_READY * args.sim_delay
    print(
        "| run | synced s | backlog at apply | apply → Ready s | minus sim delay s "
        "| reconciles by then |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for run in runs:
        print(
            f"| {run.label} | {run.sync_s:.1f} | {run.backlog:,} | {run.ready_s:.2f} "
            f"| {run.ready_s - sim:.2f} | {run.reconciles:,} |"
        )
    if len(runs) < 3:
        return
    on, off = runs[1], runs[2]
    print(
        f"\nsim delay = {SIM_STEPS_TO_READY} steps x {args.sim_delay:g}s. Priority queue on: "
        f"{on.ready_s - sim:.2f}s beyond it (target < {TARGET_BEYOND_SIM_S:g}s; an idle "
        f"controller: {idle.ready_s - sim:.2f}s). Off (FIFO): {off.ready_s - sim:.2f}s, "
        f"{off.ready_s / on.ready_s:.1f}x the time to Ready."
    )


if __name__ == "__main__":
    main()

"""The timing harness of the storage bench, and the python-etcd3 (gRPC) side of it.

Two roles in one stdlib-only file, on purpose:

* `bench/storage.py` imports `measure_cell` from here, so every client — our facade,
  etcd3-py and python-etcd3 — is timed by the very same loop.
* Run as a script by a separate venv's python (python-etcd3 0.12 needs protobuf<4 and
  imports as `etcd3`, clashing with etcd3-py), it drives python-etcd3: one JSON request per
  line on stdin, one JSON result per line on stdout. A single request can also be given as
  the last argument (`python python_etcd3_worker.py --endpoint H:P '{"cmd": "ping"}'`).

Requests: `{"cmd": "ping"}`, `{"cmd": "cell", "workload", "concurrency", "duration",
"prefix", "value"}`, `{"cmd": "list", "prefix", "repeats"}`, `{"cmd": "quit"}`.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

WORKLOADS = ("get", "put", "cas-own", "cas-shared")
"""`cas-own`: each thread increments its own key; `cas-shared`: all threads one hot key."""

WARMUP_OPS = 3
"""Untimed ops per thread before the clock starts: opens the thread's pooled connection."""


class Driver(Protocol):
    """What a client must offer to be timed. `increment` returns the conflicts it retried."""

    def get(self, key: str) -> None: ...

    def put(self, key: str, value: bytes) -> None: ...

    def increment(self, key: str) -> int: ...

    def read_int(self, key: str) -> int: ...


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def measure_cell(
    driver: Driver, workload: str, concurrency: int, duration: float, prefix: str, value: bytes
) -> dict[str, Any]:
    """Run `workload` on `concurrency` threads for `duration` seconds; latencies in ms.

    For the CAS workloads the final counter values are read back and compared with the
    increments the threads made (`lost` must be 0: a lost update is a correctness bug).
    """
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}; expected one of {WORKLOADS}")
    shared = workload == "cas-shared"
    keys = [f"{prefix}/shared" if shared else f"{prefix}/t{i}" for i in range(concurrency)]
    for key in set(keys):
        driver.put(key, b"0" if workload.startswith("cas") else value)

    def operation(key: str) -> Callable[[], int]:
        """One timed op; returns the conflicts it retried (always 0 for get and put)."""

        def get() -> int:
            driver.get(key)
            return 0

        def put() -> int:
            driver.put(key, value)
            return 0

        if workload == "get":
            return get
        if workload == "put":
            return put
        return lambda: driver.increment(key)

    clock: dict[str, float] = {}

    def start_clock() -> None:
        clock["start"] = time.perf_counter()
        clock["deadline"] = clock["start"] + duration

    barrier = threading.Barrier(concurrency, action=start_clock)
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    conflicts = [0] * concurrency
    increments = [0] * concurrency
    finished = [0.0] * concurrency
    errors: list[BaseException] = []

    def run(index: int) -> None:
        op = operation(keys[index])
        try:
            for _ in range(WARMUP_OPS):
                op()
                increments[index] += 1
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()
            return
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return
        samples = latencies[index]
        perf = time.perf_counter
        deadline = clock["deadline"]
        retried = 0
        try:
            while True:
                t0 = perf()
                if t0 >= deadline:
                    break
                retried += op()
                samples.append(perf() - t0)
        except BaseException as exc:
            errors.append(exc)
        finally:
            finished[index] = perf()
            conflicts[index] = retried
            increments[index] += len(samples)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{workload} x{concurrency} failed: {errors[0]!r}") from errors[0]

    elapsed = max(finished) - clock["start"]
    merged = sorted(s for per_thread in latencies for s in per_thread)
    result: dict[str, Any] = {
        "ops": len(merged),
        "seconds": elapsed,
        "ops_per_s": len(merged) / elapsed if elapsed > 0 else 0.0,
        "p50_ms": percentile(merged, 0.50) * 1000,
        "p99_ms": percentile(merged, 0.99) * 1000,
        "conflicts": sum(conflicts),
    }
    if workload.startswith("cas"):
        expected = sum(increments)
        final = sum(driver.read_int(k) for k in set(keys))
        result.update(increments=expected, final=final, lost=expected - final)
    return result


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    """(wall seconds, process CPU seconds, result), after a full collection of old garbage."""
    gc.collect()
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, time.process_time() - cpu0, result


# -- python-etcd3 side -------------------------------------------------------------------------


class GrpcDriver:
    """python-etcd3 0.12 over gRPC; CAS re-reads on conflict (its txn has no failure ops here)."""

    def __init__(self, endpoint: str) -> None:
        import etcd3  # python-etcd3, only present in the bench venv

        host, _, port = endpoint.rpartition(":")
        # get_prefix reads a whole prefix in ONE response: lift gRPC's 4 MiB receive cap.
        options = [("grpc.max_receive_message_length", 1 << 30)]
        self.client = etcd3.client(host, int(port), grpc_options=options)
        self.version = str(getattr(etcd3, "__version__", "?"))

    def get(self, key: str) -> None:
        self.client.get(key)

    def put(self, key: str, value: bytes) -> None:
        self.client.put(key, value)

    def read_int(self, key: str) -> int:
        value, _meta = self.client.get(key)
        return int(value)

    def increment(self, key: str) -> int:
        tx = self.client.transactions
        conflicts = 0
        while True:
            value, meta = self.client.get(key)
            ok, _ = self.client.transaction(
                compare=[tx.mod(key) == meta.mod_revision],
                success=[tx.put(key, str(int(value) + 1).encode())],
                failure=[],
            )
            if ok:
                return conflicts
            conflicts += 1

    def list_prefix(self, prefix: str, repeats: int) -> dict[str, Any]:
        out: dict[str, Any] = {"raw_s": [], "raw_cpu_s": [], "decoded_s": [], "count": 0}
        for _ in range(repeats):
            wall, cpu, items = timed(lambda: list(self.client.get_prefix(prefix)))
            out["count"] = len(items)  # type: ignore[arg-type]
            out["raw_s"].append(wall)
            out["raw_cpu_s"].append(cpu)
            del items
            wall, _, docs = timed(
                lambda: [json.loads(v) for v, _m in self.client.get_prefix(prefix)]
            )
            out["decoded_s"].append(wall)
            del docs
        return out


def handle(driver: GrpcDriver, request: dict[str, Any]) -> dict[str, Any]:
    cmd = request.get("cmd")
    if cmd == "ping":
        return {"ok": True, "client": f"python-etcd3 {driver.version}"}
    if cmd == "cell":
        return measure_cell(
            driver,
            request["workload"],
            int(request["concurrency"]),
            float(request["duration"]),
            request["prefix"],
            request["value"].encode(),
        )
    if cmd == "list":
        return driver.list_prefix(request["prefix"], int(request.get("repeats", 1)))
    raise ValueError(f"unknown command {cmd!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--endpoint", required=True, help="etcd host:port")
    parser.add_argument("request", nargs="?", help="one JSON request (else read lines on stdin)")
    args = parser.parse_args()
    driver = GrpcDriver(args.endpoint)
    lines = [args.request] if args.request else sys.stdin
    for line in lines:
        if not line.strip():
            continue
        request = json.loads(line)
        if request.get("cmd") == "quit":
            break
        try:
            reply = handle(driver, request)
        except Exception as exc:  # reported to the bench, which prints it and goes on
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

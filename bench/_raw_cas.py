"""Child process of bench/converge.py's raw CAS ceiling with several processes.

Reads one JSON job on stdin (endpoint, key prefix, {name: mod_revision}, {name: document},
writes,
threads), connects, prints "ready", waits for a "go" line, then makes exactly `writes` CAS
writes from `threads` threads on its own keys (round-robin, never a conflict) and prints one
JSON line: seconds and this process's CPU seconds. The parent times the wall clock from "go"
to the last child's answer, so N processes give one aggregate rate.

    python -m bench._raw_cas < job.json
"""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.storage import EtcdStorageBackend, connect


def cas_loop(
    backend: EtcdStorageBackend,
    docs: dict[str, dict[str, Any]],
    revisions: dict[str, int],
    writes: int,
    threads: int,
    start: threading.Barrier | None = None,
) -> None:
    """`writes` CAS writes from `threads` threads, each thread on its own keys of `docs`."""
    names = sorted(docs)
    quotas = [writes // threads + (1 if t < writes % threads else 0) for t in range(threads)]

    def run(t: int) -> None:
        mine = names[t::threads]
        if start is not None:
            start.wait()
        for j in range(quotas[t]):
            name = mine[j % len(mine)]
            outcome = backend.cas(name, revisions[name], docs[name])
            if not outcome.succeeded:
                raise RuntimeError(f"raw CAS on {name} conflicted: another writer in the bench?")
            revisions[name] = outcome.revision

    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(run, t) for t in range(threads)]:
            future.result()


def main() -> None:
    job = json.loads(sys.stdin.readline())
    client = connect([job["endpoint"]], pool_size=max(8, job["threads"]), timeout=120.0)
    backend = EtcdStorageBackend(client, job["prefix"])
    revisions: dict[str, int] = job["revisions"]
    docs: dict[str, dict[str, Any]] = job["documents"]
    print("ready", flush=True)
    sys.stdin.readline()  # "go"
    cpu, started = time.process_time(), time.perf_counter()
    cas_loop(backend, docs, revisions, job["writes"], job["threads"])
    print(
        json.dumps({"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu}),
        flush=True,
    )
    client.close()


if __name__ == "__main__":
    main()

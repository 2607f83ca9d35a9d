"""Child process of bench/converge.py: the informer's memory and sync time for one fleet.

It runs in a fresh interpreter per fleet size so that nothing the parent allocated (other
fleets, freed-but-kept arenas) is counted: RSS is read after every import and the app are
built, then after the cache has synced; the difference is what the cache costs.

    python -m bench._converge_cache --endpoint 127.0.0.1:2379 --prefix /bench/x --expect 10000

Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller import config
from controller.app import build_app
from controller.labworker.kind import LABWORKER


def proc_status_bytes(field: str) -> int:
    """VmRSS (resident now) or VmHWM (resident high-water mark) of this process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def object_bytes(records: list[tuple[str, Any]]) -> int:
    """Median bytes of the objects one cached record owns alone: its key, the record, and
    every field value not shared with another record (the phase string, say, is shared)."""
    seen: dict[int, int] = {}
    for _, record in records:
        for name in getattr(type(record), "__slots__", ()):
            value = getattr(record, name)
            for item in value if isinstance(value, tuple) else (value,):
                seen[id(item)] = seen.get(id(item), 0) + 1
    sizes = []
    for key, record in records:
        size = sys.getsizeof(key) + sys.getsizeof(record)
        for name in getattr(type(record), "__slots__", ()):
            value = getattr(record, name)
            if isinstance(value, tuple):
                size += sys.getsizeof(value)
            for item in value if isinstance(value, tuple) else (value,):
                if seen[id(item)] == 1:
                    size += sys.getsizeof(item)
        sizes.append(size)
    return sorted(sizes)[len(sizes) // 2] if sizes else 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()

    settings = config.load(
        None,
        environ={
            "ETCD_ENDPOINTS": args.endpoint,
            "ETCD_PREFIX": args.prefix,
            "LAB_SIM_DELAY": "0",
            "METRICS_PORT": "0",
            "HEALTH_PORT": "0",
        },
    )
    app = build_app(settings)
    app.client.revision()  # connection pool warmed, as it is once the manager has checked etcd
    gc.collect()
    rss_before = proc_status_bytes("VmRSS")
    peak_before = proc_status_bytes("VmHWM")

    informer = app.manager.informer(LABWORKER)  # the manager's one LabWorker informer
    started = time.perf_counter()
    informer.start()
    synced = informer.wait_synced(args.timeout)
    sync_seconds = time.perf_counter() - started
    cached = len(informer.cache)
    keys = informer.cache.keys()[:200]
    records = [(k, informer.cache.get(k)) for k in keys]
    raw_sizes = sorted(len(getattr(r, "raw", b"")) for _, r in records)

    rss_after = proc_status_bytes("VmRSS")
    gc.collect()
    rss_after_gc = proc_status_bytes("VmRSS")
    rss_after_trim = rss_after_gc
    with contextlib.suppress(OSError, AttributeError):  # glibc only
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back: what is left is live
        rss_after_trim = proc_status_bytes("VmRSS")
    peak = proc_status_bytes("VmHWM")
    informer.stop()
    app.client.close()
    print(
        json.dumps(
            {
                "synced": synced,
                "cached": cached,
                "expected": args.expect,
                "sync_seconds": sync_seconds,
                "rss_before": rss_before,
                "rss_after": rss_after,
                "rss_after_gc": rss_after_gc,
                "rss_after_trim": rss_after_trim,
                "peak_before": peak_before,
                "peak": peak,
                "record_object_bytes": object_bytes(records),
                "raw_value_bytes": raw_sizes[len(raw_sizes) // 2] if raw_sizes else 0,
            }
        )
    )


if __name__ == "__main__":
    main()

"""Prometheus series of sharded replicas (controller.runtime.sharding's ShardingMetrics)."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge


class ShardingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._owned = Gauge(
            "labctl_shards_owned",
            "Shards this replica holds a lease on (sharded mode)",
            registry=registry,
        )
        self._handoffs = Counter(
            "labctl_shard_handoffs_total",
            "Shard hand-offs seen by this replica: acquired, released, or lost with its lease",
            ["direction"],
            registry=registry,
        )
        self._keys = Gauge(
            "labctl_shard_keys",
            "Cached keys per shard this replica holds (refreshed every 15 s)",
            ["shard"],
            registry=registry,
        )
        self._lock = threading.Lock()
        self._reported: set[int] = set()

    def shards_owned(self, n: int) -> None:
        self._owned.set(n)

    def shard_handoff(self, direction: str) -> None:
        self._handoffs.labels(direction).inc()

    def shard_keys(self, counts: dict[int, int]) -> None:
        """One series per held shard; a shard released since the last report is removed."""
        with self._lock:
            for shard in self._reported - counts.keys():
                self._keys.remove(str(shard))
            for shard, n in counts.items():
                self._keys.labels(str(shard)).set(n)
            self._reported = set(counts)

"""The leader compacts etcd to keep HISTORY_RETENTION of object history, like etcd's own
periodic auto-compaction (docs/architecture.md, History and retention).

etcd keeps every revision until it is compacted; `labctl history` reads them, and without a
compaction the database only grows (until the NOSPACE alarm stops all writes). etcd can do this
itself (`--auto-compaction-mode=periodic --auto-compaction-retention=…`), but many clusters
are started without it; so the controller does what etcd's periodic compactor does: sample
(time, revision) every retention/10 (at most hourly), and compact to the newest sampled
revision older than the retention. Samples live in memory, so a new leader compacts for the
first time one retention after it took over — history is kept longer, never shorter.

When etcd is already compacted at or beyond the target (it auto-compacts, or another tenant
of a shared etcd compacts), the controller says so once and leaves compaction to it.
Only the leader compacts (`needs_leader`): one compactor per cluster.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from controller.storage import Compacted, EtcdClient, StorageError

log = logging.getLogger("controller.runtime.compaction")

MAX_SAMPLE_INTERVAL = 3600.0
MIN_SAMPLE_INTERVAL = 1.0


def sample_interval(retention: float) -> float:
    """etcd's rule: a tenth of the retention, at most an hour (and at least a second)."""
    return max(MIN_SAMPLE_INTERVAL, min(retention / 10, MAX_SAMPLE_INTERVAL))


class RetentionWindow:
    """(time, revision) samples, and the newest revision older than the retention.

    Pure bookkeeping on a caller's clock, so it is tested without etcd or sleeping.
    """

    def __init__(self, retention: float) -> None:
        self.retention = retention
        self._samples: deque[tuple[float, int]] = deque()

    def observe(self, now: float, revision: int) -> None:
        self._samples.append((now, revision))

    def target(self, now: float) -> int | None:
        """The revision to compact to: the newest sample taken at least `retention` ago (so
        everything written since then is kept); None until one is that old. Older samples
        are dropped: they can never be the target again."""
        cutoff = now - self.retention
        samples = self._samples
        while len(samples) > 1 and samples[1][0] <= cutoff:
            samples.popleft()
        if samples and samples[0][0] <= cutoff:
            return samples[0][1]
        return None


class CompactionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.compacted_revision = Gauge(
            "labctl_history_compacted_revision",
            "The revision this controller last compacted etcd to (0: not yet)",
            registry=registry,
        )
        self.compactions = Counter(
            "labctl_history_compactions",
            "Compaction attempts by result: compacted, etcd_ahead (etcd compacts on its own), "
            "error",
            ["result"],
            registry=registry,
        )


class HistoryCompactor:
    """The Runnable: samples every `sample_interval(retention)`, compacts when one is due."""

    needs_leader = True

    def __init__(
        self,
        client: EtcdClient,
        *,
        retention: float,
        probe_key: str,
        metrics: CompactionMetrics | None = None,
        clock: Callable[[], float] | None = None,
        name: str = "history-compaction",
    ) -> None:
        """`probe_key`: a key inside the prefix, for the revision reads (a user whose role
        covers only the prefix may read nothing else)."""
        self.name = name
        self.client = client
        self.window = RetentionWindow(retention)
        self.interval = sample_interval(retention)
        self.probe_key = probe_key
        self.metrics = metrics
        self.clock = clock or time.monotonic
        self.last_compacted = 0
        self._etcd_ahead_logged = False
        self._error_logged = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        log.info(
            "history compaction: keeping %gs of etcd history; sampling the revision every %gs",
            self.window.retention,
            self.interval,
            extra={"retention_seconds": self.window.retention},
        )

    def stop(self, timeout: float) -> bool:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.interval)

    def tick(self, now: float | None = None) -> int | None:
        """Sample the revision, and compact if a sample is old enough. Returns the revision
        compacted to, or None. Never raises: a failure is logged and tried again next tick."""
        moment = self.clock() if now is None else now
        try:
            self.window.observe(moment, self.client.revision(self.probe_key))
            target = self.window.target(moment)
            if target is None or target <= self.last_compacted:
                return None
            return self._compact(target)
        except StorageError as exc:
            self._count("error")
            level = logging.DEBUG if self._error_logged else logging.WARNING
            self._error_logged = True
            log.log(
                level,
                "history compaction failed (%s); trying again in %gs",
                exc,
                self.interval,
                extra={"error": str(exc)},
            )
            return None

    def _compact(self, target: int) -> int | None:
        try:
            # A read at the target is refused if etcd already compacted past it.
            self.client.range(self.probe_key, revision=target, count_only=True)
            self.client.compact(target, physical=True)
        except Compacted:
            self.last_compacted = target
            self._count("etcd_ahead")
            if not self._etcd_ahead_logged:
                self._etcd_ahead_logged = True
                log.info(
                    "history compaction: etcd is already compacted past revision %d (it "
                    "auto-compacts, or another client compacts it); leaving compaction to it "
                    "— set HISTORY_RETENTION=0 to turn this off",
                    target,
                    extra={"revision": target},
                )
            return None
        self.last_compacted = target
        self._etcd_ahead_logged = self._error_logged = False
        self._count("compacted")
        if self.metrics is not None:
            self.metrics.compacted_revision.set(target)
        log.info(
            "history compaction: compacted etcd to revision %d; history older than %gs is "
            "gone (labctl history ends there)",
            target,
            self.window.retention,
            extra={"revision": target},
        )
        return target

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.compactions.labels(result).inc()

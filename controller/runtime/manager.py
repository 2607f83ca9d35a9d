"""Manager: the process lifecycle around shared informers and a list of Runnables.

- **One informer per kind**, created on first use by `informer(kind)` and shared by every
  controller that watches that kind: one list/watch loop and one cache per kind, however
  many controllers read it. Likewise one `Repository` per kind (`repository(kind)`), which
  carries the leader's fencing compares and the kind's admission plug-ins.
- **Runnables start in order**: write health and heartbeat, then the informers (every
  replica keeps a warm cache), then — once caches are synced and, under leader election,
  leadership is won — the runnables that need the leader (controllers, singletons). They
  stop in reverse: no new events, in-flight reconciles drain within the grace period, the
  lease is resigned so a standby takes over at once.
- Start-up waits for etcd with backoff (a controller started before etcd must not
  crash-loop). `/healthz` fails when a watch has been dead longer than `watch_dead_after` or
  a reconcile is stuck; `/readyz` fails until caches are synced, while etcd does not answer,
  and (with a `WriteHealth`) while etcd refuses our writes or raises an alarm.
- SIGTERM/SIGINT: stop taking work, let in-flight reconciles finish, exit 0. Every write is
  one etcd transaction, so stopping can never leave half a write.

Knows no kind: kinds arrive as `Kind` descriptions (docs/architecture.md, Runtime).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any, TypeVar

from controller.observability.health import HealthRegistry
from controller.resources import Kind, KindRegistry, Resource
from controller.runtime.builder import Builder
from controller.runtime.controller import NOOP_RECONCILE_METRICS, Controller, ReconcileMetrics
from controller.runtime.fencing import NotOwner, OwnershipGuard
from controller.runtime.informer import NOOP_INFORMER_METRICS, Informer, InformerMetrics
from controller.runtime.leader import LeaderElector
from controller.runtime.record import Record, record_decoder, record_indexers
from controller.runtime.recorder import NOOP_RECORDER, Recorder
from controller.runtime.repository import Repository, RepositorySet
from controller.runtime.runnable import Runnable
from controller.runtime.sharding import CURRENT_SHARD, ShardCoordinator
from controller.runtime.sharding.ownership import ShardedKeys, ShardFilter
from controller.runtime.workqueue import NOOP_WORKQUEUE_METRICS, Priority, WorkqueueMetrics
from controller.runtime.write_health import WriteHealth
from controller.storage import (
    DEFAULT_IDLE_TIMEOUT,
    Compare,
    EtcdClient,
    Heartbeat,
    StorageError,
)

log = logging.getLogger("controller.runtime.manager")

T = TypeVar("T", bound=Resource)


@dataclass(frozen=True)
class ManagerOptions:
    root: str = "/lab-resource-manager"
    """The etcd prefix every kind's segment lives under."""
    shutdown_grace: float = 25.0
    """SIGTERM: how long in-flight reconciles may take to finish."""
    watch_dead_after: float = 60.0
    """A watch without proof of life this long fails liveness."""
    resync_period: float = 600.0
    """Every cached object is handed to its controllers again this often."""
    watch_idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    """A stream without proof of life this long is reopened."""
    controller_workers: int = 8
    """Default worker threads per controller."""
    priority_queue: bool = True
    """Every controller reconciles users' changes before background work (initial list,
    resync, its own status writes); False: one FIFO queue per controller."""
    priority_aging: float = 5.0
    """Background work waiting longer than this is served alternately with users' changes."""
    informer_metrics: InformerMetrics = NOOP_INFORMER_METRICS
    reconcile_metrics: ReconcileMetrics = NOOP_RECONCILE_METRICS
    workqueue_metrics: WorkqueueMetrics = NOOP_WORKQUEUE_METRICS


class Manager:
    def __init__(
        self,
        client: EtcdClient,
        options: ManagerOptions | None = None,
        *,
        health: HealthRegistry | None = None,
        elector: LeaderElector | None = None,
        write_health: WriteHealth | None = None,
        heartbeat: Heartbeat | None = None,
        sharder: ShardCoordinator | None = None,
    ) -> None:
        self.client = client
        self.options = options or ManagerOptions()
        self.heartbeat = heartbeat
        """Rewritten every few seconds so every informer's watch can prove it is alive."""
        self.elector = elector
        self.sharder = sharder
        """Under sharding: this replica's shards (controllers run on every replica, each over
        its shards; runnables marked singleton still need the elector)."""
        self.write_health = write_health
        self.health = health or HealthRegistry()
        self.kinds = KindRegistry()
        self.identity = elector.identity if elector is not None else "controller"
        """This replica's name: in logs, audit lines, event sources."""
        self.recorder: Recorder = NOOP_RECORDER
        """Where reconcilers record Events (the events package installs the real one)."""
        self.runnables: list[Runnable] = []
        self._informers: dict[str, Informer[Record[Any]]] = {}
        fenced = elector is not None or sharder is not None
        self.repositories = RepositorySet(
            client, self.options.root, guards=self.fence if fenced else None
        )
        """One repository per kind, fenced by the owner's token; kinds add admission here."""
        self._exit_code = 0
        if elector is not None:
            elector.on_lost(self._leadership_lost)
        if sharder is not None:
            sharder.on_lost.append(self._leadership_lost)
        self._stop = threading.Event()
        self.started = threading.Event()
        """Set once caches are synced and leader runnables run (tests and the CLI wait on it)."""

    # -- ownership ---------------------------------------------------------------------------

    def fence(self) -> list[Compare]:
        """The compares a controller write carries: inside a sharded reconcile, its shard's
        token; otherwise (singletons, or no sharding) the leader's."""
        if self.sharder is not None:
            shard_fence = self.sharder.fence()
            if shard_fence is not None:
                return shard_fence
        if self.elector is not None:
            return self.elector.fence()
        return [Compare.create_revision(f"{self.options.root}/no-owner", -1)]

    def check(self, action: str) -> None:
        """`OwnershipGuard` with the same choice as `fence`."""
        if self.sharder is not None and CURRENT_SHARD.get() is not None:
            self.sharder.check(action)
        elif self.elector is not None:
            self.elector.check(action)
        else:
            raise NotOwner(f"{action} refused: this replica owns no work")

    @property
    def guard(self) -> OwnershipGuard | None:
        """What side effects must ask first; None when a single unfenced instance runs."""
        return self if self.elector is not None or self.sharder is not None else None

    # -- what kinds register -----------------------------------------------------------------

    def informer(self, kind: Kind[T]) -> Informer[Record[T]]:
        """The one informer of `kind`, created (and its health checks registered) on first use."""
        existing = self._informers.get(kind.kind)
        if existing is not None:
            return existing
        self.kinds.register(kind)
        opts = self.options
        informer: Informer[Record[T]] = Informer(
            self.client,
            kind.prefix(opts.root),
            record_decoder(kind),
            indexers=record_indexers(kind),
            name=kind.plural,
            resync_period=opts.resync_period,
            idle_timeout=opts.watch_idle_timeout,
            heartbeat_key=self.heartbeat.key if self.heartbeat is not None else None,
            metrics=opts.informer_metrics,
        )
        self._informers[kind.kind] = informer
        self._add_informer_checks(kind.singular, informer)
        return informer

    def repository(self, kind: Kind[T]) -> Repository[T]:
        """The one repository of `kind`: controller writes through it are fenced."""
        self.kinds.register(kind)
        return self.repositories.for_kind(kind)

    def controller(self, name: str) -> Builder:
        """controller-runtime's builder: `.for_(kind).owns(kind).watches(kind, fn).complete(fn)`."""
        return Builder(self, name)

    def add(self, runnable: Runnable) -> None:
        self.runnables.append(runnable)
        healthy = getattr(runnable, "healthy", None)
        if callable(healthy):
            self.health.add_liveness(f"{runnable.name}-workers", healthy)

    @property
    def informers(self) -> list[Informer[Record[Any]]]:
        return list(self._informers.values())

    def _add_informer_checks(self, name: str, informer: Informer[Any]) -> None:
        def watch_alive() -> tuple[bool, str]:
            if not informer.synced:
                return True, "starting (initial list not finished)"
            return informer.watch_healthy(self.options.watch_dead_after)

        def synced() -> tuple[bool, str]:
            return (True, "cache synced") if informer.synced else (False, "cache not synced yet")

        def watch_live() -> tuple[bool, str]:
            # Not ready from the moment a stream is found dead (idle timeout without proof):
            # this is what an operator sees first; liveness waits for watch_dead_after.
            if not informer.synced:
                return False, "initial list not finished"
            return informer.watch_live()

        self.health.add_liveness(f"{name}-watch", watch_alive)
        self.health.add_readiness(f"{name}-synced", synced)
        self.health.add_readiness(f"{name}-watch", watch_live)

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def handle(signum: int, _frame: FrameType | None) -> None:
            if self._stop.is_set():
                log.warning("second %s: exiting now", signal.Signals(signum).name)
                raise SystemExit(1)
            log.info(
                "received %s: no new work; finishing in-flight reconciles (up to %.0fs)",
                signal.Signals(signum).name,
                self.options.shutdown_grace,
            )
            self._stop.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def _probe_key(self) -> str:
        """A key our etcd role may read: an RBAC-limited user gets 403 outside its prefix."""
        informers = self.informers
        return informers[0].prefix if informers else "\0"

    def etcd_ready(self) -> tuple[bool, str]:
        try:
            revision = self.client.revision(self._probe_key(), timeout=1.0)
        except StorageError as exc:
            return False, f"etcd unreachable: {exc}"
        return True, f"etcd revision {revision}"

    def run(self) -> int:
        """Block until stopped; returns the process exit code."""
        self.health.add_readiness("etcd", self.etcd_ready)
        if self.write_health is not None:
            self.health.add_readiness("etcd-writes", self.write_health.writes.check)
            self.health.add_readiness("etcd-alarms", self.write_health.alarms.check)
        everywhere = [r for r in self.runnables if not r.needs_leader]
        owner_only = [r for r in self.runnables if r.needs_leader]
        sharder = self.sharder
        # Under sharding, controllers run on every replica over its shards; the rest
        # (singletons) still run on the elected leader only.
        sharded = [r for r in owner_only if sharder is not None and getattr(r, "sharded", False)]
        singletons = [r for r in owner_only if r not in sharded]
        for runnable in everywhere:  # servers first: probes answer while etcd is awaited
            runnable.start()
        if not self._wait_for_etcd():
            return self._shutdown(everywhere)
        if self.write_health is not None:
            self.write_health.start()
        if self.heartbeat is not None:
            self.heartbeat.start()
        if sharder is not None:
            self._wire_shards(sharder, sharded, singletons)
            if not self._join(sharder):
                return self._shutdown(everywhere)
            # Follow the membership from now on: replicas starting together narrow each
            # other's filter while the first listings run, so they list less. Nothing is
            # acquired before the caches have listed (ShardCoordinator.caches_current).
            sharder.start()
        # Standbys sync their caches too: they are ready (serving metrics and health) and
        # take over with a warm cache the moment they are elected.
        for informer in self.informers:
            informer.start()
        for informer in self.informers:
            while not informer.wait_synced(0.5):
                if self._stop.is_set():
                    return self._shutdown(everywhere)
        running = [*everywhere, *sharded]
        if sharder is not None:
            for runnable in sharded:
                runnable.start()
            self.started.set()
            log.info("running sharded: %s", ", ".join(r.name for r in sharded) or "none")
            if self.elector is None:
                singletons = []  # nobody could be sure to run them alone
        if self.elector is not None and (singletons or sharder is None):
            log.info(
                "campaigning for leadership on %s as %s (for %s)",
                self.elector.key,
                self.elector.identity,
                ", ".join(r.name for r in singletons) or "nothing yet",
            )
            if not self.elector.campaign(self._stop):
                return self._shutdown(running)
        for runnable in singletons:
            runnable.start()
        running += singletons
        self.started.set()
        log.info("running: %s", ", ".join(r.name for r in [*sharded, *singletons]) or "none")
        self._stop.wait()
        return self._shutdown(running)

    def _join(self, sharder: ShardCoordinator) -> bool:
        """Join the shard members, retrying while etcd refuses; False if stopped first."""
        delay = 0.5
        while True:
            try:
                sharder.join()
                return True
            except StorageError as exc:
                log.warning("sharding: cannot join (%s); retrying in %.1fs", exc, delay)
                if self._stop.wait(delay):
                    return False
                delay = min(delay * 2, 15.0)

    def _wire_shards(
        self, sharder: ShardCoordinator, sharded: list[Runnable], singletons: list[Runnable]
    ) -> None:
        """Filter the informers of kinds only sharded controllers reconcile; give those
        controllers their claims; enqueue a shard's keys when it is acquired."""
        singleton_kinds = {getattr(r, "kind", None) for r in singletons}
        controllers = [r for r in sharded if isinstance(r, Controller)]
        filtered = {
            c.kind: self._informers[c.kind]
            for c in controllers
            if c.kind in self._informers and c.kind not in singleton_kinds
        }
        shard_filter = ShardFilter(sharder)
        for informer in filtered.values():
            informer.accept = shard_filter
        keys_by_kind: dict[str, ShardedKeys] = {}
        claims: list[tuple[Controller, ShardedKeys]] = []
        for controller in controllers:
            source = self._informers.get(controller.kind)
            if source is None:
                continue
            keys = keys_by_kind.setdefault(controller.kind, ShardedKeys(sharder, source))
            controller.ownership = keys
            claims.append((controller, keys))

        def refilter(narrowed: bool) -> None:
            for informer in filtered.values():
                informer.refilter(narrowed=narrowed)

        def caches_current(generation: int) -> bool:
            return all(i.listed_generation >= generation for i in filtered.values())

        def enqueue_acquired(shards: frozenset[int]) -> None:
            # Objects handed over, not changes: background work, like the initial list, so a
            # user's change still overtakes a start-up or a hand-off (docs/architecture.md,
            # Work queue).
            found = {kind: keys.keys_in(shards) for kind, keys in keys_by_kind.items()}
            for controller, _ in claims:
                for key in found[controller.kind]:
                    controller.enqueue(key, Priority.LOW)

        def count_keys() -> dict[int, int]:
            counts: dict[int, int] = {}
            for keys in keys_by_kind.values():
                for shard, n in keys.count_by_shard().items():
                    counts[shard] = counts.get(shard, 0) + n
            return counts

        sharder.on_cached_shards_changed.append(refilter)
        sharder.caches_current = caches_current
        sharder.on_acquired.append(enqueue_acquired)
        sharder.count_keys = count_keys
        self.health.add_readiness("shards", sharder.ready)

    def _wait_for_etcd(self) -> bool:
        delay = 0.5
        while not self._stop.is_set():
            try:
                revision = self.client.revision(self._probe_key(), timeout=2.0)
            except StorageError as exc:
                log.warning(
                    "etcd not reachable at %s (%s); retrying in %.1fs",
                    ", ".join(self.client.endpoints),
                    exc,
                    delay,
                )
                if self._stop.wait(delay):
                    return False
                delay = min(delay * 2, 15.0)
                continue
            log.info(
                "connected to etcd at %s (revision %d)", self.client.current_endpoint, revision
            )
            return True
        return False

    def _shutdown(self, started: list[Runnable]) -> int:
        began = time.monotonic()
        grace = self.options.shutdown_grace
        if self.write_health is not None:
            self.write_health.stop()
        for informer in self.informers:
            informer.stop()
        clean = True
        for runnable in reversed(started):
            remaining = max(0.0, grace - (time.monotonic() - began))
            clean = runnable.stop(remaining) and clean
        if clean:
            log.info("stopped cleanly in %.1fs", time.monotonic() - began)
        else:
            log.warning(
                "grace period of %.0fs ended with reconciles still running; exiting anyway "
                "(each write is one transaction: nothing is half-written)",
                grace,
            )
        if self.sharder is not None and self._exit_code == 0:
            self.sharder.leave()  # the others take these shards over now, not after a TTL
        if self.elector is not None and self._exit_code == 0:
            self.elector.resign()  # a standby takes over now, not after the lease TTL
        if self.heartbeat is not None:
            self.heartbeat.stop()
        return self._exit_code

    def _leadership_lost(self) -> None:
        """Stop at once; exit non-zero so the orchestrator restarts us as a candidate.

        Writes in flight are already refused by etcd (fencing), so stopping late is safe.
        """
        self._exit_code = 1
        self._stop.set()

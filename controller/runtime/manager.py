"""Manager: the process lifecycle around informers and controllers.

- Start-up waits for etcd with backoff (a controller started before etcd must not crash-loop).
- Then informers list and watch; controllers start their workers once the caches are synced.
- `/healthz` fails when a watch has been dead longer than `watch_dead_after` or a reconcile
  is stuck; `/readyz` fails until caches are synced, while etcd does not answer, and (with
  a `WriteHealth`) while etcd refuses our writes or raises an alarm.
- SIGTERM/SIGINT: stop taking work, let in-flight reconciles finish within the grace period,
  exit 0. Every write is one etcd transaction, so stopping can never leave half a write.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType
from typing import Any

from controller.observability.health import HealthRegistry
from controller.runtime.controller import Controller
from controller.runtime.leader import LeaderElector
from controller.runtime.write_health import WriteHealth
from controller.storage import EtcdClient, Heartbeat, StorageError

log = logging.getLogger("controller.runtime.manager")


class Manager:
    def __init__(
        self,
        client: EtcdClient,
        *,
        health: HealthRegistry | None = None,
        shutdown_grace: float = 25.0,
        watch_dead_after: float = 60.0,
        elector: LeaderElector | None = None,
        write_health: WriteHealth | None = None,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        self.client = client
        self.heartbeat = heartbeat
        """Rewritten every few seconds so every informer's watch can prove it is alive."""
        self.elector = elector
        self.write_health = write_health
        self._exit_code = 0
        if elector is not None:
            elector.on_lost(self._leadership_lost)
        self.health = health or HealthRegistry()
        self.shutdown_grace = shutdown_grace
        self.watch_dead_after = watch_dead_after
        self.controllers: list[Controller[Any]] = []
        self._stop = threading.Event()
        self.started = threading.Event()
        """Set once caches are synced and workers run (tests and the CLI wait on it)."""

    def add(self, controller: Controller[Any]) -> None:
        self.controllers.append(controller)
        informer = controller.informer

        def watch_alive() -> tuple[bool, str]:
            if not informer.synced:
                return True, "starting (initial list not finished)"
            return informer.watch_healthy(self.watch_dead_after)

        def synced() -> tuple[bool, str]:
            return (True, "cache synced") if informer.synced else (False, "cache not synced yet")

        def watch_live() -> tuple[bool, str]:
            # Not ready from the moment a stream is found dead (idle timeout without proof):
            # this is what an operator sees first; liveness waits for watch_dead_after.
            if not informer.synced:
                return False, "initial list not finished"
            return informer.watch_live()

        self.health.add_liveness(f"{controller.name}-watch", watch_alive)
        self.health.add_liveness(f"{controller.name}-workers", controller.healthy)
        self.health.add_readiness(f"{controller.name}-synced", synced)
        self.health.add_readiness(f"{controller.name}-watch", watch_live)

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
                self.shutdown_grace,
            )
            self._stop.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def _probe_key(self) -> str:
        """A key our etcd role may read: an RBAC-limited user gets 403 outside its prefix."""
        return self.controllers[0].informer.prefix if self.controllers else "\0"

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
        if not self._wait_for_etcd():
            return 0
        if self.write_health is not None:
            self.write_health.start()
        if self.heartbeat is not None:
            self.heartbeat.start()
        # Standbys sync their caches too: they are ready (serving metrics and health) and
        # take over with a warm cache the moment they are elected.
        for c in self.controllers:
            c.informer.start()
        for c in self.controllers:
            while not c.informer.wait_synced(0.5):
                if self._stop.is_set():
                    return self._shutdown()
        if self.elector is not None:
            log.info(
                "campaigning for leadership on %s as %s", self.elector.key, self.elector.identity
            )
            if not self.elector.campaign(self._stop):
                return self._shutdown()
        for c in self.controllers:
            c.start()
        self.started.set()
        log.info(
            "controllers running: %s",
            ", ".join(f"{c.name} ({c.options.workers} workers)" for c in self.controllers),
        )
        self._stop.wait()
        return self._shutdown()

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

    def _shutdown(self) -> int:
        started = time.monotonic()
        if self.write_health is not None:
            self.write_health.stop()
        for c in self.controllers:
            c.informer.stop()
        clean = True
        for c in self.controllers:
            remaining = max(0.0, self.shutdown_grace - (time.monotonic() - started))
            clean = c.shutdown(remaining) and clean
        if clean:
            log.info("stopped cleanly in %.1fs", time.monotonic() - started)
        else:
            log.warning(
                "grace period of %.0fs ended with reconciles still running; exiting anyway "
                "(each write is one transaction: nothing is half-written)",
                self.shutdown_grace,
            )
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

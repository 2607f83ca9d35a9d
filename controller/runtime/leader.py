"""Leader election on an etcd lease, with fencing.

Election alone is not enough: a leader that stalls (GC pause, SIGSTOP, a partition) past its
lease keeps believing it leads, and its delayed writes land after a successor has started —
split brain. So leadership here is also a *fencing token*: the create_revision of the
election key. Every write the leader makes carries `Compare(create_revision(key) == token)`
in the same transaction; once the lease has expired (key deleted) or a successor holds the
key (new create_revision), etcd itself refuses the stale leader's writes.

Side effects outside etcd (cloud API calls) cannot carry that compare, so the elector is also
an `OwnershipGuard`: `check()` refuses once the lease may have expired by the lease keeper's
local bound (`LeaseKeeper.remaining()` minus `fence_margin`), see controller.runtime.fencing.

Campaign: grant a lease, create the key if absent (one transaction); otherwise watch the key
and try again when it is deleted. Loss: the lease keeper reports expiry, or the key changes
hands; `on_lost` is called once, and the owner should stop (and exit non-zero so the
orchestrator restarts it as a candidate).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Protocol

from controller.runtime.fencing import NotOwner
from controller.storage import (
    Compare,
    EtcdClient,
    EventType,
    LeaseKeeper,
    Op,
    StorageError,
    WatchEvent,
    WatchHandle,
)

log = logging.getLogger("controller.runtime.leader")


class LeaderMetrics(Protocol):
    """What an elector reports (`leader_election_master_status{name}` in Prometheus)."""

    def leader_status(self, name: str, is_leader: bool) -> None: ...


class NoopLeaderMetrics:
    def leader_status(self, name: str, is_leader: bool) -> None: ...


NOOP_LEADER_METRICS: LeaderMetrics = NoopLeaderMetrics()


def default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class LeaderElector:
    def __init__(
        self,
        client: EtcdClient,
        key: str,
        *,
        identity: str | None = None,
        ttl: int = 15,
        metrics: LeaderMetrics = NOOP_LEADER_METRICS,
    ) -> None:
        self.client = client
        self.key = key
        self.name = key.rstrip("/").rpartition("/")[2]
        """The election's name (the key's last segment), its metrics label."""
        self.identity = identity or default_identity()
        self.ttl = ttl
        self.metrics = metrics
        metrics.leader_status(self.name, False)
        self.fence_margin = max(1.0, ttl * 0.2)
        """Seconds of lease validity kept in reserve before a side effect: covers clock-rate
        drift between us and etcd and the time a call takes to leave this process."""
        self._keeper: LeaseKeeper | None = None
        self._watch: WatchHandle | None = None
        self.token = 0
        """The election key's create_revision while we lead; 0 otherwise."""
        self.lost = threading.Event()
        self._lost_callbacks: list[Callable[[], None]] = []

    @property
    def is_leader(self) -> bool:
        return self.token != 0 and not self.lost.is_set()

    def on_lost(self, callback: Callable[[], None]) -> None:
        self._lost_callbacks.append(callback)

    def fence(self) -> list[Compare]:
        """The guard every leader write must carry (empty when not elected: writes then
        fail on purpose — a non-leader must not write)."""
        return [Compare.create_revision(self.key, self.token or -1)]

    def check(self, action: str) -> None:
        """`OwnershipGuard`: refuse `action` unless our lease is certainly still valid."""
        keeper = self._keeper
        if not self.is_leader or keeper is None:
            raise NotOwner(f"{action} refused: {self.identity} is not the leader")
        remaining = keeper.remaining()
        if remaining < self.fence_margin:
            raise NotOwner(
                f"{action} refused: {self.identity} cannot prove its leadership (lease "
                f"{keeper.id:x} renewed too long ago: {remaining:.1f}s of certain validity "
                f"left, {self.fence_margin:.1f}s required); another replica may lead by now"
            )

    def campaign(self, stop: threading.Event, retry: float = 1.0) -> bool:
        """Block until elected (True) or `stop` is set (False)."""
        while not stop.is_set():
            try:
                if self._try_acquire():
                    return True
                self._wait_for_vacancy(stop)
            except StorageError as exc:
                log.warning(
                    "leader election on %s: %s; retrying in %.0fs",
                    self.key,
                    exc,
                    retry,
                    extra={"event": "leader_election_failed", "error": str(exc), "retry_in": retry},
                )
                stop.wait(retry)
        return False

    def _try_acquire(self) -> bool:
        keeper = LeaseKeeper(
            self.client, self.ttl, on_expired=lambda _id: self._lose("lease expired")
        )
        try:
            result = self.client.txn(
                [Compare.absent(self.key)],
                [Op.put(self.key, self.identity.encode(), keeper.id)],
                [Op.get(self.key)],
            )
        except StorageError:
            # The outcome may be unknown (maybe_applied): had the key been created, it would
            # sit under a lease we keep alive without knowing we lead, and every campaign —
            # ours included — would wait for a vacancy that never comes. Revoking the lease
            # deletes such a key; the next attempt starts clean.
            keeper.revoke()
            raise
        if not result.succeeded:
            keeper.revoke()
            holder = result.responses[0].kvs[0].value.decode() if result.responses[0].kvs else "?"  # type: ignore[union-attr]
            log.info(
                "leader election on %s: %s leads; standing by",
                self.key,
                holder,
                extra={"event": "leader_standby", "holder": holder},
            )
            return False
        self._keeper = keeper
        self.token = result.revision  # the key's create_revision
        self.lost.clear()
        self._watch = self.client.watch(
            self.key,
            self._on_key_events,
            start_revision=self.token + 1,
            name=f"leader watch {self.key}",
        )
        log.info(
            "leader election on %s: %s is the leader (fencing token %d, lease TTL %ds)",
            self.key,
            self.identity,
            self.token,
            self.ttl,
            extra={"event": "leader_elected", "identity": self.identity, "token": self.token},
        )
        self.metrics.leader_status(self.name, True)
        return True

    def _wait_for_vacancy(self, stop: threading.Event) -> None:
        vacant = threading.Event()
        current = self.client.get(self.key)
        if current is None:
            return
        watch = self.client.watch(
            self.key,
            lambda batch: vacant.set() if any(e.type is EventType.DELETE for e in batch) else None,
            start_revision=current.mod_revision + 1,
            name=f"leader standby {self.key}",
        )
        try:
            # Wake up at least once per TTL even if the watch misses the deletion.
            while not stop.is_set() and not vacant.wait(min(self.ttl, 5)):
                if self.client.get(self.key) is None:
                    return
        finally:
            watch.cancel()

    def _on_key_events(self, batch: list[WatchEvent]) -> None:
        for ev in batch:
            if ev.type is EventType.DELETE or ev.kv.create_revision != self.token:
                self._lose("the election key was deleted or taken over")

    def _lose(self, why: str) -> None:
        if self.lost.is_set() or not self.token:
            return
        self.lost.set()
        # Nothing left to guard: no thread (watch, keep-alive) outlives the leadership.
        if self._watch is not None:
            self._watch.cancel()
        if self._keeper is not None and not self._keeper.expired.is_set():
            self._keeper.revoke()
        log.error(
            "leader election on %s: %s lost leadership (%s); its writes are fenced from now on",
            self.key,
            self.identity,
            why,
            extra={"event": "leader_lost", "identity": self.identity, "error": why},
        )
        self.metrics.leader_status(self.name, False)
        for cb in self._lost_callbacks:
            cb()

    def resign(self) -> None:
        """Give leadership up now (on clean shutdown) so a standby takes over at once."""
        if self._watch is not None:
            self._watch.cancel()
        if self._keeper is not None and not self.lost.is_set():
            self._keeper.revoke()  # deletes the key with its lease
            log.info(
                "leader election on %s: %s resigned",
                self.key,
                self.identity,
                extra={"event": "leader_resigned", "identity": self.identity},
            )
        self.token = 0

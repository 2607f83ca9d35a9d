"""A key this process rewrites every few seconds, so its own watches can prove they are alive.

A watch on a quiet prefix carries no bytes for minutes; so does a black-holed connection. To
tell them apart without depending on etcd's `--experimental-watch-progress-notify-interval`
(default 10 minutes), every watch of this process also follows the heartbeat key on the same
stream: when a heartbeat written through the unary path does not come back through the watch
within the watch's idle timeout, that stream is dead and is reopened (`controller.storage.watch`).

The key lives under `<prefix>/heartbeats/<identity>` on a lease, so it disappears when the
process does; it is also a cheap way for an operator to see which replicas are alive
(`etcdctl get --prefix <prefix>/heartbeats/`). Cost: one put per interval plus one lease
keep-alive per TTL/3. See docs/architecture.md, "Watch liveness".
"""

from __future__ import annotations

import logging
import threading
import time

from controller.storage.client import EtcdClient
from controller.storage.errors import PermissionDenied, StorageError

log = logging.getLogger("controller.storage.heartbeat")

DEFAULT_INTERVAL = 2.0


class Heartbeat:
    def __init__(self, client: EtcdClient, key: str, *, interval: float = DEFAULT_INTERVAL) -> None:
        if interval <= 0:
            raise ValueError(f"heartbeat interval must be positive, got {interval}")
        self.client = client
        self.key = key
        self.interval = interval
        self.lease_ttl = max(10, int(interval * 5))
        self.beats = 0
        self.last_success_at: float | None = None
        self.last_error: StorageError | None = None
        self._lease = 0
        self._lease_refreshed_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._run, name=f"heartbeat {self.key}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating and delete the key (with its lease) so no stale heartbeat remains."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self.interval + 1.0)
        if self._lease:
            try:
                self.client.lease_revoke(self._lease)
            except StorageError as exc:
                log.info(
                    "heartbeat %s: lease revoke failed (%s); it expires by itself", self.key, exc
                )

    @property
    def failing(self) -> bool:
        """True when no beat has landed for three intervals (watches then rely on etcd's
        progress notifications and idle reconnects)."""
        last = self.last_success_at
        return last is None or time.monotonic() - last > 3 * self.interval

    def _run(self) -> None:
        reported = False
        while not self._stop.is_set():
            try:
                self._beat()
                if reported:
                    log.info("heartbeat %s: writing again", self.key)
                    reported = False
                wait = self.interval
            except StorageError as exc:
                self.last_error = exc
                self._lease = 0  # maybe expired while etcd was away: take a fresh one
                wait = self.interval
                if isinstance(exc, PermissionDenied):
                    wait = max(self.interval, 30.0)  # a role problem will not fix itself soon
                if not reported:
                    log.warning(
                        "heartbeat %s: write failed (%s); watches fall back to etcd progress "
                        "notifications and idle reconnects; retrying every %.0fs",
                        self.key,
                        exc,
                        wait,
                    )
                    reported = True
            self._stop.wait(wait)

    def _beat(self) -> None:
        now = time.monotonic()
        if not self._lease:
            self._lease = self.client.lease_grant(self.lease_ttl).id
            self._lease_refreshed_at = now
        elif now - self._lease_refreshed_at > self.lease_ttl / 3:
            if self.client.lease_keepalive_once(self._lease, timeout=self.interval) <= 0:
                self._lease = self.client.lease_grant(self.lease_ttl).id
            self._lease_refreshed_at = now
        self.beats += 1
        self.client.put(
            self.key, str(self.beats).encode(), lease=self._lease, timeout=self.interval
        )
        self.last_success_at = time.monotonic()

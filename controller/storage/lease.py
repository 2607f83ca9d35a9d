"""A lease kept alive by a supervised thread, with a local bound on its validity.

etcd3-py's keep-alive thread gives up after three failures and never comes back; this one keeps
trying until the lease's TTL has really run out, then says so (`expired` and the callback), so
the owner — a leader, a TTL'd key — learns it lost the lease instead of assuming it still has it.

`remaining()` is what fenced side effects rely on (docs/architecture.md, "Fencing"): etcd
starts a lease's TTL when it *receives* a grant or keep-alive, which is after we *sent* it, so
the lease cannot expire on the server before `sent + TTL`. Measured on a clock that keeps
running while the process is stopped or the machine suspended (CLOCK_BOOTTIME), a positive
`remaining()` therefore proves the lease — and anything it guards — is still ours.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from controller.storage.client import EtcdClient
from controller.storage.errors import StorageError

log = logging.getLogger("controller.storage.lease")


def lease_clock() -> float:
    """Seconds on a clock that never stops: not while SIGSTOPped, not across a suspend."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class LeaseKeeper:
    def __init__(
        self,
        client: EtcdClient,
        ttl: int,
        *,
        on_expired: Callable[[int], None] | None = None,
        lease_id: int = 0,
    ) -> None:
        if ttl < 2:
            raise ValueError("a kept lease needs a TTL of at least 2 seconds")
        self._client = client
        self.ttl = ttl
        sent = lease_clock()
        granted = client.lease_grant(ttl, lease_id)
        self.id = granted.id
        self._on_expired = on_expired
        self._stop = threading.Event()
        self.expired = threading.Event()
        self._valid_until = sent + (granted.ttl or ttl)
        self._thread = threading.Thread(target=self._run, name=f"lease {self.id:x}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        interval = self.ttl / 3
        while not self._stop.wait(interval):
            sent = lease_clock()
            try:
                ttl = self._client.lease_keepalive_once(self.id, timeout=interval)
            except StorageError as exc:
                if self.remaining() > 0:
                    log.warning("lease %x: keep-alive failed (%s); retrying", self.id, exc)
                    continue
                ttl = 0
            if ttl > 0:
                self._valid_until = sent + ttl
                continue
            log.error("lease %x expired; everything attached to it is gone", self.id)
            self.expired.set()
            if self._on_expired:
                self._on_expired(self.id)
            return

    def remaining(self) -> float:
        """Seconds the lease is certainly still valid on the server (<= 0: maybe expired)."""
        if self.expired.is_set():
            return 0.0
        return self._valid_until - lease_clock()

    def revoke(self) -> None:
        """Stop refreshing and delete the lease (and every key attached to it) now."""
        self._stop.set()
        self._valid_until = 0.0  # from now on nothing may rely on it
        if self._thread is not threading.current_thread():
            self._thread.join(5)
        try:
            self._client.lease_revoke(self.id)
        except StorageError as exc:
            log.warning(
                "lease %x: revoke failed (%s); it expires within %ds", self.id, exc, self.ttl
            )

    def __enter__(self) -> LeaseKeeper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.revoke()

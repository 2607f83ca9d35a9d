"""One etcd lease shared by every Event written within a window (kube-apiserver's lease reuse).

Every Event is written with a lease so etcd deletes it by itself EVENT_TTL seconds after its
last occurrence — no collector to run, nothing left behind by a crashed controller. A lease
per Event would mean a grant round trip per write and millions of leases for etcd to track;
instead one lease serves all writes within `window` seconds. It is granted for
`ttl + window`, so an Event written at the end of the window still lives at least `ttl`.
Like kube-apiserver, a lease carries at most `max_keys` writes, so revoking or expiring one
never deletes an unbounded number of keys in one go.
"""

from __future__ import annotations

import math
import threading

from controller.runtime.clock import SYSTEM_CLOCK, Clock
from controller.storage import EtcdClient, NotFound, StorageError

DEFAULT_LEASE_WINDOW = 60.0
DEFAULT_MAX_KEYS_PER_LEASE = 1000


def lease_gone(exc: StorageError) -> bool:
    """etcd refused a write because its lease no longer exists ("requested lease not found").

    Nothing was written, so the write may be sent again with a new lease. A missing *object*
    is also NotFound, but its message is `<namespace>/<name>: not found` (no spaces in names)."""
    return isinstance(exc, NotFound) and "lease not found" in str(exc)


class LeaseWindow:
    """Hands out the current lease id, granting a new one when the window has passed."""

    def __init__(
        self,
        client: EtcdClient,
        ttl: int,
        *,
        window: float = DEFAULT_LEASE_WINDOW,
        max_keys: int = DEFAULT_MAX_KEYS_PER_LEASE,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if ttl < 1 or window < 0 or max_keys < 1:
            raise ValueError(
                f"event leases need ttl >= 1, window >= 0, max_keys >= 1; got ttl={ttl}, "
                f"window={window}, max_keys={max_keys}"
            )
        self._client = client
        self.ttl = ttl
        self.window = window
        self.max_keys = max_keys
        self.lease_ttl = ttl + math.ceil(window)
        """What a lease is granted for: an Event written late in the window still gets `ttl`."""
        self._clock = clock
        self._lock = threading.Lock()
        self._id = 0
        self._granted_at = 0.0
        self._keys = 0
        self.granted = 0
        """How many leases were granted (tests and debugging)."""

    def current(self) -> int:
        """The lease to write the next Event with. Raises StorageError if a grant fails."""
        with self._lock:
            now = self._clock.now()
            if self._id and now - self._granted_at < self.window and self._keys < self.max_keys:
                self._keys += 1
                return self._id
            # The window starts when the grant is sent: etcd starts the TTL after receiving it.
            lease = self._client.lease_grant(self.lease_ttl)
            self._id, self._granted_at, self._keys = lease.id, now, 1
            self.granted += 1
            return lease.id

    def forget(self, lease_id: int) -> None:
        """`lease_id` is gone (expired while etcd was away): the next write gets a new one."""
        with self._lock:
            if self._id == lease_id:
                self._id = 0

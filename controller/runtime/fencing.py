"""Fencing of side effects: act on the world only while ownership is provable.

etcd writes are fenced by etcd itself (every leader write compares the election key's
create_revision), but a cloud API call cannot carry an etcd compare. So before every
side-effecting call the owner asks its `OwnershipGuard`, which answers from a *local* bound:
the lease behind the ownership was renewed less than TTL ago (measured from when the renewal
was sent, on a clock that runs through SIGSTOP), minus a safety margin for clock-rate drift
and for the time the call takes to leave. A replica that stalled past its lease — a GC pause,
SIGSTOP, a partition — is refused on waking, before it can touch the cloud, even if it has
not yet noticed that it lost. The argument is in docs/architecture.md, "Fencing".
"""

from __future__ import annotations

from typing import Protocol

from controller.runtime.result import ReconcileError


class NotOwner(ReconcileError):
    """This replica cannot prove it still owns the work: the side effect was NOT made.

    Raised before the call, so it is always safe; the key is retried with backoff (by the new
    owner, or by this replica once its ownership is proven again).
    """


class OwnershipGuard(Protocol):
    def check(self, action: str) -> None:
        """Return if `action` may be performed now; raise `NotOwner` (saying why) if not."""
        ...

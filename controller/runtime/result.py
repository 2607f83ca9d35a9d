"""What a reconcile returns, and the errors that steer retries (controller-runtime semantics)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Result:
    """`Result()` means converged; `Result(requeue_after=5)` means "look again in 5 s".

    `requeue=True` asks for a rate-limited retry without it being an error.
    """

    requeue: bool = False
    requeue_after: float = 0.0

    @classmethod
    def done(cls) -> Result:
        return cls()

    @classmethod
    def after(cls, seconds: float) -> Result:
        return cls(requeue_after=max(seconds, 0.0))


class TerminalError(Exception):
    """A failure retrying cannot fix (invalid spec, unrecoverable provider error).

    The manager records it (log, metric) and forgets the key: no retry until the object changes.
    """


class ReconcileError(Exception):
    """A transient failure: the manager retries the key with per-key exponential backoff."""

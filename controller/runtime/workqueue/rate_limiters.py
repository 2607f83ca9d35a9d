"""Rate limiters decide how long a failed item waits before it is retried.

Two concerns are combined by default (like client-go's ``DefaultControllerRateLimiter``):
per-item exponential backoff, so one broken object backs off without slowing the others,
and an overall token bucket, so a mass failure (etcd down, every reconcile failing) cannot
turn into a retry storm.

Delays are deterministic unless jitter is asked for, which keeps tests and reasoning simple.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

from controller.runtime.clock import SYSTEM_CLOCK, Clock

T = TypeVar("T", bound=Hashable)
T_contra = TypeVar("T_contra", bound=Hashable, contravariant=True)


class RateLimiter(Protocol[T_contra]):
    def when(self, item: T_contra, /) -> float:
        """Seconds to wait before retrying ``item``; records one more failure for it."""
        ...

    def forget(self, item: T_contra, /) -> None:
        """Clear ``item``'s failure history (call after it is processed successfully)."""
        ...

    def num_requeues(self, item: T_contra, /) -> int:
        """How many failures are recorded for ``item``."""
        ...


class ItemExponentialFailureRateLimiter(Generic[T]):
    """Per item: ``base_delay * 2**failures``, capped at ``max_delay``.

    ``jitter`` (0..1) optionally shortens each delay by up to that fraction, chosen at
    random. It only ever shortens, so ``max_delay`` remains a true upper bound while items
    stuck at the cap still spread out instead of retrying in lockstep.
    """

    def __init__(
        self,
        base_delay: float = 0.1,
        max_delay: float = 300.0,
        *,
        jitter: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        if base_delay < 0 or max_delay < base_delay:
            raise ValueError(
                f"need 0 <= base_delay <= max_delay; got base_delay={base_delay}, "
                f"max_delay={max_delay}"
            )
        if not 0.0 <= jitter <= 1.0:
            raise ValueError(f"jitter is a fraction between 0 and 1; got {jitter}")
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._jitter = jitter
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()
        self._failures: dict[T, int] = {}

    def when(self, item: T, /) -> float:
        with self._lock:
            exponent = self._failures.get(item, 0)
            self._failures[item] = exponent + 1
            jitter_fraction = self._jitter * self._rng.random() if self._jitter else 0.0
        try:
            delay = min(math.ldexp(self._base_delay, exponent), self._max_delay)
        except OverflowError:  # after ~1000 failures 2**n no longer fits a float
            delay = self._max_delay
        return delay * (1.0 - jitter_fraction)

    def forget(self, item: T, /) -> None:
        with self._lock:
            self._failures.pop(item, None)

    def num_requeues(self, item: T, /) -> int:
        with self._lock:
            return self._failures.get(item, 0)


class BucketRateLimiter:
    """An overall token bucket: ``burst`` retries at once, then one every ``1/qps`` seconds.

    ``when`` reserves a token (possibly one that only becomes available in the future) and
    returns how long until it is available, so concurrent callers are spaced out instead of
    all waiting for the same token. It ignores the item, so it fits any queue.
    """

    def __init__(self, qps: float = 10.0, burst: int = 100, *, clock: Clock | None = None) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError(f"need qps > 0 and burst >= 1; got qps={qps}, burst={burst}")
        self._qps = qps
        self._burst = burst
        self._clock = clock if clock is not None else SYSTEM_CLOCK
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._last = self._clock.now()

    def when(self, item: object, /) -> float:
        with self._lock:
            now = self._clock.now()
            elapsed = max(0.0, now - self._last)
            self._last = now
            self._tokens = min(float(self._burst), self._tokens + elapsed * self._qps)
            self._tokens -= 1.0
            if self._tokens >= 0:
                return 0.0
            return -self._tokens / self._qps

    def forget(self, item: object, /) -> None:
        """Nothing to forget: the bucket is shared by all items."""

    def num_requeues(self, item: object, /) -> int:
        return 0


class MaxOfRateLimiter(Generic[T]):
    """Waits as long as the most restrictive limiter demands; every limiter sees every call."""

    def __init__(self, *limiters: RateLimiter[T]) -> None:
        if not limiters:
            raise ValueError("MaxOfRateLimiter needs at least one limiter")
        self._limiters = limiters

    def when(self, item: T, /) -> float:
        return max(limiter.when(item) for limiter in self._limiters)

    def forget(self, item: T, /) -> None:
        for limiter in self._limiters:
            limiter.forget(item)

    def num_requeues(self, item: T, /) -> int:
        return max(limiter.num_requeues(item) for limiter in self._limiters)


def default_controller_rate_limiter(
    base_delay: float = 0.1,
    max_delay: float = 300.0,
    qps: float = 10.0,
    burst: int = 100,
    *,
    clock: Clock | None = None,
) -> MaxOfRateLimiter[T]:
    """Per-item exponential backoff, bounded overall by a token bucket."""
    return MaxOfRateLimiter(
        ItemExponentialFailureRateLimiter(base_delay, max_delay),
        BucketRateLimiter(qps, burst, clock=clock),
    )

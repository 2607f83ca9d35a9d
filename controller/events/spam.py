"""The spam filter: at most a burst of events per object, then one per refill interval.

client-go's EventSourceObjectSpamFilter, same numbers: a token bucket per (source, involved
object) holding 25 tokens, refilled one per 5 minutes. A reconcile stuck in a hot loop would
otherwise write an Event update per iteration — load on etcd that says nothing new. It runs
in the caller's thread before anything is queued, so a spammer cannot crowd other objects'
events out of the queue. Time comes from a `Clock`, so tests move it instead of sleeping.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from dataclasses import dataclass

from controller.events.lru import DEFAULT_LRU_SIZE, Lru
from controller.runtime.clock import SYSTEM_CLOCK, Clock

DEFAULT_BURST = 25
DEFAULT_REFILL_SECONDS = 300.0


@dataclass
class TokenBucket:
    """`burst` tokens at most; one more every `refill_seconds`; each event takes one."""

    burst: int
    refill_seconds: float
    tokens: float
    updated: float

    def take(self, now: float) -> bool:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(float(self.burst), self.tokens + elapsed / self.refill_seconds)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    first_refusal: bool = False
    """The first refusal since this object's last allowed event: worth one log line."""


@dataclass
class _Entry:
    bucket: TokenBucket
    limited: bool = False


class SpamFilter:
    """Thread-safe; buckets live in a bounded LRU (a forgotten object starts full again)."""

    def __init__(
        self,
        *,
        burst: int = DEFAULT_BURST,
        refill_seconds: float = DEFAULT_REFILL_SECONDS,
        clock: Clock = SYSTEM_CLOCK,
        max_entries: int = DEFAULT_LRU_SIZE,
    ) -> None:
        if burst < 1 or refill_seconds <= 0:
            raise ValueError(
                f"a spam filter needs burst >= 1 and refill_seconds > 0; got burst={burst}, "
                f"refill_seconds={refill_seconds}"
            )
        self.burst = burst
        self.refill_seconds = refill_seconds
        self._clock = clock
        self._entries: Lru[Hashable, _Entry] = Lru(max_entries)
        self._lock = threading.Lock()

    def allow(self, key: Hashable) -> Decision:
        """Take a token from `key`'s bucket (created full on first sight)."""
        with self._lock:
            now = self._clock.now()
            entry = self._entries.get(key)
            if entry is None:
                entry = _Entry(TokenBucket(self.burst, self.refill_seconds, float(self.burst), now))
                self._entries.put(key, entry)
            if entry.bucket.take(now):
                entry.limited = False
                return Decision(True)
            first = not entry.limited
            entry.limited = True
            return Decision(False, first_refusal=first)

    def __len__(self) -> int:
        return len(self._entries)

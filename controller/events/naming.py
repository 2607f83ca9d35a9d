"""Event names, as Kubernetes makes them: `<involvedObject.name>.<nanoseconds in hex>`.

The name says whose event it is (`kubectl get ev` lists them next to each other) and is
unique without a read: a timestamp in nanoseconds, sixteen hex digits so names sort in time
order. A long object name is cut so the whole stays a valid DNS-1123 subdomain.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from controller.resources.names import DNS1123_SUBDOMAIN_MAX_LENGTH

_SUFFIX_LENGTH = 1 + 16  # ".%016x"


def event_name(involved_name: str, nanoseconds: int) -> str:
    """`<involved_name>.<nanoseconds as 16 hex digits>`, at most 253 characters.

    A cut object name may end in '-' or '.', which a DNS-1123 subdomain may not: those are
    stripped, so the result is valid whenever `involved_name` is."""
    prefix = involved_name[: DNS1123_SUBDOMAIN_MAX_LENGTH - _SUFFIX_LENGTH].rstrip("-.")
    return f"{prefix}.{nanoseconds & 0xFFFF_FFFF_FFFF_FFFF:016x}"


class UniqueNanos:
    """Wall-clock nanoseconds that never repeat within this process.

    Two events for one object in the same nanosecond (a coarse clock, a burst) would collide
    on their name; each call returns at least one more than the previous one instead."""

    def __init__(self, now_ns: Callable[[], int] = time.time_ns) -> None:
        self._now_ns = now_ns
        self._last = 0
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            self._last = max(self._now_ns(), self._last + 1)
            return self._last

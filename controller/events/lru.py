"""A bounded least-recently-used map: the recorder's memory of recent Events and spammers.

A controller watching 100k objects must not keep one entry per object forever; like
client-go's event correlator (4096 entries), the oldest-used entry goes first. Forgetting is
harmless: a forgotten repeat becomes a new Event, a forgotten spammer a fresh token bucket.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

DEFAULT_LRU_SIZE = 4096


class Lru(Generic[K, V]):
    """Thread-safe. `get` and `put` make an entry the most recently used."""

    def __init__(self, max_entries: int = DEFAULT_LRU_SIZE) -> None:
        if max_entries < 1:
            raise ValueError(f"an LRU needs room for at least one entry; got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def pop(self, key: K) -> V | None:
        with self._lock:
            return self._entries.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

"""A thread-safe, indexed in-memory store of objects keyed by string (client-go's Indexer).

The informer writes into it; workers and the CLI read from it, so reads must never see an
index that disagrees with the contents. One lock guards both.

Memory is the main constraint (100k objects): each object is stored once, by reference, and
an index entry is a set of keys. An object's old index values are recomputed from the old
object on update instead of being stored per key, which means **stored objects must not be
mutated in place** — replace them with ``update`` (the same rule as client-go's cache).
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")

IndexFunc = Callable[[T], Iterable[str]]
"""Maps an object to its values in one index, e.g. ``["tier=gold", "zone=a"]`` for labels."""

_Index = dict[str, set[str]]  # index value -> keys of the objects having it


class Indexer(Generic[T]):
    """Objects by key, plus named secondary indexes fixed at construction.

    Index functions run under the cache lock: they must be pure and cheap (read fields,
    build strings), and must not call back into the cache.
    """

    def __init__(self, indexers: Mapping[str, IndexFunc[T]] | None = None) -> None:
        self._index_funcs: dict[str, IndexFunc[T]] = dict(indexers or {})
        self._lock = threading.Lock()
        self._items: dict[str, T] = {}
        self._indices: dict[str, _Index] = {name: {} for name in self._index_funcs}

    def add(self, key: str, obj: T) -> None:
        """Insert or replace the object at ``key`` (same as :meth:`update`)."""
        self.update(key, obj)

    def update(self, key: str, obj: T) -> None:
        """Insert or replace; index entries of the previous object are moved, not rebuilt."""
        new_values = self._index_values(obj)  # may raise: nothing has changed yet
        with self._lock:
            old = self._items.get(key)
            self._items[key] = obj
            if old is not None:
                self._unindex(key, self._index_values(old))
            self._index(key, new_values)

    def delete(self, key: str) -> T | None:
        """Remove ``key``; returns the last stored object (e.g. for a delete event), if any."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._unindex(key, self._index_values(old))
            return old

    def get(self, key: str) -> T | None:
        with self._lock:
            return self._items.get(key)

    # Annotations from here on say ``builtins.list``: inside the class body, ``list`` is this method.
    def list(self) -> builtins.list[T]:
        with self._lock:
            return list(self._items.values())

    def keys(self) -> builtins.list[str]:
        with self._lock:
            return list(self._items)

    def replace(self, items: Mapping[str, T]) -> dict[str, T]:
        """Swap in a complete new set of objects atomically (after a relist).

        Returns the objects whose keys vanished, keyed by key, so the caller can synthesize
        delete events carrying the last known state. The new indexes are built before the
        lock is taken, so readers are not blocked while a large relist is indexed.
        """
        new_items = dict(items)
        new_indices: dict[str, _Index] = {name: {} for name in self._index_funcs}
        for key, obj in new_items.items():
            for name, values in self._index_values(obj).items():
                index = new_indices[name]
                for value in values:
                    index.setdefault(value, set()).add(key)
        with self._lock:
            vanished = {key: obj for key, obj in self._items.items() if key not in new_items}
            self._items = new_items
            self._indices = new_indices
        return vanished

    def by_index(self, index_name: str, value: str) -> builtins.list[T]:
        """Objects whose ``index_name`` values include ``value`` (unordered)."""
        with self._lock:
            keys = self._index_named(index_name).get(value, ())
            return [self._items[key] for key in keys]

    def index_keys(self, index_name: str, value: str) -> builtins.list[str]:
        """Keys of the objects whose ``index_name`` values include ``value`` (unordered)."""
        with self._lock:
            return list(self._index_named(index_name).get(value, ()))

    def index_values(self, index_name: str) -> builtins.list[str]:
        """Every value that currently has at least one object in ``index_name``."""
        with self._lock:
            return list(self._index_named(index_name))

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    def _index_named(self, index_name: str) -> _Index:
        try:
            return self._indices[index_name]
        except KeyError:
            raise KeyError(
                f"cache has no index named {index_name!r}; "
                f"indexes registered at construction: {sorted(self._indices)}"
            ) from None

    def _index_values(self, obj: T) -> dict[str, set[str]]:
        return {name: set(func(obj)) for name, func in self._index_funcs.items()}

    def _index(self, key: str, values_by_index: dict[str, set[str]]) -> None:
        for name, values in values_by_index.items():
            index = self._indices[name]
            for value in values:
                index.setdefault(value, set()).add(key)

    def _unindex(self, key: str, values_by_index: dict[str, set[str]]) -> None:
        for name, values in values_by_index.items():
            index = self._indices[name]
            for value in values:
                keys = index.get(value)
                if keys is None:
                    continue
                keys.discard(key)
                if not keys:  # drop empty entries so churning label values don't leak
                    del index[value]

"""The two places a sharded replica applies its shards: what its informers cache, and which
queued keys its controllers reconcile (docs/architecture.md, "Sharding")."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

from controller.resources import ObjectKey
from controller.runtime.informer import Informer
from controller.runtime.record import Record
from controller.runtime.sharding.coordinator import ShardCoordinator
from controller.runtime.sharding.keyspace import shard_of, shard_of_stored
from controller.storage import KeyValue


class ShardFilter:
    """An informer's `KeyFilter`: keep the objects of the shards this replica holds or is
    about to hold; decided from the key (and, only for owned objects, a JSON peek at the
    controller owner) before the value is validated."""

    def __init__(self, coordinator: ShardCoordinator) -> None:
        self._coordinator = coordinator

    @property
    def generation(self) -> int:
        return self._coordinator.generation

    def __call__(self, key: str, kv: KeyValue) -> bool:
        return self._coordinator.caches(shard_of_stored(key, kv.value, self._coordinator.count))

    def keeps(self, key: str, obj: Any) -> bool:
        """For a cached `Record`: the same shard `__call__` found when it was stored."""
        record = obj if isinstance(obj, Record) else None
        shard = shard_of_cached(ObjectKey.parse(key), record, self._coordinator.count)
        return self._coordinator.caches(shard)


def shard_of_cached(key: ObjectKey, record: Record[Any] | None, count: int) -> int:
    """The shard of a key as its cached record says (its controller owner's, else its own)."""
    owner = record.controller if record is not None else None
    return shard_of(key.namespace, owner.name if owner is not None else key.name, count)


class ShardedKeys:
    """A controller's `KeyOwnership`: reconcile a key only inside a claim on its shard."""

    def __init__(self, coordinator: ShardCoordinator, informer: Informer[Record[Any]]) -> None:
        self._coordinator = coordinator
        self._informer = informer

    def shard(self, key: ObjectKey) -> int:
        return shard_of_cached(key, self._informer.get(str(key)), self._coordinator.count)

    @contextlib.contextmanager
    def claim(self, key: ObjectKey) -> Iterator[bool]:
        with self._coordinator.reconciling(self.shard(key)) as mine:
            yield mine

    def keys_in(self, shards: frozenset[int]) -> list[ObjectKey]:
        """Cached keys of `shards` (one pass over the cache: at most once per poll)."""
        found = []
        for cache_key in self._informer.cache.keys():  # noqa: SIM118 - an Indexer
            key = ObjectKey.parse(cache_key)
            if self.shard(key) in shards:
                found.append(key)
        return found

    def count_by_shard(self) -> Counter[int]:
        return Counter(
            self.shard(ObjectKey.parse(k))
            for k in self._informer.cache.keys()  # noqa: SIM118 - an Indexer
        )

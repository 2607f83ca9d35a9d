"""The key space cut into virtual shards, and which live replica owns each shard.

- **A shard is a stable hash**, never Python's `hash()` (salted per process): every replica,
  every version, every restart computes the same shard for the same key.
- **An object lives in its controller owner's shard.** A pool and the workers it controls
  hash by the pool's name, so the one replica that reconciles the pool also caches and
  reconciles its workers, and the pool's count of its workers is never partial. An object
  without a controller owner hashes by its own namespace/name.
- **Rendezvous (highest-random-weight) hashing** assigns shards to members: each shard goes to
  the member with the highest `weight(member, shard)`. Every replica computes the same answer
  from the same member list without talking to the others, and a join or leave moves only the
  shards that must move (about 1/N of them), never reshuffles the rest.

docs/architecture.md, "Sharding".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def shard_of(namespace: str, name: str, count: int) -> int:
    """The shard of the object `namespace/name` (or of the objects it controls)."""
    return _hash64(f"{namespace}/{name}") % count


def shard_of_stored(key: str, value: bytes, count: int) -> int:
    """The shard of a stored object given its cache key (`ns/name`) and raw JSON value.

    Cheap on purpose (it runs for every watch event, before the value is validated): most
    values have no ownerReferences and are not parsed at all. A value that is not valid JSON
    hashes by its own key; the decoder reports it as invalid anyway.
    """
    namespace, _, name = key.partition("/")
    if b'"ownerReferences"' in value:
        owner = _controller_owner_name(value)
        if owner is not None:
            name = owner
    return shard_of(namespace, name, count)


def _controller_owner_name(value: bytes) -> str | None:
    try:
        doc = json.loads(value)
        refs = doc["metadata"]["ownerReferences"] or ()
        for ref in refs:
            if ref.get("controller") is True and isinstance(ref.get("name"), str):
                return str(ref["name"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return None


def rendezvous_owner(shard: int, members: Iterable[str]) -> str | None:
    """The member that owns `shard` (None without members). Ties cannot happen in practice
    (64-bit weights); they break by member name so the answer is still deterministic."""
    best: tuple[int, str] | None = None
    for member in members:
        candidate = (_hash64(f"{member}\0{shard}"), member)
        if best is None or candidate > best:
            best = candidate
    return best[1] if best is not None else None


def assignment(count: int, members: Iterable[str], member: str) -> frozenset[int]:
    """The shards `member` should own when `members` are alive."""
    live = sorted(set(members))
    return frozenset(s for s in range(count) if rendezvous_owner(s, live) == member)

"""ShardCoordinator: this replica's membership, the shards it holds, and their fencing.

Layout under the root prefix (docs/architecture.md, "Sharding"):

    <root>/shards/members/<identity>   this replica is alive      (on its lease)
    <root>/shards/owners/<NNN>         shard NNN is held by <identity> (on the same lease)

One lease carries the membership key and every shard key, so a replica that dies, stalls or
is partitioned loses all of them together, one TTL after its last keep-alive, and the
survivors take its shards over at once.

**Holding a shard is a fencing token**, exactly like leadership (controller.runtime.leader):
the token is the create_revision of the shard's key. Every write made while reconciling a
key of shard S carries `Compare(create_revision(owners/S) == token)`, so etcd itself refuses
the write of a replica that lost S (lease expired: key deleted; successor: new
create_revision). Side effects outside etcd are refused before they leave by `check()`,
from the lease keeper's local bound (controller.runtime.fencing).

**Hand-off is safe in both directions.** Each replica computes, from the live member list,
the shards it should hold (rendezvous hashing, keyspace.py):

- a shard it holds but should not: it stops taking keys of that shard (new reconciles are
  refused at dequeue), waits until its in-flight reconciles of that shard have finished,
  then deletes the shard key — compared on its own token, so a late retry never deletes a
  successor's key;
- a shard it should hold: its caches first relist with the new filter (so they hold the
  shard's objects), then it creates the shard key only if absent, and only then enqueues the
  shard's keys. Until the old owner releases, the key exists and creation fails: the two
  never reconcile one key at the same time.

Membership and ownership are read by polling two small prefixes (a few hundred keys) every
`poll_interval`: simpler and more robust than two more watches, and cheap next to the
informers' traffic. A dead replica's shards move within its lease TTL plus one poll.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

from controller.runtime.fencing import NotOwner
from controller.runtime.sharding.keyspace import assignment
from controller.storage import Compare, EtcdClient, KeyValue, LeaseKeeper, Op, StorageError

log = logging.getLogger("controller.runtime.sharding")

CURRENT_SHARD: ContextVar[int | None] = ContextVar("labctl_current_shard", default=None)
"""The shard of the key the current thread is reconciling (set by `reconciling`)."""


class ShardingMetrics(Protocol):
    """What a coordinator reports. `ControllerMetrics` (observability) implements it."""

    def shards_owned(self, n: int) -> None: ...
    def shard_handoff(self, direction: str) -> None:
        """`acquired` or `released` (a lease lost counts as `lost`)."""

    def shard_keys(self, counts: dict[int, int]) -> None:
        """Cached keys per held shard (shards absent from `counts` are no longer held)."""


class NoopShardingMetrics:
    def shards_owned(self, n: int) -> None: ...
    def shard_handoff(self, direction: str) -> None: ...
    def shard_keys(self, counts: dict[int, int]) -> None: ...


NOOP_SHARDING_METRICS: ShardingMetrics = NoopShardingMetrics()


@dataclass
class HeldShard:
    token: int
    """create_revision of the shard key: the fencing token."""
    draining_since: float | None = None
    """Set once the shard must move: no new reconciles of its keys start."""
    in_flight: int = 0


class ShardCoordinator:
    def __init__(
        self,
        client: EtcdClient,
        root: str,
        identity: str,
        *,
        count: int = 256,
        ttl: int = 15,
        drain_timeout: float = 25.0,
        poll_interval: float = 0.5,
        metrics: ShardingMetrics = NOOP_SHARDING_METRICS,
    ) -> None:
        self.client = client
        self.identity = identity
        self.count = count
        self.ttl = ttl
        self.drain_timeout = drain_timeout
        self.poll_interval = poll_interval
        self.metrics = metrics
        base = f"{root.rstrip('/')}/shards"
        self.members_prefix = f"{base}/members/"
        self.owners_prefix = f"{base}/owners/"
        self.fence_margin = max(1.0, ttl * 0.2)
        """Seconds of lease validity kept in reserve before a side effect (see leader.py)."""
        self.lost = threading.Event()
        self.generation = 0
        """Bumped whenever the set of cached shards changes; informers relist to follow."""
        self.on_cached_shards_changed: list[Callable[[bool], None]] = []
        """Called (coordinator thread) when informers must follow the new filter: with True
        when it only narrowed (they may prune in place), else they relist."""
        self.caches_current: Callable[[int], bool] = lambda generation: True
        """True once every filtered cache has listed at `generation` (the manager sets it)."""
        self.on_acquired: list[Callable[[frozenset[int]], None]] = []
        """Called with newly acquired shards: enqueue their cached keys."""
        self.on_lost: list[Callable[[], None]] = []
        self.count_keys: Callable[[], dict[int, int]] | None = None
        """Cached keys per shard, for the metric (the manager sets it)."""
        self._cond = threading.Condition()
        self._held: dict[int, HeldShard] = {}
        self._desired: frozenset[int] = frozenset()
        self._cached: frozenset[int] = frozenset()
        self._keeper: LeaseKeeper | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_keys_report = 0.0

    # -- keys ----------------------------------------------------------------------------------

    def member_key(self, identity: str | None = None) -> str:
        return self.members_prefix + (identity or self.identity)

    def owner_key(self, shard: int) -> str:
        return f"{self.owners_prefix}{shard:04d}"

    # -- what other parts ask -------------------------------------------------------------------

    def caches(self, shard: int) -> bool:
        """Whether informers keep objects of `shard` (held, or about to be)."""
        return shard in self._cached

    @property
    def held(self) -> frozenset[int]:
        with self._cond:
            return frozenset(self._held)

    @property
    def desired(self) -> frozenset[int]:
        return self._desired

    @contextlib.contextmanager
    def reconciling(self, shard: int) -> Iterator[bool]:
        """Claim a reconcile of a key in `shard`: yields False (do not reconcile) unless the
        shard is held and not draining; while it runs, the shard counts as in flight (its
        hand-off waits) and is the context the fence and `check()` use."""
        with self._cond:
            held = self._held.get(shard)
            if held is None or held.draining_since is not None or self.lost.is_set():
                claimed = None
            else:
                held.in_flight += 1
                claimed = held
        if claimed is None:
            yield False
            return
        token = CURRENT_SHARD.set(shard)
        try:
            yield True
        finally:
            CURRENT_SHARD.reset(token)
            with self._cond:
                claimed.in_flight -= 1
                if claimed.in_flight == 0 and claimed.draining_since is not None:
                    self._cond.notify_all()

    def fence(self) -> list[Compare] | None:
        """The compares a write made in the current reconcile must carry; None outside a
        sharded reconcile (the caller then uses the leader's fence)."""
        shard = CURRENT_SHARD.get()
        if shard is None:
            return None
        with self._cond:
            held = self._held.get(shard)
        # Not held (anymore): a compare that cannot hold, so the write fails on purpose.
        return [Compare.create_revision(self.owner_key(shard), held.token if held else -1)]

    def check(self, action: str) -> None:
        """`OwnershipGuard` for the current reconcile's shard (see controller.runtime.fencing)."""
        shard = CURRENT_SHARD.get()
        if shard is None:
            raise NotOwner(f"{action} refused: not inside a reconcile of a shard")
        with self._cond:
            held = self._held.get(shard)
        keeper = self._keeper
        if held is None or keeper is None or self.lost.is_set():
            raise NotOwner(f"{action} refused: {self.identity} does not hold shard {shard}")
        remaining = keeper.remaining()
        if remaining < self.fence_margin:
            raise NotOwner(
                f"{action} refused: {self.identity} cannot prove it still holds shard {shard} "
                f"(lease {keeper.id:x} renewed too long ago: {remaining:.1f}s of certain "
                f"validity left, {self.fence_margin:.1f}s required); another replica may "
                "hold it by now"
            )

    def ready(self) -> tuple[bool, str]:
        """`/readyz`: ready once every shard this replica should hold is held (and cached)."""
        if self.lost.is_set():
            return False, "shard lease lost"
        if self._keeper is None:
            return False, "not a member yet"
        with self._cond:
            missing = self._desired - set(self._held)
            held = len(self._held)
        if missing:
            return False, (
                f"waiting for {len(missing)} of {len(self._desired)} shards (held {held}; "
                "their previous owners are draining, or caches are relisting)"
            )
        return True, f"holding {held} of {self.count} shards"

    # -- lifecycle -----------------------------------------------------------------------------

    def join(self) -> None:
        """Grant the lease, register as a member, and learn which shards to cache (before the
        informers list, so the first list is already filtered). Raises StorageError."""
        keeper = LeaseKeeper(self.client, self.ttl, on_expired=lambda _id: self._lose("expired"))
        try:
            self.client.put(self.member_key(), self.identity.encode(), lease=keeper.id)
        except StorageError:
            keeper.revoke()  # the member key, if it was written, goes with the lease
            raise
        self._keeper = keeper
        members = self._read_members()
        with self._cond:
            self._desired = assignment(self.count, members, self.identity)
            self._cached = self._desired
            self.generation += 1
        log.info(
            "sharding: %s joined as one of %d members; it should hold %d of %d shards "
            "(lease %x, TTL %ds)",
            self.identity,
            len(members),
            len(self._desired),
            self.count,
            keeper.id,
            self.ttl,
        )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shard coordinator", daemon=True)
        self._thread.start()

    def leave(self, timeout: float = 5.0) -> None:
        """Stop and give every shard up at once (revoking the lease deletes the member key and
        every shard key together), so the survivors take over without waiting for a TTL.
        Call after the controllers have drained."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        keeper = self._keeper
        if keeper is not None and not self.lost.is_set():
            with self._cond:
                released = len(self._held)
                self._held.clear()
            keeper.revoke()
            log.info("sharding: %s left, releasing %d shards", self.identity, released)

    # -- the loop --------------------------------------------------------------------------------

    def _run(self) -> None:
        failing_since: float | None = None
        while not self._stop.is_set() and not self.lost.is_set():
            try:
                self._tick()
                if failing_since is not None:
                    log.info("sharding: etcd answers again; hand-offs resume")
                failing_since = None
            except StorageError as exc:
                if failing_since is None:
                    failing_since = time.monotonic()
                    log.warning(
                        "sharding: cannot read members/owners (%s); keeping the shards held "
                        "(fenced by their lease) and retrying",
                        exc,
                    )
            with self._cond:
                self._cond.wait(self.poll_interval)

    def _read_members(self) -> list[str]:
        kvs, _ = self.client.list_prefix(self.members_prefix)
        return [kv.key[len(self.members_prefix) :] for kv in kvs]

    def _tick(self) -> None:
        keeper = self._keeper
        if keeper is None:
            return
        members = self._read_members()
        if self.identity not in members:
            # Only the lease removes it; if it is gone the lease is gone too (the keeper
            # reports it); re-registering here would hide a lost lease.
            log.warning("sharding: this replica's member key is missing; waiting for the lease")
        owners_kvs, _ = self.client.list_prefix(self.owners_prefix)
        owners: dict[int, KeyValue] = {}
        for kv in owners_kvs:
            try:
                shard = int(kv.key[len(self.owners_prefix) :])
            except ValueError:
                continue
            owners[shard] = kv
        desired = assignment(self.count, members, self.identity)
        self._follow_desired(desired)
        self._check_held(owners)
        self._release_moved()
        if self.caches_current(self.generation):
            acquired = self._acquire_free(desired, owners, keeper)
            if acquired:
                for hook in self.on_acquired:
                    hook(acquired)
        self._report_metrics()

    def _follow_desired(self, desired: frozenset[int]) -> None:
        with self._cond:
            if desired == self._desired:
                return
            gained, lost = desired - self._desired, self._desired - desired
            self._desired = desired
            self._recompute_cached()
        log.info(
            "sharding: membership changed; %s should now hold %d shards (+%d, -%d)",
            self.identity,
            len(desired),
            len(gained),
            len(lost),
        )

    def _recompute_cached(self) -> None:
        """(lock held) Cached = should hold ∪ holds; on change, informers relist (or only
        prune, when no shard was added)."""
        cached = self._desired | frozenset(self._held)
        if cached != self._cached:
            narrowed = cached < self._cached
            self._cached = cached
            self.generation += 1
            for hook in self.on_cached_shards_changed:
                hook(narrowed)

    def _check_held(self, owners: dict[int, KeyValue]) -> None:
        """A held shard whose key vanished or changed hands was lost (someone deleted it by
        hand, or the lease lapsed and the keeper has not noticed yet): stop everything."""
        with self._cond:
            held = dict(self._held)
        for shard, state in held.items():
            kv = owners.get(shard)
            if kv is None or kv.create_revision != state.token:
                self._lose(f"shard {shard} key deleted or taken over")
                return

    def _release_moved(self) -> None:
        now = time.monotonic()
        to_release: list[tuple[int, HeldShard]] = []
        with self._cond:
            for shard, state in self._held.items():
                if shard in self._desired:
                    continue
                if state.draining_since is None:
                    state.draining_since = now
                    log.info(
                        "sharding: shard %d moves to another replica; draining %d in-flight "
                        "reconciles before releasing it",
                        shard,
                        state.in_flight,
                    )
                if state.in_flight == 0:
                    to_release.append((shard, state))
                elif now - state.draining_since > self.drain_timeout:
                    log.warning(
                        "sharding: shard %d still has %d reconciles running after %.0fs; "
                        "releasing it anyway (their writes are fenced from now on)",
                        shard,
                        state.in_flight,
                        self.drain_timeout,
                    )
                    to_release.append((shard, state))
        for shard, state in to_release:
            result = self.client.txn(
                [Compare.create_revision(self.owner_key(shard), state.token)],
                [Op.delete(self.owner_key(shard))],
                [],
            )
            # Not succeeded: the key is already gone (an earlier attempt whose answer was
            # lost did it) or is someone else's: either way it is no longer ours.
            with self._cond:
                self._held.pop(shard, None)
                self._recompute_cached()
            self.metrics.shard_handoff("released")
            log.info(
                "sharding: released shard %d%s",
                shard,
                "" if result.succeeded else " (its key was already gone)",
            )

    def _acquire_free(
        self, desired: frozenset[int], owners: dict[int, KeyValue], keeper: LeaseKeeper
    ) -> frozenset[int]:
        # Held all at once, after the last transaction: a key becomes claimable only when
        # every shard won in this tick is, so a user's change queued meanwhile is not
        # dropped for a shard that is a few transactions away (docs/architecture.md,
        # Sharding).
        won: dict[int, int] = {}
        with self._cond:
            wanted = sorted(desired - set(self._held))
        for shard in wanted:
            kv = owners.get(shard)
            if kv is not None:
                # Ours from an attempt whose answer was lost (same lease): adopt it.
                if kv.lease == keeper.id:
                    token = kv.create_revision
                else:
                    continue  # the previous owner has not released it yet
            else:
                result = self.client.txn(
                    [Compare.absent(self.owner_key(shard))],
                    [Op.put(self.owner_key(shard), self.identity.encode(), keeper.id)],
                    [],
                )
                if not result.succeeded:
                    continue
                token = result.revision
            won[shard] = token
        with self._cond:
            for shard, token in won.items():
                self._held[shard] = HeldShard(token)
        for _ in won:
            self.metrics.shard_handoff("acquired")
        acquired = frozenset(won)
        if acquired:
            log.info(
                "sharding: %s acquired %d shards (now holding %d of %d it should hold)",
                self.identity,
                len(acquired),
                len(self._held),
                len(desired),
            )
        return acquired

    def _report_metrics(self) -> None:
        with self._cond:
            held = frozenset(self._held)
        self.metrics.shards_owned(len(held))
        now = time.monotonic()
        if self.count_keys is not None and now - self._last_keys_report >= 15.0:
            self._last_keys_report = now
            counts = self.count_keys()
            self.metrics.shard_keys({s: counts.get(s, 0) for s in held})

    def _lose(self, why: str) -> None:
        if self.lost.is_set():
            return
        self.lost.set()
        with self._cond:
            n = len(self._held)
            self._held.clear()
            self._cond.notify_all()
        keeper = self._keeper
        if keeper is not None and not keeper.expired.is_set():
            keeper.revoke()  # nothing it guards is ours any more; let the rest go too
        log.error(
            "sharding: %s lost its shards (%s); %d shards are fenced from now on and move to "
            "the other replicas",
            self.identity,
            why,
            n,
        )
        self.metrics.shard_handoff("lost")
        self.metrics.shards_owned(0)
        for hook in self.on_lost:
            hook()

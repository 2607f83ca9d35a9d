"""Informer: a consistent, indexed, always-current local copy of one etcd prefix.

client-go semantics, made robust where its users get hurt:

- **List then watch, no gap.** The prefix is listed page by page at ONE revision R (a
  snapshot), then watched from R + 1. Every change after the snapshot is seen exactly once.
- **Broken streams resume.** The storage layer's supervised watch reconnects from the last
  delivered revision + 1 (etcd restart, failover, half-open TCP noticed by an idle timeout).
- **Compaction relists.** If the resume revision has been compacted away, the informer lists
  again at a new revision and synthesizes DELETE for keys that vanished meanwhile, so a
  handler never keeps acting on an object that no longer exists.
- **Bad values never stop the loop.** A value the decoder rejects is reported (log + hook for
  a metric) and left out of the cache; it is never rewritten or deleted.
- **Resync.** Every `resync_period` every cached key is handed to the handlers again, so a
  missed requeue (a bug, a lost timer) heals by itself.
- **Health you can alert on.** `synced`, `watch_healthy()`, restart and relist counters.

Knows nothing about any resource kind: it stores whatever `decode` returns.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from controller.runtime.cache import Indexer
from controller.storage import (
    DEFAULT_IDLE_TIMEOUT,
    Compacted,
    EtcdClient,
    EventType,
    KeyValue,
    StorageError,
    WatchEvent,
    WatchHandle,
)
from controller.storage.bulk import gc_paused, release_freed_memory

log = logging.getLogger("controller.runtime.informer")

T = TypeVar("T")


class InvalidObjectError(Exception):
    """Raised by a decoder for a value that must be skipped (and reported), not cached."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


class EventKind(StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    RESYNC = "RESYNC"


@dataclass(frozen=True, slots=True)
class InformerEvent(Generic[T]):
    kind: EventKind
    key: str
    obj: T | None
    """The new object (the last known one for DELETED)."""
    revision: int
    """The etcd revision of the change (for tracing: which write triggered the reconcile)."""
    synthetic: bool = False
    """True for DELETEs inferred by a relist and for RESYNCs (no etcd event behind them)."""
    background: bool = False
    """True for the initial list, RESYNCs and a sharded replica's refilter (objects
    entering or leaving its view): objects handed over, not changes, so a controller may
    let them wait behind changes (docs/architecture.md, Work queue). A relist after
    compaction hands over only what changed while the watch was down: not background."""
    previous: T | None = None
    """The cached object this MODIFIED replaced: what changed tells a user's write (spec,
    deletion) from the controller's own (status)."""


Handler = Callable[[InformerEvent[T]], None]
Decoder = Callable[[str, KeyValue], T]


class KeyFilter(Protocol):
    """Which stored values this informer caches at all (a sharded replica caches only its
    shards: docs/architecture.md, "Sharding"). Asked before a value is decoded."""

    @property
    def generation(self) -> int:
        """Bumped whenever the accepted set changes; the informer then relists (or prunes)."""
        ...

    def __call__(self, key: str, kv: KeyValue) -> bool: ...

    def keeps(self, key: str, obj: Any) -> bool:
        """The same decision for an object already cached: used to prune in place when the
        accepted set only shrank."""
        ...


class InformerMetrics(Protocol):
    """What an informer reports, labelled by the resource it caches. Reasons are short
    machine words. `ControllerMetrics` (observability) implements it; the default does
    nothing."""

    def invalid_object(self, resource: str, reason: str) -> None: ...
    def relist(self, resource: str, reason: str) -> None: ...
    def watch_restart(self, resource: str, reason: str) -> None: ...
    def cache_size(self, resource: str, n: int) -> None: ...
    def informer_event(self, resource: str) -> None:
        """The watch proved itself alive (event, heartbeat, progress notification)."""


class NoopInformerMetrics:
    def invalid_object(self, resource: str, reason: str) -> None: ...
    def relist(self, resource: str, reason: str) -> None: ...
    def watch_restart(self, resource: str, reason: str) -> None: ...
    def cache_size(self, resource: str, n: int) -> None: ...
    def informer_event(self, resource: str) -> None: ...


NOOP_INFORMER_METRICS: InformerMetrics = NoopInformerMetrics()


class Informer(Generic[T]):
    def __init__(
        self,
        client: EtcdClient,
        prefix: str,
        decode: Decoder[T],
        *,
        indexers: Mapping[str, Callable[[T], list[str]]] | None = None,
        name: str = "informer",
        resync_period: float = 600.0,
        page_size: int = 2000,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        heartbeat_key: str | None = None,
        metrics: InformerMetrics = NOOP_INFORMER_METRICS,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.name = name
        self.resync_period = resync_period
        self.page_size = page_size
        self.idle_timeout = idle_timeout
        self.heartbeat_key = heartbeat_key
        """Followed on the watch's stream to prove it alive (see controller.storage.heartbeat)."""
        self.metrics = metrics
        self.cache: Indexer[T] = Indexer(indexers=dict(indexers or {}))
        self._decode = decode
        self._handlers: list[Handler[T]] = []
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._relist_needed = threading.Event()
        """Wakes the informer's thread for `_pending` (or to stop)."""
        self._pending = "compacted"
        """What the next wake-up does: relist for this reason, or "narrowed": prune in place."""
        self._requests = threading.Lock()  # _pending and _relist_needed change together
        self._lock = threading.Lock()  # serializes cache mutation: watch thread vs relist
        self._advanced = threading.Condition(self._lock)
        self._watch: WatchHandle | None = None
        self._thread: threading.Thread | None = None
        self.revision = 0
        """The revision the cache reflects (snapshot or last applied event)."""
        self.accept: KeyFilter | None = None
        """Set before `start` to cache only what it accepts; `refilter()` when it changes."""
        self.listed_generation = 0
        """The filter generation of the last list: the cache holds what it accepted."""
        self.relists = 0
        self.last_error: BaseException | None = None

    # -- public --------------------------------------------------------------------------

    def add_handler(self, handler: Handler[T]) -> None:
        """Handlers run on the informer's thread: keep them cheap (enqueue a key)."""
        self._handlers.append(handler)

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def wait_synced(self, timeout: float | None = None) -> bool:
        return self._synced.wait(timeout)

    def get(self, key: str) -> T | None:
        return self.cache.get(key)

    def wait_for_revision(self, revision: int, timeout: float) -> bool:
        """Block until the cache reflects etcd revision `revision` (read-your-writes for a
        controller that just created objects and must not count a cache that misses them)."""
        deadline = time.monotonic() + timeout
        with self._advanced:
            while self.revision < revision:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return False
                self._advanced.wait(min(left, 0.5))
            return True

    def refilter(self, *, narrowed: bool = False) -> None:
        """The filter's accepted set changed: relist, so the cache gains what it now accepts
        and handlers see (synthetic) DELETEs for what it no longer does. When it only shrank
        (`narrowed`: another replica took shards over) nothing needs reading: the cache drops
        what it no longer accepts in place, which costs a pass over the cache instead of a
        listing of the whole prefix."""
        self._request("narrowed" if narrowed else "refilter")

    def _request(self, reason: str) -> None:
        """Ask the informer's thread to relist for `reason` (or prune, for "narrowed"); a
        relist already asked for is never downgraded to a prune: it does more."""
        with self._requests:
            if reason != "narrowed" or not self._relist_needed.is_set():
                self._pending = reason
            self._relist_needed.set()

    def _take_request(self) -> str:
        with self._requests:
            reason, self._pending = self._pending, "compacted"
            self._relist_needed.clear()
            return reason

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"informer {self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._relist_needed.set()
        if self._watch is not None:
            self._watch.cancel(timeout)
        if self._thread is not None:
            self._thread.join(timeout)

    def watch_healthy(self, max_silence: float) -> tuple[bool, str]:
        """False when the watch has not proved itself alive for `max_silence` seconds.

        Proof is an event, a heartbeat, a progress notification or a (re)created stream — never
        a cancel — so a stream that etcd keeps cancelling, or a black-holed one, fails this
        check, while a quiet but live one passes.
        """
        handle = self._watch
        if not self.synced:
            return False, "initial list not finished"
        if handle is None or not handle.alive():
            return False, "watch not running (relisting)"
        silent = handle.silence()
        if silent > max_silence:
            state = "connected but silent" if handle.connected else "disconnected"
            return False, (
                f"watch {state}: no proof of life for {silent:.0f}s "
                f"(last error: {handle.last_error})"
            )
        return True, f"watching from revision {handle.next_revision} (last proof {silent:.1f}s ago)"

    def watch_live(self) -> tuple[bool, str]:
        """False from the moment the stream is found dead (no proof within the idle timeout)
        until a new one is established; for readiness, where an operator looks first."""
        handle = self._watch
        if handle is None or not handle.alive():
            return False, "watch not running (relisting)"
        if not handle.connected:
            return False, (
                f"watch stream down since {handle.silence():.0f}s ago, reconnecting from "
                f"revision {handle.next_revision} (last error: {handle.last_error})"
            )
        return self.watch_healthy(2 * self.idle_timeout)

    # -- the loop --------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.1
        next_resync = time.monotonic() + self.resync_period
        reason = "initial"
        while not self._stop.is_set():
            try:
                revision = self._list(reason)
                self._start_watch(revision)
                backoff = 0.1
            except StorageError as exc:
                self.last_error = exc
                log.warning(
                    "informer %s: listing %s failed (%s); retrying in %.1fs",
                    self.name,
                    self.prefix,
                    exc,
                    backoff,
                    extra={
                        "event": "informer_list_failed",
                        "resource": self.name,
                        "error": str(exc),
                        "retry_in": backoff,
                    },
                )
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, 10.0)
                continue
            # Wait until a compaction or a new filter asks for a relist, or resync time, or
            # stop; a narrowed filter is served here, with the watch still running.
            reason = "compacted"
            while not self._stop.is_set():
                timeout = max(0.0, next_resync - time.monotonic())
                if self._relist_needed.wait(timeout):
                    reason = self._take_request()
                    if reason != "narrowed":
                        break
                    self._prune()
                    continue
                self._resync()
                next_resync = time.monotonic() + self.resync_period
            if self._watch is not None:
                self._watch.cancel()  # a refilter relists while the old stream still runs

    def _list(self, reason: str) -> int:
        """List the prefix at one revision and make the cache equal to it."""
        started = time.monotonic()
        fresh: dict[str, T] = {}
        revision = 0
        accept = self.accept
        generation = accept.generation if accept is not None else 0
        with gc_paused():  # see controller.storage.bulk: 100k objects, no cyclic garbage
            for page, revision in self.client.iter_prefix(
                self.prefix, page_size=self.page_size, ahead=True
            ):
                for kv in page:
                    if accept is not None and not accept(self._key(kv.key), kv):
                        continue
                    obj = self._decode_or_report(kv)
                    if obj is not None:
                        fresh[self._key(kv.key)] = obj
        gc.freeze()  # the cache is long-lived: keep it out of every future collection
        release_freed_memory()
        with self._lock:
            previous = {k: self.cache.get(k) for k in self.cache.keys()} if self.synced else {}  # noqa: SIM118
            vanished = self.cache.replace(fresh)
            self.revision = revision
            self.listed_generation = generation
            self._advanced.notify_all()
        self.relists += 1
        if reason != "initial":
            self.metrics.relist(self.name, reason)
        self._report_size()
        # Only a relist after compaction hands over changes (missed by the watch); the
        # initial list and a refilter hand over objects that merely enter or leave our view.
        background = reason != "compacted"
        for key, last in vanished.items():
            self._dispatch_gone(key, last, revision, background=background)
        for key, obj in fresh.items():
            before = previous.get(key)
            kind = EventKind.MODIFIED if key in previous else EventKind.ADDED
            if kind is EventKind.MODIFIED and before == obj:
                continue
            self._dispatch(
                InformerEvent(kind, key, obj, revision, background=background, previous=before)
            )
        self._synced.set()
        log.info(
            "informer %s: listed %d objects under %s at revision %d in %.2fs (%s)",
            self.name,
            len(fresh),
            self.prefix,
            revision,
            time.monotonic() - started,
            reason,
            extra={
                "event": "informer_listed",
                "resource": self.name,
                "objects": len(fresh),
                "revision": revision,
                "reason": reason,
            },
        )
        return revision

    def _start_watch(self, revision: int) -> None:
        handle = self.client.watch(
            self.prefix,
            self._on_events,
            prefix=True,
            start_revision=revision + 1,
            on_compacted=self._on_compacted,
            idle_timeout=self.idle_timeout,
            name=f"watch {self.name}",
            heartbeat_key=self.heartbeat_key,
        )
        name, metrics = self.name, self.metrics
        handle.restart_hooks.append(lambda reason: metrics.watch_restart(name, reason))
        handle.proof_hooks.append(lambda: metrics.informer_event(name))
        self._watch = handle

    def _on_compacted(self, exc: Compacted) -> None:
        log.warning(
            "informer %s: watch revision %d compacted (etcd compacted at %d); relisting %s",
            self.name,
            exc.requested_revision,
            exc.compact_revision,
            self.prefix,
            extra={
                "event": "watch_compacted",
                "resource": self.name,
                "revision": exc.requested_revision,
                "compact_revision": exc.compact_revision,
            },
        )
        self._request("compacted")

    def _on_events(self, batch: list[WatchEvent]) -> None:
        for ev in batch:
            key = self._key(ev.kv.key)
            if ev.type is EventType.DELETE:
                with self._lock:
                    last = self.cache.delete(key)
                    self.revision = ev.revision
                    self._advanced.notify_all()
                if last is not None:
                    self._dispatch(InformerEvent(EventKind.DELETED, key, last, ev.revision))
                continue
            if self.accept is not None and not self.accept(key, ev.kv):
                # Not (or no longer) ours to cache, e.g. adopted into another shard: gone
                # from this replica's view, which is not a deletion of the object.
                with self._lock:
                    last = self.cache.delete(key)
                    self.revision = ev.revision
                    self._advanced.notify_all()
                if last is not None:
                    self._dispatch_gone(key, last, ev.revision, background=True)
                continue
            obj = self._decode_or_report(ev.kv)
            with self._lock:
                self.revision = ev.revision
                self._advanced.notify_all()
                if obj is None:
                    # Now unreadable: stop acting on the stale copy, but it is NOT a deletion.
                    self.cache.delete(key)
                    continue
                last = self.cache.get(key)
                self.cache.update(key, obj)
            kind = EventKind.MODIFIED if last is not None else EventKind.ADDED
            self._dispatch(InformerEvent(kind, key, obj, ev.revision, previous=last))
        self._report_size()

    def _prune(self) -> None:
        """Drop what the (narrowed) filter no longer accepts; handlers see synthetic DELETEs,
        as after a refilter relist. Runs on the informer's thread, so never beside `_list`;
        watch events meanwhile are already filtered by the new set."""
        accept = self.accept
        if accept is None:
            return
        generation = accept.generation  # read first: what is checked below is at least this
        dropped: dict[str, T] = {}
        with self._lock:
            for key in self.cache.keys():  # noqa: SIM118 - an Indexer, not a dict
                obj = self.cache.get(key)
                if obj is not None and not accept.keeps(key, obj):
                    self.cache.delete(key)
                    dropped[key] = obj
            self.listed_generation = generation
            revision = self.revision
        for key, last in dropped.items():
            self._dispatch_gone(key, last, revision, background=True)
        release_freed_memory()
        self._report_size()
        log.info(
            "informer %s: filter narrowed; dropped %d objects in place, %d left",
            self.name,
            len(dropped),
            len(self.cache),
            extra={
                "event": "informer_pruned",
                "resource": self.name,
                "objects": len(dropped),
                "cached": len(self.cache),
            },
        )

    def _resync(self) -> None:
        for key in self.cache.keys():  # noqa: SIM118 - an Indexer, not a dict
            obj = self.cache.get(key)
            if obj is not None:
                self._dispatch(
                    InformerEvent(
                        EventKind.RESYNC, key, obj, self.revision, synthetic=True, background=True
                    )
                )

    # -- helpers ---------------------------------------------------------------------------

    def _key(self, etcd_key: str) -> str:
        return etcd_key[len(self.prefix) :] if etcd_key.startswith(self.prefix) else etcd_key

    def _decode_or_report(self, kv: KeyValue) -> T | None:
        key = self._key(kv.key)
        try:
            return self._decode(key, kv)
        except InvalidObjectError as exc:
            log.error(
                "informer %s: skipping %s: %s; it is left untouched in etcd and ignored until "
                "it is fixed",
                self.name,
                kv.key,
                exc.reason,
                extra={
                    "event": "object_invalid",
                    "resource": self.name,
                    "object_key": key,
                    "error": exc.reason,
                },
            )
            self.metrics.invalid_object(self.name, exc.reason.split(":", 1)[0])
            return None

    def _dispatch_gone(self, key: str, last: T, revision: int, *, background: bool) -> None:
        """A synthetic DELETE: `key` left this cache (a relist found it gone, or the filter no
        longer accepts it) with no etcd delete event behind it."""
        self._dispatch(
            InformerEvent(
                EventKind.DELETED, key, last, revision, synthetic=True, background=background
            )
        )

    def _dispatch(self, event: InformerEvent[T]) -> None:
        for handler in self._handlers:
            try:
                handler(event)
            except Exception:
                log.exception(
                    "informer %s: handler failed for %s; continuing", self.name, event.key
                )

    def _report_size(self) -> None:
        self.metrics.cache_size(self.name, len(self.cache))

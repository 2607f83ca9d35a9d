"""EventRecorder: the Recorder reconcilers call, writing Kubernetes-style Events to etcd.

client-go's EventRecorder + EventCorrelator + broadcaster, in one Runnable:

- `event()` never fails and never blocks a reconcile. In the caller's thread it only copies
  the object's identity, asks the spam filter, and appends to a bounded queue; a full queue
  drops the event (counted, logged once per burst) rather than wait for a slow etcd.
- A background thread writes. A repeat (same object uid, type, reason, message) becomes the
  existing Event's `count` + 1 and a new `lastTimestamp` — a CAS update — found through an
  LRU of recent Events; on a miss, or when that Event has expired, a new Event is created.
- Every write carries an etcd lease (lease.py) so Events expire EVENT_TTL seconds after
  their last occurrence; an update re-attaches the current lease, restarting the clock.
- A failed write is logged with the event's name and counted, never raised, and never
  blindly retried: the storage client already retried within its deadline what provably
  never reached etcd, and a write that may have landed must not be doubled. The only
  re-sends are of writes etcd refused outright, so nothing was written: the lease had
  expired (a new one is granted) or the name was taken (another nanosecond is used).

Events are not fenced by leadership: a deposed leader's last events are still true.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from controller.events.correlation import AggregationKey, ObjectRef, aggregation_key, spam_key
from controller.events.lease import DEFAULT_LEASE_WINDOW, LeaseWindow, lease_gone
from controller.events.lru import DEFAULT_LRU_SIZE, Lru
from controller.events.metrics import NOOP_EVENT_METRICS, DropReason, EventMetrics
from controller.events.model import MAX_MESSAGE_LENGTH, Event, InvolvedObject
from controller.events.naming import UniqueNanos, event_name
from controller.events.spam import DEFAULT_BURST, DEFAULT_REFILL_SECONDS, SpamFilter
from controller.resources import ObjectMeta, Resource, format_timestamp, validation_errors
from controller.runtime.clock import SYSTEM_CLOCK, Clock
from controller.runtime.recorder import EventType
from controller.runtime.repository import InvalidObject, Repository
from controller.storage import AlreadyExists, NotFound, StorageError, Unavailable

log = logging.getLogger("controller.events.recorder")

R = TypeVar("R")

REPORTING_CONTROLLER = "lab-resource-controller"
DEFAULT_EVENT_TTL = 3600
DEFAULT_QUEUE_SIZE = 1000
"""client-go's broadcaster queues 1000 events per watcher before it drops."""
_NAME_ATTEMPTS = 3
WRITE_BATCH = 64
"""Events written per transaction at most (etcd allows 128 operations per transaction)."""


@dataclass(frozen=True, slots=True)
class _Occurrence:
    ref: ObjectRef
    type: str
    reason: str
    message: str
    nanoseconds: int
    """Wall-clock time of the `event()` call, unique within the process: the timestamps and
    the name of a new Event."""
    key: AggregationKey

    @property
    def timestamp(self) -> str:
        return format_timestamp(datetime.fromtimestamp(self.nanoseconds / 1e9, UTC))


@dataclass(frozen=True)
class EventStats:
    """What the recorder did since it was built (the same numbers its metrics get)."""

    recorded: int = 0
    aggregated: int = 0
    write_failed: int = 0
    dropped: Mapping[str, int] = field(default_factory=dict)
    queued: int = 0


def shorten_message(message: str) -> str:
    """A message over the Event's limit, cut with an ellipsis: a long message is still worth
    recording, unlike an invalid reason (a programming error, refused and logged)."""
    if len(message) <= MAX_MESSAGE_LENGTH:
        return message
    return message[: MAX_MESSAGE_LENGTH - 1] + "…"


class EventRecorder:
    """Implements controller.runtime.recorder.Recorder and the Runnable protocol."""

    name = "event-recorder"
    needs_leader = False

    def __init__(
        self,
        repository: Repository[Event],
        *,
        reporting_instance: str,
        reporting_controller: str = REPORTING_CONTROLLER,
        event_ttl: int = DEFAULT_EVENT_TTL,
        lease_window: float = DEFAULT_LEASE_WINDOW,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        cache_size: int = DEFAULT_LRU_SIZE,
        burst: int = DEFAULT_BURST,
        refill_seconds: float = DEFAULT_REFILL_SECONDS,
        metrics: EventMetrics = NOOP_EVENT_METRICS,
        clock: Clock = SYSTEM_CLOCK,
        now_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"the event queue needs room for at least one event; got {queue_size}")
        self._repository = repository
        self.reporting_controller = reporting_controller
        self.reporting_instance = reporting_instance
        self._source = f"{reporting_controller}/{reporting_instance}"
        self._metrics = metrics
        self.leases = LeaseWindow(repository.client, event_ttl, window=lease_window, clock=clock)
        self._spam = SpamFilter(
            burst=burst, refill_seconds=refill_seconds, clock=clock, max_entries=cache_size
        )
        self._recent: Lru[AggregationKey, str] = Lru(cache_size)
        """Aggregation key → name of the Event that counts its occurrences."""
        self._nanos = UniqueNanos(now_ns)
        self._queue_size = queue_size
        self._queue: deque[_Occurrence] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._deadline = 0.0
        self._full_drops = 0
        """Events dropped since the queue last had room: the burst being logged once."""
        self._thread: threading.Thread | None = None
        self._stats_lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()

    # -- Recorder ----------------------------------------------------------------------------

    def event(self, obj: Resource, type: EventType, reason: str, message: str) -> None:
        """Queue an event about `obj`; returns at once and never raises."""
        try:
            ref = ObjectRef.of(obj)
            decision = self._spam.allow(spam_key(self._source, ref))
            if not decision.allowed:
                self._drop("rate_limited")
                if decision.first_refusal:
                    log.warning(
                        "too many events about %s: dropping them until its budget refills "
                        "(%d at once, then one per %.0fs)",
                        ref,
                        self._spam.burst,
                        self._spam.refill_seconds,
                        extra={**_object_fields(ref), "event_reason": reason},
                    )
                return
            message = shorten_message(message)
            self._enqueue(
                _Occurrence(
                    ref,
                    type,
                    reason,
                    message,
                    self._nanos(),
                    aggregation_key(ref, type, reason, message),
                )
            )
        except Exception as exc:  # a Recorder must never fail the reconcile that calls it
            self._count("write_failed")
            self._metrics.event_write_failed()
            log.error(
                "could not record event %r: %s: %s; the reconcile goes on without it",
                reason,
                exc.__class__.__name__,
                exc,
                extra={
                    "event_reason": str(reason),
                    "error_type": exc.__class__.__name__,
                    "error": str(exc),
                },
            )

    def _enqueue(self, item: _Occurrence) -> None:
        resumed, first_full = 0, False
        with self._cond:
            if self._closed:
                reason: DropReason | None = "shutdown"
            elif len(self._queue) >= self._queue_size:
                reason = "queue_full"
                self._full_drops += 1
                first_full = self._full_drops == 1
            else:
                reason = None
                resumed, self._full_drops = self._full_drops, 0
                self._queue.append(item)
                self._cond.notify_all()
        if reason is None:
            if resumed:
                log.info(
                    "event queue has room again; %d events were dropped while it was full",
                    resumed,
                    extra={"dropped_events": resumed},
                )
            return
        self._drop(reason)
        if reason == "queue_full" and first_full:
            log.warning(
                "event queue is full (%d waiting: etcd is slow or unreachable); dropping new "
                "events until the writer catches up",
                self._queue_size,
                extra={**_object_fields(item.ref), "event_reason": item.reason},
            )

    # -- Runnable ----------------------------------------------------------------------------

    def start(self) -> None:
        with self._cond:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._run, name="event-recorder", daemon=True)
            self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Write what is queued within `timeout`; the rest is dropped (counted: shutdown).
        False if a write was still in flight when the time ran out."""
        with self._cond:
            self._closed = True
            self._deadline = time.monotonic() + max(0.0, timeout)
            self._cond.notify_all()
            thread = self._thread
        if thread is None:  # never started: nothing will write what is queued
            self._discard_queued()
            return True
        thread.join(max(0.0, timeout))
        if thread.is_alive():
            log.warning(
                "event writer still busy after %.1fs (etcd slow or unreachable); %d queued "
                "events will not be written",
                timeout,
                self.pending(),
            )
            return False
        return True

    # -- introspection -----------------------------------------------------------------------

    def pending(self) -> int:
        """Events queued or being written."""
        with self._cond:
            return len(self._queue) + int(self._busy)

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued so far is written (or failed); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def stats(self) -> EventStats:
        with self._stats_lock:
            counts, dropped = dict(self._counts), dict(self._dropped)
        return EventStats(
            recorded=counts.get("recorded", 0),
            aggregated=counts.get("aggregated", 0),
            write_failed=counts.get("write_failed", 0),
            dropped=dropped,
            queued=self.pending(),
        )

    def _count(self, what: str) -> None:
        with self._stats_lock:
            self._counts[what] += 1

    def _drop(self, reason: DropReason) -> None:
        with self._stats_lock:
            self._dropped[reason] += 1
        self._metrics.event_dropped(reason)

    # -- the writer --------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                if self._closed and time.monotonic() >= self._deadline:
                    break
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), WRITE_BATCH))]
                self._busy = True
            try:
                self._write_batch(batch)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
        self._discard_queued()

    def _discard_queued(self) -> None:
        with self._cond:
            left = len(self._queue)
            if left:  # counted before the queue is seen empty (`pending()` callers rely on it)
                with self._stats_lock:
                    self._dropped["shutdown"] += left
            self._queue.clear()
            self._cond.notify_all()
        if left:
            for _ in range(left):
                self._metrics.event_dropped("shutdown")
            log.warning(
                "stopping: %d queued events were not written before the shutdown timeout",
                left,
                extra={"dropped_events": left},
            )

    def _write_batch(self, items: list[_Occurrence]) -> None:
        """Write what queued up meanwhile: repeats of a remembered Event one CAS each; new
        Events — after folding repeats within the batch into one (count > 1) — all in ONE
        transaction, so a burst costs a round trip per batch, not per Event. Never raises."""
        fresh: dict[AggregationKey, tuple[Event, list[_Occurrence]]] = {}
        for item in items:
            if item.key in fresh:
                event, folded = fresh[item.key]
                event.count += 1
                event.last_timestamp = max(event.last_timestamp, item.timestamp)
                folded.append(item)
            elif self._recent.get(item.key) is not None:
                self._write(item)
            else:
                name = event_name(item.ref.name, item.nanoseconds)
                try:
                    fresh[item.key] = (self._new_event(name, item), [item])
                except ValidationError as exc:
                    self._write_failed(item, name, exc)
        if len(fresh) == 1:
            ((event, folded),) = fresh.values()
            self._create_one(event, folded)
        elif fresh:
            self._create_together(list(fresh.values()))

    def _create_together(self, pending: list[tuple[Event, list[_Occurrence]]]) -> None:
        events = [event for event, _ in pending]
        try:
            stored = self._with_lease(
                lambda lease: self._repository.create_all(events, lease=lease)
            )
        except Exception as exc:
            maybe = isinstance(exc, Unavailable) and exc.maybe_applied
            for event, folded in pending:
                if maybe:  # may be stored: a repeat finds out (count + 1, or NotFound → new)
                    self._recent.put(folded[0].key, event.metadata.name)
                for item in folded:
                    self._write_failed(item, event.metadata.name, exc)
            return
        if stored is None:  # a name was taken (another replica, same nanosecond): one by one
            for event, folded in pending:
                self._create_one(event, folded)
            return
        for event, folded in pending:
            self._stored(event, folded)

    def _create_one(self, event: Event, folded: list[_Occurrence]) -> None:
        try:
            self._create(event, folded)
        except Exception as exc:
            for item in folded:
                self._write_failed(item, event.metadata.name, exc)

    def _stored(self, event: Event, folded: list[_Occurrence]) -> None:
        self._recent.put(folded[0].key, event.metadata.name)
        self._count("recorded")
        self._metrics.event_recorded(folded[0].type)
        for item in folded[1:]:
            self._count("aggregated")
            self._metrics.event_aggregated(item.type)

    def _write(self, item: _Occurrence) -> None:
        """Aggregate into the remembered Event, or create one. Never raises."""
        name = self._recent.get(item.key)
        try:
            if name is not None:
                if self._increment(name, item):
                    return
                self._recent.pop(item.key)  # expired (or deleted): a new Event starts over
            name = event_name(item.ref.name, item.nanoseconds)
            self._create(self._new_event(name, item), [item])
        except Exception as exc:
            if isinstance(exc, InvalidObject):  # the stored Event is unreadable: start anew
                self._recent.pop(item.key)
            self._write_failed(item, name, exc)

    def _increment(self, name: str, item: _Occurrence) -> bool:
        """count + 1 on the stored Event; False if it no longer exists."""
        timestamp = item.timestamp

        def bump(event: Event) -> None:
            event.count += 1
            event.last_timestamp = max(event.last_timestamp, timestamp)  # fixed width: by time

        try:
            self._with_lease(
                lambda lease: self._repository.update_spec(
                    item.ref.namespace, name, bump, lease=lease
                )
            )
        except NotFound:
            return False
        self._count("aggregated")
        self._metrics.event_aggregated(item.type)
        return True

    def _new_event(self, name: str, item: _Occurrence) -> Event:
        ref, timestamp = item.ref, item.timestamp
        return Event(
            metadata=ObjectMeta(name=name, namespace=ref.namespace),
            involved_object=InvolvedObject(
                api_version=ref.api_version,
                kind=ref.kind,
                name=ref.name,
                namespace=ref.namespace,
                uid=ref.uid or None,
            ),
            reason=item.reason,
            message=item.message,
            type=item.type,  # validated here: a bad type is refused and logged
            count=1,
            first_timestamp=timestamp,
            last_timestamp=timestamp,
            reporting_controller=self.reporting_controller,
            reporting_instance=self.reporting_instance,
        )

    def _create(self, event: Event, folded: list[_Occurrence]) -> None:
        """Create one Event (the first of `folded`, counting the rest). Raises."""
        ref = folded[0].ref
        for attempt in range(_NAME_ATTEMPTS):
            try:
                self._with_lease(lambda lease: self._repository.create(event, lease=lease))
            except AlreadyExists:
                if attempt + 1 == _NAME_ATTEMPTS:
                    raise
                # Another replica's event for the same object in the same nanosecond.
                event.metadata.name = event_name(ref.name, self._nanos())
                continue
            except Unavailable as exc:
                if exc.maybe_applied:
                    # It may be stored: a repeat will find out (count + 1, or NotFound → new).
                    self._recent.put(folded[0].key, event.metadata.name)
                raise
            self._stored(event, folded)
            return

    def _with_lease(self, write: Callable[[int], R]) -> R:
        lease = self.leases.current()
        try:
            return write(lease)
        except NotFound as exc:
            if not lease_gone(exc):
                raise
        # etcd refused the lease (it expired while etcd was away): nothing was written.
        self.leases.forget(lease)
        return write(self.leases.current())

    def _write_failed(self, item: _Occurrence, name: str | None, exc: Exception) -> None:
        self._count("write_failed")
        self._metrics.event_write_failed()
        fields: dict[str, Any] = {
            **_object_fields(item.ref),
            "event_name": name,
            "event_type": item.type,
            "event_reason": item.reason,
            "error_type": type(exc).__name__,
        }
        if isinstance(exc, ValidationError):
            detail = "; ".join(validation_errors(exc)[:5])
            log.error(
                "refused to record event %s about %s: it is invalid (%s); fix the caller",
                name,
                item.ref,
                detail,
                extra={**fields, "error": detail},
            )
            return
        outcome = (
            "etcd may have stored it; it is not sent again"
            if isinstance(exc, Unavailable) and exc.maybe_applied
            else "it is lost"
        )
        log.warning(
            "could not write event %s (%s %s about %s): %s; %s, later events are still tried",
            name,
            item.type,
            item.reason,
            item.ref,
            exc,
            outcome,
            extra={**fields, "error": str(exc)},
            exc_info=not isinstance(exc, StorageError),
        )


def _object_fields(ref: ObjectRef) -> dict[str, str]:
    """Stable structured keys naming the involved object in every log line."""
    return {
        "object_kind": ref.kind,
        "object": f"{ref.namespace}/{ref.name}",
        "object_uid": ref.uid,
    }

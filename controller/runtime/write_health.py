"""Whether etcd accepts this controller's writes: the readiness that reads cannot prove.

The `etcd` readiness check proves that a quorum answers reads. It stays green while every
write is refused: the backend quota is full (etcd raises the NOSPACE alarm and refuses
puts, txns and lease grants), or the etcd user's role is read-only under our prefix. A
controller that cannot write status is not doing its job, so it must not report ready.

Two signals, each its own readiness check:

- `WriteFailureTracker` sees the outcome of every write RPC (it is a `RequestHook` of the
  client). Writes are *failing* after `min_failures` consecutive failures spanning at least
  `min_seconds`, with no success in between; the next successful write clears it at once.
- `AlarmMonitor` polls etcd's alarm list (NOSPACE, CORRUPT) every `interval` seconds, and at
  once when a write fails with QuotaExceeded.

A replica that never writes (a standby under leader election) records no failure and is
ready: no data is not bad data.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import Final, Protocol

from controller.storage import (
    AlreadyExists,
    AuthenticationFailed,
    Compacted,
    Conflict,
    CorruptValue,
    EtcdClient,
    Fenced,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    StorageError,
    Unavailable,
)

log = logging.getLogger("controller.runtime.write_health")

WRITE_METHODS: Final = frozenset({"/kv/put", "/kv/txn", "/kv/deleterange", "/lease/grant"})
# Any authenticated etcd user may grant a lease, read-only or not: a granted lease proves
# nothing about key writes (the elector grants one per campaign attempt, then its txn is
# refused). A refused grant (NOSPACE, no quorum) still counts as a failure.
_PROOF_OF_WRITES: Final = WRITE_METHODS - {"/lease/grant"}
# etcd answered and decided about this one request: a lost compare, a fencing guard, a
# request too large. The cluster can write; these are the caller's business.
_REQUEST_OUTCOMES: Final = (
    Conflict,
    Fenced,
    AlreadyExists,
    NotFound,
    InvalidRequest,
    CorruptValue,
    Compacted,
)

DEFAULT_MIN_FAILURES: Final = 3
"""One refused or timed-out write (an etcd leader election, an endpoint failover) is noise;
three in a row with no success between them is a pattern."""
DEFAULT_MIN_SECONDS: Final = 5.0
"""Longer than an etcd leader election (1 s election timeout by default, settled within a
few seconds), so a cluster hiccup does not drop every replica from service at once; shorter
than a default readiness probe period (10 s), so the next probe sees a real outage."""
DEFAULT_ALARM_INTERVAL: Final = 10.0
"""One cheap RPC per replica every 10 s; a QuotaExceeded write triggers a poll at once."""

_ALARM_HINTS: Final = {
    "NOSPACE": "the backend quota is full and etcd refuses writes; compact and defragment "
    "etcd, then disarm the alarm (etcdctl alarm disarm)",
    "CORRUPT": "a member's data diverges from the cluster and etcd refuses requests; "
    "replace or restore that member from a snapshot, then disarm the alarm",
}


def _is_write_failure(error: BaseException) -> bool:
    """A storage error that says etcd did not take the write; anything else (a bug in our
    own code, an interrupt) says nothing about etcd and is ignored."""
    return isinstance(error, StorageError) and not isinstance(error, _REQUEST_OUTCOMES)


def _failure_hint(error: BaseException, prefix: str, username: str | None) -> str:
    if isinstance(error, QuotaExceeded):
        return (
            "etcd's backend quota is full (NOSPACE alarm): compact and defragment etcd, "
            "then disarm the alarm (etcdctl alarm disarm)"
        )
    if isinstance(error, PermissionDenied):
        who = f"etcd user {username!r}" if username else "etcd user"
        return f"the {who} cannot write under {prefix}: grant its role readwrite on that prefix"
    if isinstance(error, AuthenticationFailed):
        return "etcd refuses the controller's credentials: check ETCD_USERNAME/ETCD_PASSWORD"
    if isinstance(error, Unavailable):
        return "etcd does not take writes in time: check that a quorum of members is up"
    return "see the controller's and etcd's logs"


def _log_outside_request(level: int, msg: str, *args: object, extra: dict[str, object]) -> None:
    """Log in an empty context: the line is about etcd, not about the object (key, trace)
    whose write happened to tip the count, which the caller's context would attach."""
    contextvars.Context().run(log.log, level, msg, *args, extra=extra)


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}"


class WriteFailureTracker:
    """Counts consecutive failed writes; thread-safe, and cheap on the success path."""

    def __init__(
        self,
        *,
        prefix: str = "/",
        username: str | None = None,
        min_failures: int = DEFAULT_MIN_FAILURES,
        min_seconds: float = DEFAULT_MIN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
        on_quota_exceeded: Callable[[], None] | None = None,
    ) -> None:
        if min_failures < 1:
            raise ValueError(f"min_failures must be at least 1, got {min_failures}")
        self.prefix = prefix
        self.username = username
        self.min_failures = min_failures
        self.min_seconds = min_seconds
        self._clock = clock
        self._on_change = on_change
        self._on_quota_exceeded = on_quota_exceeded
        self._lock = threading.Lock()
        self._failures = 0
        self._first_failure = 0.0
        self._last_error: BaseException | None = None
        self._failing = False

    @property
    def failing(self) -> bool:
        return self._failing

    def record(self, method: str, seconds: float, error: BaseException | None) -> None:
        """The client's request hook: (RPC method, duration, error or None)."""
        if method not in WRITE_METHODS:
            return
        if error is None:
            if method in _PROOF_OF_WRITES and self._failures:  # an int read: no lock needed
                self._succeeded()
        elif _is_write_failure(error):
            self._failed(error)

    def _succeeded(self) -> None:
        with self._lock:
            was_failing, failures = self._failing, self._failures
            elapsed = self._clock() - self._first_failure
            self._failures, self._last_error, self._failing = 0, None, False
            if was_failing:
                # Under the lock, so the log and the gauge never run out of order.
                _log_outside_request(
                    logging.INFO,
                    "etcd writes succeed again after %.0fs of failures (%d failed writes); "
                    "the etcd-writes readiness check passes",
                    elapsed,
                    failures,
                    extra={
                        "event": "etcd_writes_recovered",
                        "failed_writes": failures,
                        "failing_seconds": round(elapsed, 1),
                    },
                )
                if self._on_change:
                    self._on_change(False)

    def _failed(self, error: BaseException) -> None:
        now = self._clock()
        with self._lock:
            if self._failures == 0:
                self._first_failure = now
            self._failures += 1
            self._last_error = error
            elapsed = now - self._first_failure
            if (
                not self._failing
                and self._failures >= self.min_failures
                and elapsed >= self.min_seconds
            ):
                self._failing = True
                _log_outside_request(
                    logging.WARNING,
                    "etcd writes failing: %d consecutive writes refused over %.0fs, none "
                    "succeeded (%s): %s; the etcd-writes readiness check fails until a write "
                    "succeeds",
                    self._failures,
                    elapsed,
                    _describe(error),
                    _failure_hint(error, self.prefix, self.username),
                    extra={
                        "event": "etcd_writes_failing",
                        "error": _describe(error),
                        "failed_writes": self._failures,
                        "failing_seconds": round(elapsed, 1),
                        "error_kind": type(error).__name__,
                    },
                )
                if self._on_change:
                    self._on_change(True)
        if isinstance(error, QuotaExceeded) and self._on_quota_exceeded:
            self._on_quota_exceeded()

    def check(self) -> tuple[bool, str]:
        """Readiness: fails while writes are failing, with what to do about it."""
        with self._lock:
            failing, failures, first, error = (
                self._failing,
                self._failures,
                self._first_failure,
                self._last_error,
            )
        if not failing or error is None:
            if failures:
                return True, f"writes succeeding ({failures} failed since the last success)"
            return True, "writes succeeding (no failure since the last success)"
        return False, (
            f"writes failing for {self._clock() - first:.0f}s ({failures} consecutive "
            f"failures): {_describe(error)}: "
            f"{_failure_hint(error, self.prefix, self.username)}"
        )


class AlarmMonitor:
    """Polls etcd's alarm list in a thread; `check` fails while NOSPACE or CORRUPT is active.

    If etcd refuses the alarm list to this user (an RBAC-limited role), polling stops for
    good and readiness relies on write outcomes alone: a full quota then still shows as
    failing writes.
    """

    def __init__(
        self,
        list_alarms: Callable[[], Sequence[tuple[int, str]]],
        *,
        interval: float = DEFAULT_ALARM_INTERVAL,
        min_gap: float = 1.0,
        on_change: Callable[[frozenset[str]], None] | None = None,
    ) -> None:
        self._list_alarms = list_alarms
        self.interval = interval
        self.min_gap = min_gap
        self._on_change = on_change
        self._lock = threading.Lock()
        self._active: tuple[tuple[int, str], ...] = ()
        self._refused = False
        self._last_error: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> frozenset[str]:
        return frozenset(name for _member, name in self._active)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="etcd alarms", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def poll_soon(self) -> None:
        """Ask the thread for a poll now (coalesced: at most one per `min_gap`)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            polled = time.monotonic()
            self.poll()
            if self._refused:
                return
            self._wake.wait(self.interval)
            # A burst of QuotaExceeded writes wakes us once per write: poll once per gap.
            self._stop.wait(polled + self.min_gap - time.monotonic())

    def poll(self) -> None:
        """One poll, on the caller's thread."""
        try:
            alarms = self._list_alarms()
        except PermissionDenied as exc:
            self._refused = True
            log.info(
                "etcd refuses to list alarms to this user (%s); readiness relies on write "
                "outcomes alone",
                exc,
            )
            return
        except StorageError as exc:
            self._last_error = str(exc)  # keep the last known alarms; `etcd` check reports
            log.debug("etcd alarm poll failed: %s", exc)
            return
        active = tuple(sorted((member, name) for member, name in alarms if name != "NONE"))
        with self._lock:
            before = self.active
            self._active, self._last_error = active, None
            after = self.active
            if before == after:
                return
            if after - before:
                log.warning(
                    "etcd alarm raised: %s; the etcd-alarms readiness check fails until it is "
                    "disarmed",
                    self._details(),
                    extra={"event": "etcd_alarm_raised", "alarms": sorted(after)},
                )
            else:
                log.info(
                    "etcd alarms cleared (%s); the etcd-alarms readiness check passes",
                    ", ".join(sorted(before - after)),
                    extra={"event": "etcd_alarm_cleared", "alarms": sorted(after)},
                )
            if self._on_change:
                self._on_change(after)

    def _details(self) -> str:
        parts = []
        for name in sorted(self.active):
            members = ", ".join(f"{m:x}" for m, n in self._active if n == name)
            hint = _ALARM_HINTS.get(name, "etcd refuses writes while it is active")
            parts.append(f"etcd {name} alarm active (member {members}): {hint}")
        return "; ".join(parts)

    def check(self) -> tuple[bool, str]:
        if self._refused:
            return True, "etcd refuses to list alarms to this user: relying on write outcomes"
        with self._lock:
            if self._active:
                return False, self._details()
            error = self._last_error
        return True, "no etcd alarm" + (f" (last poll failed: {error})" if error else "")


class WriteHealthMetrics(Protocol):
    """What write health reports: `labctl_etcd_write_failing` and
    `labctl_etcd_alarm_active{alarm}`."""

    def etcd_write_failing(self, failing: bool) -> None: ...
    def etcd_alarms(self, active: Collection[str]) -> None: ...


class NoopWriteHealthMetrics:
    def etcd_write_failing(self, failing: bool) -> None: ...
    def etcd_alarms(self, active: Collection[str]) -> None: ...


NOOP_WRITE_HEALTH_METRICS: WriteHealthMetrics = NoopWriteHealthMetrics()


class WriteHealth:
    """The write tracker and the alarm monitor of one client, wired to each other.

    Add `writes.record` to the client's `request_hooks`; the Manager registers both checks
    and starts/stops the monitor.
    """

    def __init__(
        self,
        client: EtcdClient,
        *,
        prefix: str,
        username: str | None = None,
        metrics: WriteHealthMetrics = NOOP_WRITE_HEALTH_METRICS,
        alarm_interval: float = DEFAULT_ALARM_INTERVAL,
    ) -> None:
        self.alarms = AlarmMonitor(
            lambda: client.alarms(timeout=2.0),
            interval=alarm_interval,
            on_change=metrics.etcd_alarms,
        )

        def failing_changed(failing: bool) -> None:
            metrics.etcd_write_failing(failing)
            if not failing:
                self.alarms.poll_soon()  # writes work again: a stale alarm clears now

        self.writes = WriteFailureTracker(
            prefix=prefix,
            username=username,
            on_change=failing_changed,
            on_quota_exceeded=self.alarms.poll_soon,
        )

    def start(self) -> None:
        self.alarms.start()

    def stop(self) -> None:
        self.alarms.stop()

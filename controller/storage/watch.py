"""A supervised watch: it never dies silently and never goes deaf unnoticed.

etcd3-py's `Watcher` thread dies without a word when etcd restarts, when a callback raises and
on compaction. Here one thread owns the stream and:

- delivers events in revision order to one callback, batch by batch;
- on a broken stream (etcd killed, restarted, failed over) reconnects with jittered backoff and
  resumes from the last delivered revision + 1, so no event is lost or repeated;
- demands **proof of life**: a stream that carries nothing for `idle_timeout` seconds is
  treated as dead and reopened. A quiet prefix still gets proofs when the owner names a
  `heartbeat_key`: a second watcher on the same stream (same TCP connection) follows a key the
  process rewrites every few seconds (`controller.storage.heartbeat`), so a black-holed
  connection is noticed within `idle_timeout` whatever etcd's progress-notify interval is (its
  default, 10 minutes, is useless as a liveness signal). etcd's progress notifications and
  the stream's `created` answer count as proofs too — but a cancel never does;
- on an in-band cancel for an expired or unknown auth token (etcd restarted, token TTL ran out:
  HTTP 200 with `canceled`) logs in again before reopening, instead of reopening with the same
  dead token forever;
- on compaction stops and reports `Compacted` (with the compact revision) to `on_compacted`:
  only the caller can decide how to relist;
- cancels promptly: `cancel()` shuts the socket down under the blocked read;
- keeps what an operator alerts on: `connected`, `silence()`, `restarts` (streams re-established
  after a break, by reason through `restart_hooks`), `last_error`.

The watch knows nothing of endpoints or of the client: it opens streams and logs in again
through a `StreamOpener` it is given (`controller.storage.failover.EndpointPool`, composed by
`EtcdClient.watch`).

See docs/architecture.md, "Watch liveness".
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from controller.storage.codec import as_int, encode_key
from controller.storage.errors import Compacted, StorageError, Unavailable
from controller.storage.kv import EventType, KeyValue, WatchEvent
from controller.storage.transport import auth_rejected

log = logging.getLogger("controller.storage.watch")
tracer = trace.get_tracer("controller.storage")

WatchCallback = Callable[[list[WatchEvent]], None]

_jitter = random.Random()
"""Private: background threads must not disturb the global RNG other code seeds."""

DEFAULT_IDLE_TIMEOUT = 6.0
"""Seconds without any proof of life before a stream is reopened: three heartbeats at the
default 2 s interval, so one late heartbeat never causes a reconnect."""

_BACKOFF_INITIAL = 0.05
_BACKOFF_MAX = 2.0
_HEARTBEAT_WATCH_ID = 1
"""The events watcher gets etcd's automatic id 0 on each new stream; the heartbeat watcher 1."""


class WatchStream(Protocol):
    """An open server stream: the JSON messages etcd sends, until it breaks or is closed."""

    def __iter__(self) -> Iterator[dict[str, Any]]: ...

    def close(self) -> None: ...

    def abort(self) -> None:
        """Close from another thread, unblocking a read in progress (`WatchHandle.cancel`)."""


class StreamOpener(Protocol):
    """What a watch needs from the endpoints: open a stream somewhere, log in again there."""

    def open_stream(
        self, method: str, body: dict[str, Any] | list[dict[str, Any]], read_timeout: float
    ) -> tuple[WatchStream, str]:
        """Open `method` with `body` (a list: several requests on one stream) on an endpoint
        that answers; return the stream and that endpoint's address. Raises `StorageError`."""
        ...

    def renew_token(self, address: str) -> None:
        """Log in again at `address`. Raises `StorageError` if that fails."""
        ...


class WatchHandle:
    """Control and health of one supervised watch."""

    def __init__(self, name: str, start_revision: int) -> None:
        self.name = name
        self.next_revision = start_revision
        """The revision the next (re)connection starts from: last delivered + 1."""
        self.restarts = 0
        """Streams re-established after a break (error, silence, auth, server cancel)."""
        self.connected = False
        """True from the server's `created` answer until the stream breaks."""
        self.last_proof_at = time.monotonic()
        """When the stream last proved it is alive (event, heartbeat, progress, created)."""
        self.last_error: BaseException | None = None
        self.compacted: Compacted | None = None
        self.restart_hooks: list[Callable[[str], None]] = []
        """Called with the reason the previous stream ended, once a new one is established."""
        self.proof_hooks: list[Callable[[], None]] = []
        """Called on every proof of life (for `labctl_informer_last_event_age_seconds`)."""
        self._stop = threading.Event()
        self._stream: WatchStream | None = None
        self._thread: threading.Thread | None = None

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set()

    def silence(self) -> float:
        """Seconds since the stream last proved it is alive."""
        return max(0.0, time.monotonic() - self.last_proof_at)

    def cancel(self, timeout: float = 1.0) -> None:
        """Stop delivering events now; waits up to `timeout` for the thread to exit.

        No callback runs after this returns. The socket is shut down under the blocked read,
        so the thread normally exits in milliseconds; one still opening a stream exits as
        soon as that attempt ends, without delivering anything.
        """
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.abort()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _proved(self) -> None:
        self.last_proof_at = time.monotonic()
        for hook in self.proof_hooks:
            try:
                hook()
            except Exception:
                log.exception("%s: proof hook raised; the watch continues", self.name)


def start_watch(
    opener: StreamOpener,
    *,
    key: str,
    range_end: str | None,
    start_revision: int,
    prev_kv: bool,
    callback: WatchCallback,
    on_compacted: Callable[[Compacted], None] | None,
    idle_timeout: float,
    name: str,
    heartbeat_key: str | None = None,
) -> WatchHandle:
    """Start the supervising thread. `start_revision` must be an actual revision (> 0): the
    watch resumes from it, so "from now" must be pinned by the caller (`EtcdClient.watch`)."""
    if start_revision <= 0:
        raise ValueError(f"start_revision must be a revision (> 0), not {start_revision}")
    handle = WatchHandle(name, start_revision)
    stream_spec = _StreamSpec(key, range_end, prev_kv, heartbeat_key, idle_timeout)
    thread = threading.Thread(
        target=_supervise,
        args=(opener, handle, stream_spec, callback, on_compacted),
        name=name,
        daemon=True,
    )
    handle._thread = thread
    thread.start()
    return handle


class _StreamSpec:
    __slots__ = ("heartbeat_key", "idle_timeout", "key", "prev_kv", "range_end")

    def __init__(
        self,
        key: str,
        range_end: str | None,
        prev_kv: bool,
        heartbeat_key: str | None,
        idle_timeout: float,
    ) -> None:
        self.key = key
        self.range_end = range_end
        self.prev_kv = prev_kv
        self.heartbeat_key = heartbeat_key
        self.idle_timeout = idle_timeout


class _Silent(Exception):
    """Nothing arrived for idle_timeout: the stream may be dead (half-open, black-holed)."""


class _AuthExpired(Exception):
    """etcd cancelled the stream because our token is no longer valid: log in again."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(reason)
        self.address = address


def _supervise(
    opener: StreamOpener,
    handle: WatchHandle,
    spec: _StreamSpec,
    callback: WatchCallback,
    on_compacted: Callable[[Compacted], None] | None,
) -> None:
    backoff = _BACKOFF_INITIAL
    broke_because: str | None = None
    while not handle.cancelled:
        try:
            _run_stream(opener, handle, spec, callback, broke_because)
            broke_because = None
            backoff = _BACKOFF_INITIAL
            continue
        except Compacted as exc:
            handle.compacted = exc
            handle.connected = False
            log.warning(
                "%s: start revision %d was compacted (compact revision %d); the watch stops "
                "and the owner must relist",
                handle.name,
                exc.requested_revision,
                exc.compact_revision,
            )
            if on_compacted is not None and not handle.cancelled:
                _safe(on_compacted, exc, handle.name)
            return
        except _Silent:
            if handle.cancelled:
                return
            was_connected, handle.connected = handle.connected, False
            if was_connected:
                # Log the transition once, not every attempt of a long outage.
                log.warning(
                    "%s: no event, heartbeat or progress notification for %.1fs; treating "
                    "the stream as dead and reconnecting from revision %d",
                    handle.name,
                    spec.idle_timeout,
                    handle.next_revision,
                )
            handle.last_error = Unavailable(f"watch stream silent for {spec.idle_timeout:.1f}s")
            broke_because = broke_because or "silent"
        except _AuthExpired as exc:
            if handle.cancelled:
                return
            handle.connected = False
            handle.last_error = exc
            broke_because = "auth"
            log.warning(
                "%s: etcd cancelled the stream (%s); logging in again and reconnecting from "
                "revision %d",
                handle.name,
                exc,
                handle.next_revision,
            )
            try:
                opener.renew_token(exc.address)
                continue  # a fresh token: reconnect at once
            except StorageError as login_error:
                handle.last_error = login_error
                log.error(
                    "%s: could not log in again (%s); retrying in %.2fs",
                    handle.name,
                    login_error,
                    backoff,
                )
        except Exception as exc:  # any failure means "reconnect", never a silent death
            if handle.cancelled:
                return
            handle.connected = False
            handle.last_error = exc
            broke_because = broke_because or "error"
            log.warning(
                "%s: stream failed (%s); reconnecting from revision %d in %.2fs",
                handle.name,
                exc,
                handle.next_revision,
                backoff,
            )
        if handle._stop.wait(backoff * (0.5 + _jitter.random())):
            break
        backoff = min(backoff * 2, _BACKOFF_MAX)
    handle.connected = False


def _run_stream(
    opener: StreamOpener,
    handle: WatchHandle,
    spec: _StreamSpec,
    callback: WatchCallback,
    broke_because: str | None,
) -> None:
    create: dict[str, Any] = {
        "key": encode_key(spec.key),
        "start_revision": str(handle.next_revision),
        "progress_notify": True,
    }
    if spec.range_end is not None:
        create["range_end"] = encode_key(spec.range_end)
    if spec.prev_kv:
        create["prev_kv"] = True
    requests_: list[dict[str, Any]] = [{"create_request": create}]
    if spec.heartbeat_key is not None:
        # Same stream, same connection: a heartbeat arriving proves THIS connection delivers.
        requests_.append(
            {
                "create_request": {
                    "key": encode_key(spec.heartbeat_key),
                    "watch_id": str(_HEARTBEAT_WATCH_ID),
                }
            }
        )
    with tracer.start_as_current_span(
        "etcd watch " + ("resume" if broke_because or handle.restarts else "start"),
        kind=SpanKind.CLIENT,
        attributes={
            "rpc.system": "etcd",
            "rpc.method": "/watch",
            "labctl.watch.name": handle.name,
            "labctl.watch.start_revision": handle.next_revision,
        },
    ):
        stream, address = opener.open_stream("/watch", requests_, spec.idle_timeout)
    handle._stream = stream
    try:
        if handle.cancelled:
            return
        proof_before_created = handle.last_proof_at
        for msg in _iter_or_silent(stream, handle, address):
            if handle.cancelled:
                return
            if msg.get("canceled"):
                # A cancel is never progress: undo the proof its `created` may have given.
                handle.last_proof_at = proof_before_created
                _raise_for_cancel(msg, handle, address)
            watch_id = as_int(msg.get("watch_id"))
            if msg.get("created"):
                if watch_id != _HEARTBEAT_WATCH_ID:
                    proof_before_created = handle.last_proof_at
                    handle.connected = True
                    if broke_because is not None:
                        handle.restarts += 1
                        log.info(
                            "%s: stream re-established after %s; resuming from revision %d",
                            handle.name,
                            broke_because,
                            handle.next_revision,
                        )
                        _notify(handle, broke_because)
                        broke_because = None
                handle._proved()
                continue
            events = msg.get("events")
            if watch_id == _HEARTBEAT_WATCH_ID or not events:
                handle._proved()  # a heartbeat or a progress notification
                continue
            batch = [_decode_event(ev) for ev in events]
            _safe(callback, batch, handle.name)
            handle.next_revision = batch[-1].kv.mod_revision + 1
            handle._proved()
    finally:
        handle._stream = None
        stream.close()


def _raise_for_cancel(msg: dict[str, Any], handle: WatchHandle, address: str) -> None:
    compact = as_int(msg.get("compact_revision"))
    if compact:
        raise Compacted(handle.next_revision, compact)
    reason = str(msg.get("cancel_reason") or "no reason given")
    if auth_rejected(reason):
        raise _AuthExpired(address, f"watch cancelled by {address}: {reason}")
    raise Unavailable(f"{address}: watch cancelled by the server: {reason}")


def _iter_or_silent(
    stream: WatchStream, handle: WatchHandle, address: str
) -> Iterator[dict[str, Any]]:
    try:
        yield from stream
    except StorageError as exc:
        if handle.cancelled:
            return
        if auth_rejected(str(exc)):
            raise _AuthExpired(address, str(exc)) from None
        if "timed out" in str(exc).lower():
            raise _Silent() from None
        raise


def _decode_event(ev: dict[str, Any]) -> WatchEvent:
    prev = ev.get("prev_kv")
    return WatchEvent(
        type=EventType.DELETE if ev.get("type") == "DELETE" else EventType.PUT,
        kv=KeyValue.from_wire(ev["kv"]),
        prev_kv=KeyValue.from_wire(prev) if prev else None,
    )


def _notify(handle: WatchHandle, reason: str) -> None:
    for hook in handle.restart_hooks:
        _safe(hook, reason, handle.name)


def _safe(fn: Callable[[Any], None], arg: Any, name: str) -> None:
    """A raising callback is logged and skipped; it must never kill the watch thread."""
    try:
        fn(arg)
    except Exception:
        log.exception("%s: callback raised; the event batch is skipped, the watch continues", name)

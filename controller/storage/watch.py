"""A supervised watch: it never dies silently.

etcd3-py's `Watcher` thread dies without a word when etcd restarts, when a callback raises and
on compaction. Here one thread owns the stream and:

- delivers events in revision order to one callback, batch by batch;
- on a broken stream (etcd killed, restarted, failed over) reconnects with jittered backoff and
  resumes from the last delivered revision + 1, so no event is lost or repeated;
- on an idle stream (no event, no progress notification for `idle_timeout`) reconnects the
  same way: a half-open TCP connection can look idle forever, a reconnect proves liveness;
- on compaction stops and reports `Compacted` (with the compact revision) to `on_compacted`:
  only the caller can decide how to relist;
- keeps counters an operator can alert on (`restarts`, `last_response_at`, `connected`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from controller.storage.codec import as_int, encode_key
from controller.storage.errors import Compacted, Unavailable
from controller.storage.kv import EventType, KeyValue, WatchEvent

if TYPE_CHECKING:
    from controller.storage.client import EtcdClient

log = logging.getLogger("controller.storage.watch")
tracer = trace.get_tracer("controller.storage")

WatchCallback = Callable[[list[WatchEvent]], None]

_jitter = random.Random()
"""Private: background threads must not disturb the global RNG other code seeds."""

_BACKOFF_INITIAL = 0.05
_BACKOFF_MAX = 2.0


class WatchHandle:
    """Control and health of one supervised watch."""

    def __init__(self, name: str, start_revision: int) -> None:
        self.name = name
        self.next_revision = start_revision
        """The revision the next (re)connection starts from: last delivered + 1."""
        self.restarts = 0
        """Reconnections after an error (idle reconnects are counted in `idle_reconnects`)."""
        self.idle_reconnects = 0
        self.connected = False
        self.last_response_at = time.monotonic()
        self.last_error: BaseException | None = None
        self.compacted: Compacted | None = None
        self.restart_hooks: list[Callable[[str], None]] = []
        self._stop = threading.Event()
        self._stream: Any = None
        self._thread: threading.Thread | None = None

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set()

    def cancel(self, timeout: float = 5.0) -> None:
        """Stop delivering events; returns once the watch thread has exited (or timeout)."""
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def start_watch(
    client: EtcdClient,
    *,
    key: str,
    range_end: str | None,
    start_revision: int,
    prev_kv: bool,
    callback: WatchCallback,
    on_compacted: Callable[[Compacted], None] | None,
    idle_timeout: float,
    name: str,
) -> WatchHandle:
    if start_revision <= 0:
        # "From now" must still be resumable: pin it to the current revision + 1.
        start_revision = client.revision(key) + 1
    handle = WatchHandle(name, start_revision)
    thread = threading.Thread(
        target=_supervise,
        args=(client, handle, key, range_end, prev_kv, callback, on_compacted, idle_timeout),
        name=name,
        daemon=True,
    )
    handle._thread = thread
    thread.start()
    return handle


def _supervise(
    client: EtcdClient,
    handle: WatchHandle,
    key: str,
    range_end: str | None,
    prev_kv: bool,
    callback: WatchCallback,
    on_compacted: Callable[[Compacted], None] | None,
    idle_timeout: float,
) -> None:
    backoff = _BACKOFF_INITIAL
    while not handle.cancelled:
        try:
            _run_stream(client, handle, key, range_end, prev_kv, callback, idle_timeout)
            backoff = _BACKOFF_INITIAL
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
            if on_compacted is not None:
                _safe(on_compacted, exc, handle.name)
            return
        except _IdleStream:
            handle.idle_reconnects += 1
            _notify(handle, "idle")
            continue
        except Exception as exc:  # any failure means "reconnect", never a silent death
            if handle.cancelled:
                return
            handle.connected = False
            handle.last_error = exc
            handle.restarts += 1
            _notify(handle, "error")
            log.warning(
                "%s: stream failed (%s); reconnecting from revision %d in %.2fs",
                handle.name,
                exc,
                handle.next_revision,
                backoff,
            )
            if handle._stop.wait(backoff * (0.5 + _jitter.random())):
                return
            backoff = min(backoff * 2, _BACKOFF_MAX)
    handle.connected = False


class _IdleStream(Exception):
    """Nothing arrived for idle_timeout: reconnect to prove the stream is still alive."""


def _run_stream(
    client: EtcdClient,
    handle: WatchHandle,
    key: str,
    range_end: str | None,
    prev_kv: bool,
    callback: WatchCallback,
    idle_timeout: float,
) -> None:
    create: dict[str, Any] = {
        "key": encode_key(key),
        "start_revision": str(handle.next_revision),
        "progress_notify": True,
    }
    if range_end is not None:
        create["range_end"] = encode_key(range_end)
    if prev_kv:
        create["prev_kv"] = True
    with tracer.start_as_current_span(
        "etcd watch " + ("resume" if handle.restarts or handle.idle_reconnects else "start"),
        kind=SpanKind.CLIENT,
        attributes={
            "db.system": "etcd",
            "watch.name": handle.name,
            "watch.start_revision": handle.next_revision,
        },
    ):
        stream, address = client._open_stream({"create_request": create}, idle_timeout)
    handle._stream = stream
    try:
        if handle.cancelled:
            return
        for msg in _iter_or_idle(stream, handle):
            handle.last_response_at = time.monotonic()
            if msg.get("canceled"):
                compact = as_int(msg.get("compact_revision"))
                if compact:
                    raise Compacted(handle.next_revision, compact)
                reason = msg.get("cancel_reason")
                raise Unavailable(f"{address}: watch cancelled by server: {reason}")
            if msg.get("created"):
                handle.connected = True
                continue
            events = msg.get("events")
            if not events:
                continue  # progress notification: proves liveness
            batch = [_decode_event(ev) for ev in events]
            _safe(callback, batch, handle.name)
            handle.next_revision = batch[-1].kv.mod_revision + 1
    finally:
        handle._stream = None
        stream.close()


def _iter_or_idle(stream: Any, handle: WatchHandle) -> Any:
    try:
        yield from stream
    except Unavailable as exc:
        if handle.cancelled:
            return
        if "timed out" in str(exc).lower() and handle.connected:
            raise _IdleStream() from None
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

"""A loopback TCP proxy that injects network faults between a client and etcd.

SIGKILL and SIGSTOP model a dead or hung server; they cannot model the network itself losing
bytes. The interesting case for a client is the one where the request reached etcd and was
applied but the answer never came back: the client cannot tell "applied" from "not applied",
and any code that retries such a write blindly is not linearizable. `drop_responses()` makes
exactly that happen on demand; `blackhole()` is a partition (connections stay open, nothing
moves); `delay()` a slow link; `reset_all()` a middlebox killing every connection with RST.

Threads, not asyncio, so tests need nothing but `with FaultProxy(target) as proxy:`. Every
connection is served by one thread that multiplexes both directions with `select`, re-reading
the mode on every turn (at least every 50 ms), so a mode change applies to already-open
connections immediately. Sockets are non-blocking and every wait is bounded, so `stop()`
never hangs, whatever the peers do.
"""

from __future__ import annotations

import collections
import contextlib
import select
import socket
import struct
import threading
import time
from types import TracebackType

_TICK = 0.05  # longest wait between two looks at the mode / reset / stop flags
_CHUNK = 65536

PASS = "pass"
BLACKHOLE = "blackhole"
DROP_RESPONSES = "drop_responses"


def _abort(sock: socket.socket | None) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN (an abrupt reset)."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class _Connection:
    """One accepted client and its upstream socket, pumped by one thread."""

    def __init__(self, proxy: FaultProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: socket.socket | None = None
        self.reset_requested = threading.Event()
        self.done = threading.Event()
        # Bytes read but not yet written, with the time each chunk may be sent.
        self.to_upstream: collections.deque[tuple[float, bytes]] = collections.deque()
        self.to_client: collections.deque[tuple[float, bytes]] = collections.deque()
        self.client_eof = False
        self.upstream_eof = False
        self.thread = threading.Thread(target=self._run, name="faultproxy-conn", daemon=True)

    def _connect_upstream(self) -> bool:
        host, _, port = self.proxy.target.rpartition(":")
        try:
            up = socket.create_connection((host, int(port)), timeout=1.0)
        except OSError:
            return False
        up.setblocking(False)
        self.upstream = up
        return True

    def _run(self) -> None:
        try:
            self._pump()
        except OSError:
            pass  # a peer reset or vanished: the connection ends abruptly, as it would for real
        finally:
            _abort(self.client)
            _abort(self.upstream)
            self.done.set()
            self.proxy._forget(self)

    def _pump(self) -> None:
        self.client.setblocking(False)
        while not (self.proxy._stopping.is_set() or self.reset_requested.is_set()):
            mode, delay = self.proxy._mode, self.proxy._delay
            if self.upstream is None and mode != BLACKHOLE and not self._connect_upstream():
                return  # upstream down: the client sees a reset, like a refused connection
            if mode == DROP_RESPONSES:
                self.to_client.clear()
            now = time.monotonic()
            readers: list[socket.socket] = []
            writers: list[socket.socket] = []
            wait = _TICK
            if mode != BLACKHOLE:
                assert self.upstream is not None
                if not self.client_eof:
                    readers.append(self.client)
                if not self.upstream_eof:
                    readers.append(self.upstream)
                for sock, queue in (
                    (self.upstream, self.to_upstream),
                    (self.client, self.to_client),
                ):
                    if queue:
                        due = queue[0][0]
                        if due <= now:
                            writers.append(sock)
                        else:
                            wait = min(wait, due - now)
            readable, writable, _ = select.select(readers, writers, [], wait)
            # Re-read: the mode may have changed while we waited, and must apply at once.
            mode, delay = self.proxy._mode, self.proxy._delay
            if mode == BLACKHOLE:
                continue
            now = time.monotonic()
            for sock in readable:
                try:
                    data = sock.recv(_CHUNK)
                except BlockingIOError:
                    continue
                from_client = sock is self.client
                if not data:
                    if from_client:
                        self.client_eof = True
                    else:
                        self.upstream_eof = True
                    continue
                if from_client:
                    self.to_upstream.append((now + delay, data))
                elif mode != DROP_RESPONSES:
                    self.to_client.append((now + delay, data))
            for sock in writable:
                queue = self.to_upstream if sock is self.upstream else self.to_client
                due, data = queue[0]
                try:
                    sent = sock.send(data)
                except BlockingIOError:
                    continue
                if sent == len(data):
                    queue.popleft()
                else:
                    queue[0] = (due, data[sent:])
            # One side closed and everything it sent has been delivered (or dropped): close.
            if (self.client_eof and not self.to_upstream) or (
                self.upstream_eof and not self.to_client
            ):
                return


class FaultProxy:
    """Forwards 127.0.0.1:<port> to `target`, with faults switchable at any time."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self.port: int = int(self._listener.getsockname()[1])
        self.endpoint = f"127.0.0.1:{self.port}"
        self.accepted = 0
        self._mode = PASS
        self._delay = 0.0
        self._lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._stopping = threading.Event()
        self._acceptor = threading.Thread(
            target=self._accept_loop, name="faultproxy-accept", daemon=True
        )

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._listener.listen(128)
        self._listener.settimeout(_TICK)
        self._acceptor.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._acceptor.is_alive():
            self._acceptor.join(2.0)
        with contextlib.suppress(OSError):
            self._listener.close()
        for conn in self._snapshot():
            conn.done.wait(2.0)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- faults --------------------------------------------------------------------------

    def pass_through(self) -> None:
        self._mode, self._delay = PASS, 0.0

    def blackhole(self) -> None:
        self._mode = BLACKHOLE

    def drop_responses(self) -> None:
        self._mode = DROP_RESPONSES

    def delay(self, seconds: float) -> None:
        self._mode, self._delay = PASS, max(0.0, seconds)

    def reset_all(self) -> None:
        """RST every open connection; returns once they are all closed."""
        conns = self._snapshot()
        for conn in conns:
            conn.reset_requested.set()
        for conn in conns:
            conn.done.wait(2.0)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._connections)

    # -- internals -----------------------------------------------------------------------

    def _snapshot(self) -> list[_Connection]:
        with self._lock:
            return list(self._connections)

    def _forget(self, conn: _Connection) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn = _Connection(self, client)
            with self._lock:
                if self._stopping.is_set():
                    _abort(client)
                    return
                self.accepted += 1
                self._connections.add(conn)
            conn.thread.start()

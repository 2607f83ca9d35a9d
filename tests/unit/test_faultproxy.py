"""FaultProxy does what each mode says, against a loopback echo server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.etcdproc import wait_until
from tests.faultproxy import FaultProxy


class EchoServer:
    """Echoes every byte back; counts what it received so tests can see what got through."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.05)
        self.endpoint = f"127.0.0.1:{self._sock.getsockname()[1]}"
        self.received = b""
        self.resets = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(5.0)
        with conn:
            while not self._stop.is_set():
                try:
                    data = conn.recv(4096)
                except ConnectionResetError:
                    with self._lock:
                        self.resets += 1
                    return
                except TimeoutError:
                    continue
                if not data:
                    return
                with self._lock:
                    self.received += data
                try:
                    conn.sendall(data)
                except OSError:
                    return  # the proxy reset us mid-echo (reset_all / stop)

    def close(self) -> None:
        self._stop.set()
        self._sock.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[FaultProxy]:
    with FaultProxy(echo.endpoint) as p:
        yield p


def connect(proxy: FaultProxy, timeout: float = 2.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)
    return sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def test_pass_through_forwards_both_ways(proxy: FaultProxy, echo: EchoServer) -> None:
    assert proxy.endpoint == f"127.0.0.1:{proxy.port}"
    with connect(proxy) as sock:
        sock.sendall(b"hello")
        assert recv_exactly(sock, 5) == b"hello"
    assert proxy.accepted == 1
    assert echo.received == b"hello"


def test_blackhole_holds_existing_and_new_connections(proxy: FaultProxy, echo: EchoServer) -> None:
    with connect(proxy) as old:
        old.sendall(b"a")
        assert recv_exactly(old, 1) == b"a"
        proxy.blackhole()
        old.sendall(b"b")
        old.settimeout(0.3)
        with pytest.raises(TimeoutError):
            old.recv(1)
        with connect(proxy) as new:
            wait_until(lambda: proxy.accepted == 2, timeout=5, what="new connection accepted")
            new.sendall(b"c")
            new.settimeout(0.3)
            with pytest.raises(TimeoutError):
                new.recv(1)
            assert echo.received == b"a"  # nothing reached the server either
            # The partition heals: what was held back flows, as TCP would retransmit it.
            proxy.pass_through()
            new.settimeout(2.0)
            old.settimeout(2.0)
            assert recv_exactly(new, 1) == b"c"
            assert recv_exactly(old, 1) == b"b"


def test_drop_responses_applies_requests_but_loses_answers(
    proxy: FaultProxy, echo: EchoServer
) -> None:
    with connect(proxy) as sock:
        sock.sendall(b"x")
        assert recv_exactly(sock, 1) == b"x"
        proxy.drop_responses()
        sock.sendall(b"lost")
        wait_until(lambda: echo.received == b"xlost", timeout=5, what="request reached server")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(1)
        proxy.pass_through()
        sock.settimeout(2.0)
        sock.sendall(b"y")
        assert recv_exactly(sock, 1) == b"y"  # the dropped answer is gone for good


def test_delay_holds_every_chunk(proxy: FaultProxy, echo: EchoServer) -> None:
    with connect(proxy) as sock:
        proxy.delay(0.2)
        started = time.monotonic()
        sock.sendall(b"slow")
        assert recv_exactly(sock, 4) == b"slow"
        # Delayed on the way there and on the way back: a lower bound, never flaky.
        assert time.monotonic() - started >= 0.4


def test_reset_all_sends_rst_to_both_sides(proxy: FaultProxy, echo: EchoServer) -> None:
    with connect(proxy) as sock:
        sock.sendall(b"z")
        assert recv_exactly(sock, 1) == b"z"
        proxy.reset_all()
        assert proxy.open_connections == 0
        with pytest.raises(ConnectionResetError):
            sock.recv(1)
        wait_until(lambda: echo.resets == 1, timeout=5, what="server side reset")
    with connect(proxy) as again:  # the proxy itself keeps serving
        again.sendall(b"ok")
        assert recv_exactly(again, 2) == b"ok"


def test_upstream_down_resets_the_client() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"  # bound, never listening: refused
    # The reset may even beat connect() back to the caller on a loaded machine.
    with FaultProxy(dead) as proxy, pytest.raises(ConnectionResetError), connect(proxy) as sock:
        sock.sendall(b"q")
        sock.recv(1)


def test_stop_does_not_hang_with_held_connections(echo: EchoServer) -> None:
    proxy = FaultProxy(echo.endpoint).start()
    socks = [connect(proxy) for _ in range(3)]
    for s in socks:
        s.sendall(b"hold")
    proxy.blackhole()
    started = time.monotonic()
    proxy.stop()
    assert time.monotonic() - started < 3.0  # bound, not a speed test
    for s in socks:
        s.close()

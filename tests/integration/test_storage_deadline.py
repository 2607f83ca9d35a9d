"""A call with timeout T returns or raises within T: no attempt and no backoff sleep overruns.

Callers size their own deadlines (a reconcile's budget, a lease renewal before its TTL) on
the storage timeout, so it is a correctness bound, not a speed goal: the slack allowed
here (0.3 s) is for scheduling on a loaded machine, far below the up-to-1 s backoff sleep
that used to run past the deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from controller.storage import (
    Compare,
    EtcdClient,
    EtcdStorageBackend,
    Op,
    Unavailable,
    connect,
)
from tests.etcdproc import EtcdProcess, free_port
from tests.faultproxy import FaultProxy

SLACK = 0.3


@pytest.fixture
def proxy(etcd: EtcdProcess) -> Iterator[FaultProxy]:
    with FaultProxy(etcd.endpoint) as p:
        yield p


def calls(client: EtcdClient) -> dict[str, Callable[[], object]]:
    """One of each kind: retried reads, and writes that may not be re-sent."""
    backend = EtcdStorageBackend(client, "/deadline")
    return {
        "get": lambda: client.get("/deadline/a"),
        "put": lambda: client.put("/deadline/a", b"1"),
        "delete": lambda: client.delete("/deadline/a"),
        "txn": lambda: client.txn([Compare.absent("/deadline/b")], [Op.put("/deadline/b", b"1")]),
        "backend.delete": lambda: backend.delete("b"),
    }


def run_concurrently(fns: dict[str, Callable[[], object]]) -> dict[str, tuple[float, object]]:
    """Each call in its own thread: (seconds it took, what it raised or returned)."""
    out: dict[str, tuple[float, object]] = {}

    def run(name: str, fn: Callable[[], object]) -> None:
        started = time.monotonic()
        try:
            result: object = fn()
        except Exception as exc:
            result = exc
        out[name] = (time.monotonic() - started, result)

    threads = [threading.Thread(target=run, args=item) for item in fns.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


@pytest.mark.parametrize("timeout", [0.5, 2.5])
def test_blackholed_endpoint_raises_unavailable_within_the_timeout(
    proxy: FaultProxy, timeout: float
) -> None:
    client = connect(proxy.endpoint, timeout=timeout)
    client.put("/deadline/a", b"0")  # connections are pooled and open
    proxy.blackhole()
    results = run_concurrently(calls(client))
    for name, (took, result) in results.items():
        assert isinstance(result, Unavailable), f"{name} returned {result!r}"
        assert took <= timeout + SLACK, f"{name} took {took:.2f}s with timeout {timeout}s"
        if name != "get":  # the request left: the write may have been applied
            assert result.maybe_applied, name


def test_refused_endpoints_back_off_but_never_past_the_deadline() -> None:
    # Every attempt is refused at once, so the call is all backoff sleeps (0.05 s doubling,
    # up to 1 s): with 2 s the sleep schedule straddles the deadline and must be cut.
    timeout = 2.0
    client = connect([f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"], timeout=timeout)
    results = run_concurrently(calls(client))
    for name, (took, result) in results.items():
        assert isinstance(result, Unavailable), f"{name} returned {result!r}"
        assert not result.maybe_applied, f"{name}: a refused request never left"
        assert took <= timeout + SLACK, f"{name} took {took:.2f}s with timeout {timeout}s"
        assert took >= timeout - SLACK, f"{name} gave up after {took:.2f}s of {timeout}s"


def test_a_hung_member_then_a_refused_one_still_within_the_deadline(proxy: FaultProxy) -> None:
    timeout = 2.5
    client = connect([proxy.endpoint, f"127.0.0.1:{free_port()}"], timeout=timeout)
    proxy.blackhole()
    results = run_concurrently(calls(client))
    for name, (took, result) in results.items():
        assert isinstance(result, Unavailable), f"{name} returned {result!r}"
        assert took <= timeout + SLACK, f"{name} took {took:.2f}s with timeout {timeout}s"

"""Concurrent histories through the real storage facade, under faults, are linearizable.

Threads run get / put / create / CAS / delete with unique values on a few keys through
`EtcdStorageBackend` (and `EtcdClient.put`) while etcd is killed, paused, partitioned,
loses its answers, or — in a 3-member cluster — the member in use dies or hangs. Every
call's start, end and outcome is recorded; `tests.linearizability` then searches for a
single-register order per key that explains it. A call that raised
`Unavailable(maybe_applied=True)` is an unknown outcome; one that provably never left has
no effect. Anything the facade gets wrong about which is which shows up as a history no
order explains (a retried delete that reports False although it deleted, a put applied
twice, a write reported as never sent that took effect).

`pytest -s` prints each run's figures.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from controller.storage import (
    AlreadyExists,
    EtcdClient,
    EtcdStorageBackend,
    StorageError,
    Unavailable,
    connect,
    decode_document,
    encode_document,
)
from tests.etcdproc import EtcdProcess, start_cluster
from tests.faultproxy import FaultProxy
from tests.linearizability import (
    ANY,
    CAS,
    CONFLICT,
    CREATE,
    DELETE,
    EXISTS,
    GET,
    NO_EFFECT,
    OK,
    PUT,
    UNKNOWN,
    History,
    Operation,
    Verdict,
    check,
)

THREADS = 6
KEYS = 3
MIX = {GET: 3, PUT: 2, CREATE: 2, CAS: 3, DELETE: 2}
BYSTANDER_MIX = {GET: 4, PUT: 1, CREATE: 3, CAS: 2, DELETE: 1}
"""A bystander mostly recreates and looks: what a faulty client's late duplicate would hit."""
RUN_SECONDS = 4.5
"""Workload length; faults happen in the first ~3 s, the rest shows the client recovered."""

Fault = Callable[[], None]
"""Runs the fault schedule while the workers run, and returns with the fault healed."""


@dataclass
class RunResult:
    name: str
    verdict: Verdict
    completed: int
    errors: Counter[str]


def _worker(
    client_id: int,
    backend: EtcdStorageBackend,
    history: History,
    stop: threading.Event,
    errors: Counter[str],
    seed: str,
    keys: int,
    mix: dict[str, int],
) -> None:
    rng = random.Random(seed)
    kinds, weights = list(mix), list(mix.values())
    known: dict[str, tuple[str, int]] = {}  # key -> (value, mod_revision) last seen
    seq = 0
    while not stop.is_set():
        key = f"k{rng.randrange(keys)}"
        kind = rng.choices(kinds, weights=weights)[0]
        if kind == CAS and key not in known:
            kind = GET  # a CAS needs a value read first
        seq += 1
        value = f"c{client_id}-{seq}"
        if kind == GET:
            op = history.begin(client_id, key, GET)
        elif kind == CAS:
            op = history.begin(client_id, key, CAS, value=value, expected=known[key][0])
        elif kind == DELETE:
            op = history.begin(client_id, key, DELETE)
        else:
            op = history.begin(client_id, key, kind, value=value)
        try:
            _apply(backend, op, known, rng)
        except Unavailable as exc:
            known.pop(key, None)
            op.output = UNKNOWN if exc.maybe_applied or kind == GET else NO_EFFECT
            errors["Unavailable(maybe_applied)" if exc.maybe_applied else "Unavailable"] += 1
        except StorageError as exc:  # unexpected: counted, and conservatively unknown
            known.pop(key, None)
            op.output = UNKNOWN
            errors[type(exc).__name__] += 1
        history.finish(op)


def _apply(
    backend: EtcdStorageBackend,
    op: Operation,
    known: dict[str, tuple[str, int]],
    rng: random.Random,
) -> None:
    key, value = op.key, op.value
    doc = {"v": value}
    if op.kind == GET:
        got = backend.get(key)
        op.output = got["v"] if got else None
        if got:
            known[key] = (got["v"], int(got["metadata"]["resourceVersion"]))
        else:
            known.pop(key, None)
    elif op.kind == PUT:
        assert value is not None
        if rng.random() < 0.5:  # the raw client's put, and the backend's unguarded set
            rev = backend.client.put(backend.prefix + key, encode_document(doc)).revision
        else:
            backend.set(key, doc)
            rev = 0
        op.output = OK
        if rev:
            known[key] = (value, rev)
        else:
            known.pop(key, None)
    elif op.kind == CREATE:
        try:
            stored = backend.create(key, doc)
        except AlreadyExists as exc:
            op.output = EXISTS
            if exc.current is not None:
                current = decode_document(exc.current, key)
                op.observed = current["v"]
                known[key] = (current["v"], exc.current.mod_revision)
            else:
                op.observed = ANY
            return
        op.output = OK
        assert value is not None
        known[key] = (value, int(stored["metadata"]["resourceVersion"]))
    elif op.kind == CAS:
        assert value is not None
        result = backend.cas(key, known[key][1], doc)
        if result.succeeded:
            op.output = OK
            known[key] = (value, result.revision)
        else:
            op.output = CONFLICT
            op.observed = result.current["v"] if result.current else None
            if result.current:
                known[key] = (result.current["v"], result.revision)
            else:
                known.pop(key, None)
    else:
        op.output = backend.delete(key)
        known.pop(key, None)


def run_history(
    name: str,
    client: EtcdClient,
    fault: Fault,
    *,
    keys: int = KEYS,
    mix: dict[str, int] | None = None,
    bystander: EtcdClient | None = None,
) -> RunResult:
    """THREADS workers on `keys` keys for RUN_SECONDS while `fault` runs; check the history.

    With `bystander`, half the workers use it instead: another client, unaffected by the
    fault, that keeps reading and writing the same keys while the faulty client's calls
    hang — the client that "created the object in between".
    """
    prefix = f"/history/{name}"
    backend = EtcdStorageBackend(client, prefix)
    other = EtcdStorageBackend(bystander, prefix) if bystander else backend
    history = History()
    stop = threading.Event()
    errors: Counter[str] = Counter()
    workers = [
        threading.Thread(
            target=_worker,
            args=(
                i,
                other if i % 2 else backend,
                history,
                stop,
                errors,
                f"{name}-{i}",
                keys,
                BYSTANDER_MIX if bystander and i % 2 else mix or MIX,
            ),
            name=f"history-{i}",
            daemon=True,
        )
        for i in range(THREADS)
    ]
    started = time.monotonic()
    for w in workers:
        w.start()
    try:
        fault()
    finally:
        stop.wait(max(0.0, RUN_SECONDS - (time.monotonic() - started)))
        stop.set()
        for w in workers:
            w.join(client.timeout + 5)
    assert not any(w.is_alive() for w in workers), "a worker hung past its call deadline"
    verdict = check(history.ops)
    completed = sum(1 for o in history.ops if o.output not in (UNKNOWN, NO_EFFECT))
    result = RunResult(name, verdict, completed, errors)
    print(
        f"\n[history] {name}: {verdict.ops} ops, {verdict.unknown} unknown, "
        f"{verdict.no_effect} no-effect, {completed} completed, "
        f"{'linearizable' if verdict.linearizable else 'NOT LINEARIZABLE'}; "
        f"errors {dict(errors)}; checked in "
        f"{sum(k.explored for k in verdict.keys)} configurations"
    )
    return result


def assert_sound(result: RunResult) -> None:
    assert result.verdict.linearizable, result.verdict.detail
    # The fault really hit in-flight calls, and the client recovered afterwards.
    assert result.verdict.unknown + result.verdict.no_effect > 0, "the fault touched no call"
    assert result.completed > 100


def every(period: float, times: int, action: Callable[[], None]) -> None:
    """`times` × (let the workload run `period` seconds, then `action`)."""
    for _ in range(times):
        time.sleep(period)
        action()


# -- single member ----------------------------------------------------------------------------


def test_history_with_etcd_sigkilled_and_restarted(etcd: EtcdProcess) -> None:
    client = connect(etcd.endpoint, timeout=2.0)

    def fault() -> None:
        every(0.8, 2, etcd.restart)  # SIGKILL, then start on the same data dir

    assert_sound(run_history("sigkill", client, fault))


def test_history_with_etcd_paused_and_resumed(etcd: EtcdProcess) -> None:
    client = connect(etcd.endpoint, timeout=2.0)

    def pause_for_a_while() -> None:
        etcd.pause()
        try:
            time.sleep(1.2)  # the fault's length: requests pile up and apply late
        finally:
            etcd.resume()

    def fault() -> None:
        every(0.5, 2, pause_for_a_while)

    assert_sound(run_history("sigstop", client, fault))


@pytest.fixture
def proxy(etcd: EtcdProcess) -> Iterator[FaultProxy]:
    with FaultProxy(etcd.endpoint) as p:
        yield p


def test_history_with_responses_dropped(etcd: EtcdProcess, proxy: FaultProxy) -> None:
    # Requests apply, answers are lost. Timeout 2 s = two 1 s attempts, and drop windows
    # (0.25 s) more than 1 s apart: a client that wrongly re-sent a write whose answer was
    # lost would get its duplicate through, while a bystander on a healthy connection keeps
    # recreating and reading the keys in between. Delete-heavy: the case that went wrong.
    client = connect(proxy.endpoint, timeout=2.0)
    bystander = connect(etcd.endpoint, timeout=2.0)

    def drop_briefly() -> None:
        proxy.drop_responses()
        time.sleep(0.25)  # the fault's length
        proxy.pass_through()

    def fault() -> None:
        every(1.0, 5, drop_briefly)

    # Two keys, mostly present (the bystander recreates them): a lost delete almost always
    # removed something, so a duplicate of it could not hide.
    mix = {GET: 2, PUT: 1, CREATE: 2, CAS: 1, DELETE: 4}
    assert_sound(run_history("drop-responses", client, fault, keys=2, mix=mix, bystander=bystander))


def test_history_with_partition_then_connection_resets(
    etcd: EtcdProcess, proxy: FaultProxy
) -> None:
    client = connect(proxy.endpoint, timeout=2.0)
    bystander = connect(etcd.endpoint, timeout=2.0)

    def partition_then_heal() -> None:
        proxy.blackhole()  # held requests are delivered late, after their callers gave up
        time.sleep(1.2)  # the fault's length
        proxy.pass_through()

    def fault() -> None:
        every(0.4, 1, partition_then_heal)
        every(0.3, 4, proxy.reset_all)

    assert_sound(run_history("blackhole-then-rst", client, fault, bystander=bystander))


# -- a 3-member cluster -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[EtcdProcess]]:
    members = start_cluster(tmp_path_factory.mktemp("history-cluster"), 3)
    try:
        yield members
    finally:
        for m in members:
            m.stop()


def _member_in_use(client: EtcdClient, members: list[EtcdProcess]) -> EtcdProcess:
    return next(m for m in members if m.endpoint == client.current_endpoint)


def test_history_with_the_member_in_use_killed(cluster: list[EtcdProcess]) -> None:
    client = connect([m.endpoint for m in cluster], timeout=3.0)
    killed: list[EtcdProcess] = []

    def kill_in_use() -> None:
        victim = _member_in_use(client, cluster)
        victim.kill()
        killed.append(victim)

    def fault() -> None:
        every(0.7, 1, kill_in_use)
        every(1.0, 1, lambda: killed[-1].restart())  # back, same data: it catches up

    try:
        assert_sound(run_history("cluster-kill-in-use", client, fault))
        assert killed
    finally:
        for m in cluster:
            if m.proc is None or m.proc.poll() is not None:
                m.start()


def test_history_with_the_member_in_use_paused(cluster: list[EtcdProcess]) -> None:
    client = connect([m.endpoint for m in cluster], timeout=3.0)

    def pause_in_use() -> None:
        victim = _member_in_use(client, cluster)
        victim.pause()
        try:
            time.sleep(1.5)  # the fault's length: longer than one 1.5 s attempt
        finally:
            victim.resume()

    def fault() -> None:
        every(0.5, 1, pause_in_use)

    assert_sound(run_history("cluster-pause-in-use", client, fault))

"""The generic worker loop: results, retries, terminal errors and panics (no etcd needed)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from controller.resources import ObjectKey
from controller.runtime.builder import owner_key
from controller.runtime.controller import Controller, ControllerOptions, NoopReconcileMetrics
from controller.runtime.informer import EventKind, InformerEvent
from controller.runtime.result import ReconcileError, Result, TerminalError
from tests.etcdproc import wait_until


class StubInformer:
    """Just enough of an Informer for the controller: it registers one handler."""

    def __init__(self) -> None:
        self.handler: Any = None

    def add_handler(self, handler: Any) -> None:
        self.handler = handler

    def emit(self, name: str, revision: int = 7, obj: Any = None) -> None:
        self.handler(InformerEvent(EventKind.MODIFIED, f"default/{name}", obj, revision))


class RecordingMetrics(NoopReconcileMetrics):
    def __init__(self) -> None:
        self.results: Counter[str] = Counter()
        self.panics = 0
        self.terminal = 0

    def reconcile_finished(
        self, controller: str, result: str, seconds: float, trace_id: str | None = None
    ) -> None:
        self.results[result] += 1

    def reconcile_panic(self, controller: str) -> None:
        self.panics += 1

    def terminal_error(self, controller: str) -> None:
        self.terminal += 1


def make(reconcile: Any, workers: int = 2) -> tuple[Controller, StubInformer, RecordingMetrics]:
    informer = StubInformer()
    metrics = RecordingMetrics()
    opts = ControllerOptions(workers=workers, base_delay=0.001, max_delay=0.01, metrics=metrics)
    ctl = Controller("test", "Thing", lambda key: reconcile(key.name), opts)
    ctl.watch(informer)  # type: ignore[arg-type]
    ctl.start()
    return ctl, informer, metrics


def test_a_panicking_reconcile_is_retried_and_the_worker_survives() -> None:
    calls: Counter[str] = Counter()

    def reconcile(key: str) -> Result:
        calls[key] += 1
        if key == "bad" and calls[key] < 3:
            raise KeyError("bug")
        return Result.done()

    ctl, informer, metrics = make(reconcile, workers=1)
    informer.emit("bad")
    wait_until(lambda: calls["bad"] == 3, what="two retries after panics")
    informer.emit("good")  # the single worker thread is still alive
    wait_until(lambda: calls["good"] == 1, what="the next key")
    assert metrics.panics == 2
    assert ctl.queue.num_requeues("bad") == 0  # forgotten after success
    assert ctl.stop(5)


def test_transient_errors_back_off_and_terminal_errors_stop() -> None:
    calls: Counter[str] = Counter()
    done = threading.Event()

    def reconcile(key: str) -> Result:
        calls[key] += 1
        if key == "flaky" and calls[key] < 4:
            raise ReconcileError("provider hiccup")
        if key == "hopeless":
            raise TerminalError("invalid spec")
        if key == "flaky":
            done.set()
        return Result.done()

    ctl, informer, metrics = make(reconcile)
    informer.emit("hopeless")
    informer.emit("flaky")
    assert done.wait(10)
    wait_until(lambda: metrics.terminal == 1, what="terminal error recorded")
    assert calls["hopeless"] == 1  # never retried
    assert calls["flaky"] == 4
    assert metrics.results["error"] == 4 and metrics.results["success"] == 1
    assert ctl.stop(5)


def test_requeue_after_comes_back_and_dedup_holds() -> None:
    calls: Counter[str] = Counter()

    def reconcile(key: str) -> Result:
        calls[key] += 1
        return Result.after(0.01) if calls[key] == 1 else Result.done()

    ctl, informer, metrics = make(reconcile)
    informer.emit("k")
    wait_until(lambda: calls["k"] == 2, what="the delayed requeue")
    assert metrics.results["requeue_after"] == 1
    assert ctl.stop(5)


def test_shutdown_lets_the_in_flight_reconcile_finish() -> None:
    started = threading.Event()
    release = threading.Event()
    finished: list[str] = []

    def reconcile(key: str) -> Result:
        started.set()
        release.wait(10)
        finished.append(key)
        return Result.done()

    ctl, informer, _ = make(reconcile, workers=1)
    informer.emit("slow")
    assert started.wait(5)
    informer.emit("queued-but-never-started")
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(ctl.stop(10)))
    t.start()
    release.set()
    t.join(10)
    assert result == [True]
    assert finished == ["slow"]


class _Owner:
    def __init__(self, kind: str, name: str) -> None:
        self.kind, self.name, self.uid = kind, name, "uid-" + name


class _Owned:
    def __init__(self, controller: _Owner | None) -> None:
        self.controller = controller


def test_an_owned_objects_event_enqueues_its_controller_owner_only() -> None:
    seen: list[ObjectKey] = []
    done = threading.Event()
    ctl = Controller("pools", "Pool", lambda key: seen.append(key) or done.set() or Result.done())
    owned = StubInformer()
    ctl.watch(owned, owner_key("Pool"))  # type: ignore[arg-type]
    ctl.start()
    owned.emit("orphan", obj=_Owned(None))
    owned.emit("stranger", obj=_Owned(_Owner("Deployment", "web")))
    owned.emit("pool-a-x1", obj=_Owned(_Owner("Pool", "pool-a")))
    assert done.wait(5)
    assert ctl.stop(5)
    assert seen == [ObjectKey("default", "pool-a")]

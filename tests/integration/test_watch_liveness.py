"""A watch never goes deaf unnoticed: black-holed streams, quiet prefixes, expired tokens, cancel.

Every etcd here runs with etcd's DEFAULT progress-notify interval (10 minutes), as production
etcds do, so no test can pass on progress notifications: liveness must come from the
heartbeat that travels on the watch's own stream.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from controller.storage import EtcdClient, Heartbeat, WatchEvent, connect
from tests.etcdproc import EtcdProcess, wait_until
from tests.faultproxy import FaultProxy

IDLE = 1.5
BEAT = 0.3


def _auth_etcd(tmp_path: Path) -> EtcdProcess:
    """etcd with auth on and simple tokens that expire after 1 s unused."""
    proc = EtcdProcess(
        data_dir=tmp_path / "etcd",
        progress_notify_interval=None,
        extra_args=["--auth-token-ttl", "1"],
    ).start()
    proc.etcdctl("user", "add", "root:rootpw")
    proc.etcdctl("auth", "enable")
    return proc


class Recorder:
    def __init__(self) -> None:
        self.events: list[WatchEvent] = []
        self.restarts: list[str] = []
        self.lock = threading.Lock()

    def on_events(self, batch: list[WatchEvent]) -> None:
        with self.lock:
            self.events.extend(batch)

    def keys(self) -> list[str]:
        with self.lock:
            return [e.kv.key for e in self.events]


def _watch(client: EtcdClient, rec: Recorder, heartbeat: Heartbeat | None) -> object:
    handle = client.watch(
        "/w/",
        rec.on_events,
        prefix=True,
        idle_timeout=IDLE,
        heartbeat_key=heartbeat.key if heartbeat else None,
        name="test watch",
    )
    handle.restart_hooks.append(rec.restarts.append)
    return handle


def test_a_black_holed_stream_is_detected_and_resumed_without_gaps(
    production_etcd: EtcdProcess,
) -> None:
    direct = connect(production_etcd.endpoint, timeout=2.0)
    heartbeat = Heartbeat(direct, "/hb/test", interval=BEAT).start()
    with FaultProxy(production_etcd.endpoint) as proxy:
        watcher = connect(proxy.endpoint, timeout=2.0)
        rec = Recorder()
        handle = _watch(watcher, rec, heartbeat)
        try:
            wait_until(lambda: handle.connected, what="the watch to connect")  # type: ignore[attr-defined]
            direct.put("/w/before", b"1")
            wait_until(lambda: rec.keys() == ["/w/before"], what="the first event")

            proxy.blackhole()  # sockets stay open, no byte moves: the half-open case
            black_holed_at = time.monotonic()
            direct.put("/w/during", b"2")  # written while the watch cannot see it
            wait_until(
                lambda: not handle.connected,  # type: ignore[attr-defined]
                timeout=IDLE * 3 + 2,
                what="the dead stream to be noticed",
            )
            detected_after = time.monotonic() - black_holed_at
            print(f"\ndead stream detected after {detected_after:.2f}s (idle timeout {IDLE}s)")
            assert rec.restarts == []  # nothing was re-established yet: nothing counted

            proxy.pass_through()
            direct.put("/w/after", b"3")
            wait_until(
                lambda: rec.keys() == ["/w/before", "/w/during", "/w/after"],
                timeout=15,
                what="the resumed watch to deliver what it missed, in order, once",
            )
            assert rec.restarts and set(rec.restarts) <= {"silent", "error"}
            assert handle.restarts == len(rec.restarts)  # type: ignore[attr-defined]
        finally:
            handle.cancel()  # type: ignore[attr-defined]
            heartbeat.stop()


def test_a_quiet_prefix_with_a_heartbeat_never_looks_dead(production_etcd: EtcdProcess) -> None:
    client = connect(production_etcd.endpoint, timeout=2.0)
    heartbeat = Heartbeat(client, "/hb/quiet", interval=BEAT).start()
    rec = Recorder()
    handle = _watch(client, rec, heartbeat)
    proofs: list[float] = []
    handle.proof_hooks.append(lambda: proofs.append(time.monotonic()))  # type: ignore[attr-defined]
    try:
        # Many idle timeouts' worth of heartbeats on a prefix nobody writes to.
        wait_until(lambda: heartbeat.beats >= int(6 * IDLE / BEAT), timeout=30, what="beats")
        assert rec.events == []
        assert rec.restarts == [] and handle.restarts == 0  # type: ignore[attr-defined]
        assert handle.connected  # type: ignore[attr-defined]
        assert len(proofs) >= heartbeat.beats // 2  # the heartbeats came back on the stream
    finally:
        handle.cancel()  # type: ignore[attr-defined]
        heartbeat.stop()
    assert client.get("/hb/quiet") is None, "stop() removes the heartbeat key"


def test_without_a_heartbeat_a_quiet_stream_is_reopened_not_trusted(
    production_etcd: EtcdProcess,
) -> None:
    client = connect(production_etcd.endpoint, timeout=2.0)
    rec = Recorder()
    handle = _watch(client, rec, None)
    try:
        wait_until(lambda: "silent" in rec.restarts, timeout=IDLE * 4, what="an idle reopen")
        client.put("/w/k", b"v")
        wait_until(lambda: rec.keys() == ["/w/k"], what="events still delivered")
    finally:
        handle.cancel()  # type: ignore[attr-defined]


def test_cancel_returns_promptly_from_a_blocked_read(production_etcd: EtcdProcess) -> None:
    client = connect(production_etcd.endpoint, timeout=2.0)
    handle = client.watch("/w/", lambda b: None, prefix=True, idle_timeout=60.0)
    wait_until(lambda: handle.connected, what="the watch to connect")
    handle.cancel()  # the thread is parked in recv() with 60 s to go
    assert not handle.alive(), "cancel() must not wait for the read timeout"


def test_no_callback_runs_after_cancel(production_etcd: EtcdProcess) -> None:
    client = connect(production_etcd.endpoint, timeout=2.0)
    rec = Recorder()
    handle = _watch(client, rec, None)
    wait_until(lambda: handle.connected, what="the watch to connect")  # type: ignore[attr-defined]
    handle.cancel()  # type: ignore[attr-defined]
    client.put("/w/late", b"x")
    assert rec.events == []


def test_an_expired_token_on_reconnect_logs_in_again(tmp_path: Path) -> None:
    """etcd cancels a watch created with a dead token in-band (HTTP 200); re-login, resume."""
    proc = _auth_etcd(tmp_path)
    try:
        client = connect([proc.endpoint], username="root", password="rootpw", timeout=3.0)
        rec = Recorder()
        handle = _watch(client, rec, None)
        wait_until(lambda: handle.connected, what="the watch to connect")  # type: ignore[attr-defined]
        # An etcd restart forgets every simple token: the reconnect carries a dead one.
        # (etcdctl's health probe is refused under auth, so wait for a logged-in write.)
        proc.kill()
        proc.spawn()
        writer = connect([proc.endpoint], username="root", password="rootpw", timeout=3.0)
        wait_until(lambda: writer.put("/w/after-restart", b"1"), what="etcd back")
        wait_until(
            lambda: rec.keys() == ["/w/after-restart"],
            timeout=20,
            what="the watch to log in again and deliver the event",
        )
        # The token also expires by TTL (1 s unused) while the stream is idle (1.5 s, no
        # heartbeat here): the idle reopen is cancelled in-band with "invalid auth token".
        wait_until(lambda: "auth" in rec.restarts, timeout=20, what="an in-band auth cancel")
        writer.put("/w/after-expiry", b"2")
        wait_until(
            lambda: rec.keys() == ["/w/after-restart", "/w/after-expiry"],
            timeout=20,
            what="the watch to keep delivering after logging in again",
        )
        handle.cancel()  # type: ignore[attr-defined]
    finally:
        proc.stop()


def test_a_watch_etcd_keeps_refusing_fails_the_health_check(tmp_path: Path) -> None:
    """Cancels are not progress: a stream that can never be re-established is reported dead."""
    from controller.runtime.informer import Informer

    proc = _auth_etcd(tmp_path)
    try:
        client = connect([proc.endpoint], username="root", password="rootpw", timeout=2.0)
        informer: Informer[bytes] = Informer(
            client, "/w/", lambda key, kv: kv.value, name="w", idle_timeout=IDLE
        )
        informer.start()
        try:
            assert informer.wait_synced(10)
            wait_until(lambda: informer.watch_healthy(3 * IDLE)[0], what="a healthy watch")
            # The password changes under the running controller (rotation gone wrong): every
            # reconnect is refused from now on.
            proc.etcdctl(
                "--user=root:rootpw",
                "user",
                "passwd",
                "root",
                "--interactive=false",
                input=b"changed\n",
            )
            wait_until(
                lambda: not informer.watch_healthy(3 * IDLE)[0],
                timeout=30,
                what="the refused watch to be reported unhealthy",
            )
            detail = informer.watch_healthy(3 * IDLE)[1]
            assert "no proof of life" in detail
        finally:
            informer.stop()
    finally:
        proc.stop()

"""`/readyz` of a real `labctl run` while etcd refuses every write, and after it recovers.

Two ways etcd keeps answering reads but takes no write: the backend quota fills (NOSPACE
alarm), or the controller's etcd user has a read-only role. In both the controller must
report not ready, say why and what to do, and be ready again once writes work.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.storage import QuotaExceeded, connect
from tests.e2e.harness import (
    PREFIX,
    ControllerProcess,
    all_in_phase,
    apply,
    worker_manifest,
)
from tests.etcdproc import EtcdProcess, wait_until

FILLER = "/filler/"
QUOTA = 4 * 1024 * 1024
FAST_RETRIES = {"RETRY_BASE_DELAY": "0.2", "RETRY_MAX_DELAY": "1"}


@pytest.fixture
def small_etcd(tmp_path: Path) -> Iterator[EtcdProcess]:
    proc = EtcdProcess(
        data_dir=tmp_path / "etcd", extra_args=["--quota-backend-bytes", str(QUOTA)]
    ).start()
    try:
        yield proc
    finally:
        proc.stop()


def fill_until_nospace(etcd: EtcdProcess) -> None:
    client = connect(etcd.endpoint, timeout=5.0)
    value = b"x" * 100_000
    try:
        for i in range(2 * QUOTA // len(value)):
            try:
                client.put(f"{FILLER}{i}", value)
            except QuotaExceeded:
                return
    finally:
        client.close()
    raise AssertionError("etcd never reported NOSPACE")


def free_space(etcd: EtcdProcess) -> None:
    """What the readiness detail tells an operator to do."""
    etcd.etcdctl("del", "--prefix", FILLER)
    etcd.compact()
    etcd.etcdctl("defrag")
    etcd.etcdctl("alarm", "disarm")


def readyz(ctl: ControllerProcess) -> tuple[int, str]:
    return ctl.get("/readyz?verbose")


def metric(ctl: ControllerProcess, series: str) -> float | None:
    match = re.search(rf"^{re.escape(series)} (\S+)$", ctl.get("/metrics")[1], re.MULTILINE)
    return float(match.group(1)) if match else None


def failed_checks(body: str) -> dict[str, str]:
    return dict(re.findall(r"^\[-\](\S+) failed: (.*)$", body, re.MULTILINE))


def events(ctl: ControllerProcess, prefix: str) -> list[str]:
    # Named lines keep their sentence in `message` (docs/architecture.md §18).
    sentences = [str(line.get("message", line.get("event", ""))) for line in ctl.logs()]
    return [sentence for sentence in sentences if sentence.startswith(prefix)]


def test_nospace_alarm_makes_the_controller_unready_until_space_is_freed(
    small_etcd: EtcdProcess, tmp_path: Path
) -> None:
    apply(small_etcd, [worker_manifest(f"w{i}") for i in range(3)])
    fill_until_nospace(small_etcd)
    ctl = ControllerProcess(small_etcd, tmp_path, env_extra=FAST_RETRIES).start()
    try:
        # The new workers' status writes are refused from the start: never ready.
        def unready_for_nospace() -> dict[str, str] | None:
            status, body = readyz(ctl)
            failed = failed_checks(body)
            return (
                failed if status == 503 and {"etcd-alarms", "etcd-writes"} <= set(failed) else None
            )

        failed = wait_until(unready_for_nospace, timeout=45, what="/readyz failing for NOSPACE")
        assert set(failed) == {"etcd-alarms", "etcd-writes"}  # reads work: etcd is up
        assert re.fullmatch(
            r"etcd NOSPACE alarm active \(member [0-9a-f]+\): the backend quota is full and "
            r"etcd refuses writes; compact and defragment etcd, then disarm the alarm "
            r"\(etcdctl alarm disarm\)",
            failed["etcd-alarms"],
        )
        assert re.match(
            r"writes failing for \d+s \(\d+ consecutive failures\): QuotaExceeded",
            failed["etcd-writes"],
        )
        assert metric(ctl, 'labctl_etcd_alarm_active{alarm="NOSPACE"}') == 1.0
        assert metric(ctl, 'labctl_etcd_alarm_active{alarm="CORRUPT"}') == 0.0
        assert metric(ctl, "labctl_etcd_write_failing") == 1.0

        free_space(small_etcd)
        ctl.wait_ready(timeout=30)
        wait_until(lambda: all_in_phase(small_etcd, "Ready", 3), timeout=30, what="workers Ready")
        assert metric(ctl, 'labctl_etcd_alarm_active{alarm="NOSPACE"}') == 0.0
        assert metric(ctl, "labctl_etcd_write_failing") == 0.0

        # A full quota while the controller runs idle (no write to fail) is seen by the poll.
        fill_until_nospace(small_etcd)
        wait_until(
            lambda: "etcd-alarms" in failed_checks(readyz(ctl)[1]),
            timeout=30,
            what="/readyz failing for NOSPACE again",
        )
    finally:
        ctl.kill()
    # One line per transition, not one per refused write.
    assert len(events(ctl, "etcd writes failing:")) == 1
    assert len(events(ctl, "etcd writes succeed again after")) == 1
    assert len(events(ctl, "etcd alarm raised: etcd NOSPACE alarm active")) == 2
    assert len(events(ctl, "etcd alarms cleared (NOSPACE)")) == 1


def test_read_only_etcd_user_makes_the_controller_unready(
    etcd: EtcdProcess, tmp_path: Path
) -> None:
    apply(etcd, [worker_manifest(f"w{i}") for i in range(2)])
    root = "--user=root:rootpw"
    etcd.etcdctl("user", "add", "root:rootpw")
    etcd.etcdctl("role", "add", "lab-reader")
    etcd.etcdctl("role", "grant-permission", "lab-reader", "--prefix=true", "read", PREFIX + "/")
    etcd.etcdctl("user", "add", "controller:s3cret-pw")
    etcd.etcdctl("user", "grant-role", "controller", "lab-reader")
    etcd.etcdctl("auth", "enable")
    env = {**FAST_RETRIES, "ETCD_USERNAME": "controller", "ETCD_PASSWORD": "s3cret-pw"}
    ctl = ControllerProcess(etcd, tmp_path, env_extra=env).start()
    try:

        def unready() -> dict[str, str] | None:
            status, body = readyz(ctl)
            failed = failed_checks(body)
            return failed if status == 503 and "etcd-writes" in failed else None

        failed = wait_until(unready, timeout=45, what="/readyz failing for denied writes")
        assert set(failed) == {"etcd-writes"}  # etcd answers reads; no alarm
        detail = failed["etcd-writes"]
        assert re.match(
            r"writes failing for \d+s \(\d+ consecutive failures\): PermissionDenied: "
            r"127\.0\.0\.1:\d+: /kv/txn: etcdserver: permission denied: ",
            detail,
        )
        assert detail.endswith(
            f"the etcd user 'controller' cannot write under {PREFIX}: grant its role "
            "readwrite on that prefix"
        )
        assert "s3cret" not in detail
        assert metric(ctl, "labctl_etcd_write_failing") == 1.0

        etcd.etcdctl(
            root,
            "role",
            "grant-permission",
            "lab-reader",
            "--prefix=true",
            "readwrite",
            PREFIX + "/",
        )
        ctl.wait_ready(timeout=30)
        wait_until(
            lambda: metric(ctl, "labctl_etcd_write_failing") == 0.0, timeout=10, what="gauge 0"
        )
    finally:
        ctl.kill()
    assert len(events(ctl, "etcd writes failing:")) == 1
    assert not any("s3cret" in str(line) for line in ctl.logs())

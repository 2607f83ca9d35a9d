"""Shared fixtures: a real etcd on a free loopback port with a temp data dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests.etcdproc import EtcdProcess

# Hypothesis' per-example deadline (200 ms) is a timing assert: on a loaded CI machine it fails
# tests whose logic is right. Properties are checked without it.
settings.register_profile("no-deadline", deadline=None)
settings.load_profile("no-deadline")


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdProcess]:
    """A fresh etcd per test: faults injected by one test never leak into the next."""
    proc = EtcdProcess(data_dir=tmp_path / "etcd").start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def production_etcd(tmp_path: Path) -> Iterator[EtcdProcess]:
    """An etcd with its own default progress-notify interval (10 minutes), as production etcds
    run: a watch gets no help from the server to prove itself alive."""
    proc = EtcdProcess(data_dir=tmp_path / "etcd", progress_notify_interval=None).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def shared_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdProcess]:
    """One etcd for a module of tests that only read/write their own keys (no faults)."""
    proc = EtcdProcess(data_dir=tmp_path_factory.mktemp("etcd-shared") / "etcd").start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def app(etcd: EtcdProcess) -> Iterator[Any]:
    """The controller `labctl run` builds (every kind, sim provider without delay), wired to
    this test's etcd but not running: the test adds to its Manager and runs it."""
    from controller import config
    from controller.app import build_app

    settings = config.load(
        None,
        environ={
            "ETCD_ENDPOINTS": etcd.endpoint,
            "LAB_SIM_DELAY": "0",
            "METRICS_PORT": "0",
            "HEALTH_PORT": "0",
        },
    )
    built = build_app(settings)
    yield built
    built.manager.stop()
    built.client.close()


@pytest.fixture(scope="module")
def ec2_server() -> Iterator[Any]:
    """moto's EC2 in server mode on a free loopback port (tests/ec2server.py), per module."""
    from tests.ec2server import Ec2TestServer

    with Ec2TestServer() as server:
        yield server


@pytest.fixture
def ec2(ec2_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The module's EC2 server with this process's boto3 chain pointed at it; counters and
    faults cleared (its instances stay: tests keep apart by using fresh worker uids)."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in ec2_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    ec2_server.reset_calls()
    return ec2_server

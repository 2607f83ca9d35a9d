"""Shared fixtures: a real etcd on a free loopback port with a temp data dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.etcdproc import EtcdProcess


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdProcess]:
    """A fresh etcd per test: faults injected by one test never leak into the next."""
    proc = EtcdProcess(data_dir=tmp_path / "etcd").start()
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

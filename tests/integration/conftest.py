"""Integration fixtures shared by the quota modules: a client of the module's etcd, a fresh
prefix per test, and the repositories `labctl` writes through (every kind's admission)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from controller.app import repositories
from controller.runtime.repository import RepositorySet
from controller.storage import EtcdClient, connect
from tests.etcdproc import EtcdProcess


@pytest.fixture
def client(shared_etcd: EtcdProcess) -> Iterator[EtcdClient]:
    c = connect(shared_etcd.endpoint)
    yield c
    c.close()


@pytest.fixture
def root() -> str:
    return f"/quota-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def repos(client: EtcdClient, root: str) -> RepositorySet:
    return repositories(client, root)

"""History, rollback and compaction on a real etcd (controller.runtime.history/compaction).

`labctl history`/`rollback` run in-process (`controller.cli.main`) with captured output: the
verbs are what is tested, not the interpreter's start-up.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from controller.app import repositories
from controller.cli import main
from controller.labworker.kind import LABWORKER
from controller.labworker.model import LabWorker
from controller.labworker.phase import Phase
from controller.pool.kind import POOL
from controller.pool.model import LabWorkerPool
from controller.resources import ObjectKey
from controller.runtime.compaction import CompactionMetrics, HistoryCompactor
from controller.runtime.history import RollbackRefused, read_history, rollback
from controller.runtime.repository import Repository
from controller.storage import Compacted, Conflict, EtcdClient, connect
from tests.etcdproc import EtcdProcess


@pytest.fixture
def root() -> str:
    return f"/history-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client(shared_etcd: EtcdProcess) -> Iterator[EtcdClient]:
    c = connect(shared_etcd.endpoint, timeout=5.0)
    yield c
    c.close()


def _pools(client: EtcdClient, root: str) -> Repository[LabWorkerPool]:
    return repositories(client, root).for_kind(POOL)


def _pool(name: str, replicas: int) -> LabWorkerPool:
    return LabWorkerPool.model_validate(
        {
            "apiVersion": "lab.neuroglia.io/v1",
            "kind": "LabWorkerPool",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "replicas": replicas,
                "template": {"metadata": {"labels": {"app": name}}, "spec": {"labTrack": "ccna"}},
            },
        }
    )


def _scale(pools: Repository[LabWorkerPool], name: str, replicas: int) -> int:
    def mutate(p: LabWorkerPool) -> None:
        p.spec.replicas = replicas

    result = pools.update_spec("default", name, mutate)
    assert result.object is not None and result.object.metadata.resource_version is not None
    return result.object.metadata.resource_version


def _labctl(
    capsys: pytest.CaptureFixture[str], etcd: EtcdProcess, root: str, *argv: str
) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--etcd-endpoints", etcd.endpoint, "--etcd-prefix", root])
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def test_history_lists_spec_edits_and_status_writes_and_says_where_compaction_cut_it(
    shared_etcd: EtcdProcess, client: EtcdClient, root: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pools = _pools(client, root)
    created = pools.create(_pool("p", 1)).metadata.resource_version
    revisions = [_scale(pools, "p", replicas) for replicas in (2, 3, 4, 5, 6)]
    status_write = pools.update_status(
        "default", "p", lambda p: setattr(p.status, "ready_replicas", 6)
    ).object
    assert status_write is not None

    code, out, err = _labctl(capsys, shared_etcd, root, "history", "pool", "p")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["REVISION", "VERSION", "TIME", "WRITER", "SUMMARY"]
    rows = [line.split(None, 4) for line in lines[1:-1]]
    assert [int(r[0]) for r in rows] == [
        status_write.metadata.resource_version,
        *reversed(revisions),
        created,
    ]
    assert [r[3] for r in rows] == ["controller", *["user"] * 5, "user"]
    assert rows[0][4] == "status: readyReplicas updated"
    assert rows[1][4] == "spec.replicas: 5 → 6"
    assert rows[5][4] == "spec.replicas: 1 → 2"
    assert rows[6][4] == "created" and rows[6][2].endswith("Z")  # creationTimestamp
    assert lines[-1] == f"history starts at revision {created}: the object was created"

    # --revision: the version current at that revision, as YAML.
    code, out, _ = _labctl(
        capsys, shared_etcd, root, "history", "pool/p", "--revision", str(revisions[1])
    )
    shown = yaml.safe_load(out)
    assert code == 0 and shown["spec"]["replicas"] == 3
    assert shown["metadata"]["resourceVersion"] == str(revisions[1])  # a string on the wire

    client.compact(revisions[2], physical=True)
    found = read_history(client, pools.etcd_key(ObjectKey("default", "p")), LabWorkerPool)
    assert [v.revision for v in found.versions][-1] == revisions[2]
    assert (found.end, found.end_revision) == ("compacted", revisions[2])
    code, out, _ = _labctl(capsys, shared_etcd, root, "history", "pool", "p")
    assert out.splitlines()[-1] == (
        f"history ends at revision {revisions[2]}: etcd compacted everything older "
        "(3 earlier versions of this object lost)"
    )
    code, _, err = _labctl(
        capsys, shared_etcd, root, "history", "pool", "p", "--revision", str(created)
    )
    assert code == 1 and err.startswith("error: revision") and "compacted" in err


def test_the_compaction_point_is_found_between_two_versions(client: EtcdClient, root: str) -> None:
    pools = _pools(client, root)
    pools.create(_pool("q", 1))
    first = _scale(pools, "q", 2)
    between = client.put(f"{root}/unrelated", b"x").revision
    second = _scale(pools, "q", 3)
    client.compact(between, physical=True)
    found = read_history(client, pools.etcd_key(ObjectKey("default", "q")), LabWorkerPool)
    assert [v.revision for v in found.versions] == [second, first]  # first is live at `between`
    assert (found.end, found.end_revision) == ("compacted", between)


def test_an_invalid_version_is_shown_not_fatal_and_phases_read_as_transitions(
    shared_etcd: EtcdProcess, client: EtcdClient, root: str, capsys: pytest.CaptureFixture[str]
) -> None:
    workers = repositories(client, root).for_kind(LABWORKER)
    worker = LabWorker.model_validate(
        {
            "apiVersion": "lab.neuroglia.io/v1",
            "kind": "LabWorker",
            "metadata": {"name": "w", "namespace": "default"},
            "spec": {"labTrack": "ccna"},
        }
    )
    workers.create(worker)

    def provisioning(w: LabWorker) -> None:
        w.status.phase = Phase.PROVISIONING
        w.status.phase_transition_time = "2030-01-02T03:04:05.000Z"

    workers.update_status("default", "w", provisioning)
    key = workers.etcd_key(ObjectKey("default", "w"))
    good = client.get(key)
    assert good is not None
    client.put(key, b'{"apiVersion": "lab.neuroglia.io/v1", "kind": "LabWorker", "spec": 7}')
    client.put(key, b"not json")
    client.put(key, good.value)

    code, out, err = _labctl(capsys, shared_etcd, root, "history", "lw", "w", "-o", "yaml")
    assert code == 0 and "Traceback" not in err
    versions: list[dict[str, Any]] = yaml.safe_load(out)["versions"]
    assert versions[1]["summary"].startswith("unreadable value")
    assert "INVALID" in versions[2]["summary"] and versions[2]["invalid"]
    assert versions[3]["summary"] == "phase: (none) → Provisioning"
    assert versions[3]["writer"] == "controller"
    assert versions[3]["time"] == "2030-01-02T03:04:05.000Z"
    code, out, err = _labctl(
        capsys, shared_etcd, root, "history", "lw", "w", "--revision", str(versions[2]["revision"])
    )
    assert code == 0 and err.startswith("warning:") and yaml.safe_load(out)["spec"] == 7


def test_rollback_restores_the_spec_in_one_write_and_leaves_status_alone(
    shared_etcd: EtcdProcess, client: EtcdClient, root: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pools = _pools(client, root)
    pools.create(_pool("r", 1))
    one = _scale(pools, "r", 4)
    _scale(pools, "r", 9)
    after_status = pools.update_status(
        "default", "r", lambda p: setattr(p.status, "ready_replicas", 2)
    ).object
    assert after_status is not None
    key = ObjectKey("default", "r")

    # A precondition on a resourceVersion that is no longer current: nothing is written.
    with pytest.raises(Conflict):
        rollback(pools, key, one, expected_revision=one)
    assert pools.get_by_key(key) == after_status

    code, out, err = _labctl(
        capsys, shared_etcd, root, "rollback", "pool", "r", "--to-revision", str(one)
    )
    assert (code, err) == (0, "")
    restored = pools.get_by_key(key)
    assert restored is not None and restored.spec.replicas == 4
    assert restored.metadata.generation == after_status.metadata.generation + 1
    assert restored.status == after_status.status
    history = read_history(client, pools.etcd_key(key), LabWorkerPool)
    assert history.versions[0].summary == "spec.replicas: 9 → 4"
    assert history.versions[1].revision == after_status.metadata.resource_version  # ONE write
    assert out.strip().endswith(f"rolled back to the spec of revision {one} (generation 4)")

    created = history.versions[-1].revision
    with pytest.raises(RollbackRefused, match="not a version of this object"):
        rollback(pools, key, created - 1)
    code, _, err = _labctl(
        capsys, shared_etcd, root, "rollback", "pool", "nope", "--to-revision", "5"
    )
    assert (
        code == 1 and err.strip() == 'error: labworkerpools "nope" not found in namespace default'
    )


def test_the_compactor_compacts_to_the_newest_sample_older_than_the_retention(
    client: EtcdClient, root: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    compactor = HistoryCompactor(
        client, retention=100.0, probe_key=root, metrics=CompactionMetrics(registry)
    )
    assert compactor.tick(now=0.0) is None
    kept = client.revision(root)
    client.put(f"{root}/a", b"1")
    assert compactor.tick(now=50.0) is None  # samples `kept`+1, nothing old enough
    client.put(f"{root}/a", b"2")
    assert compactor.tick(now=100.0) == kept  # the sample from t=0
    with pytest.raises(Compacted):
        client.range(f"{root}/a", revision=kept - 1)
    client.range(f"{root}/a", revision=kept)  # still served
    assert registry.get_sample_value("labctl_history_compacted_revision") == kept
    assert (
        registry.get_sample_value("labctl_history_compactions_total", {"result": "compacted"}) == 1
    )

    # etcd compacts on its own, past our next target: said once, nothing done.
    latest = client.put(f"{root}/a", b"3").revision
    client.compact(latest, physical=True)
    with caplog.at_level(logging.INFO, logger="controller.runtime.compaction"):
        assert compactor.tick(now=150.0) is None
        assert compactor.tick(now=160.0) is None
    ahead = [r for r in caplog.records if "already compacted past" in r.getMessage()]
    assert len(ahead) == 1
    assert (
        registry.get_sample_value("labctl_history_compactions_total", {"result": "etcd_ahead"}) == 1
    )

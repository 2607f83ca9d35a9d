"""LabWorkerRepository against a real etcd: generation rules, CAS retry, async twins."""

from __future__ import annotations

import asyncio
import threading

import pytest

from controller.repository import LabWorkerRepository, SpecChangeRefused, split_key
from controller.resources import FINALIZER, LabWorker, Phase
from controller.storage import AlreadyExists, connect
from tests.etcdproc import EtcdProcess


def manifest(name: str, track: str = "ccna", namespace: str = "default") -> LabWorker:
    return LabWorker.model_validate(
        {
            "metadata": {"name": name, "namespace": namespace, "labels": {"tier": "gold"}},
            "spec": {"labTrack": track},
        }
    )


@pytest.fixture
def repo(shared_etcd: EtcdProcess, request: pytest.FixtureRequest) -> LabWorkerRepository:
    return LabWorkerRepository.for_prefix(connect(shared_etcd.endpoint), f"/t-{request.node.name}")


def test_create_sets_identity_and_generation(repo: LabWorkerRepository) -> None:
    w = repo.create(manifest("a"))
    assert w.metadata.uid and w.metadata.creation_timestamp
    assert w.metadata.generation == 1 and w.metadata.resource_version
    with pytest.raises(AlreadyExists):
        repo.create(manifest("a"))
    got = repo.get("default", "a")
    assert got == w


def test_update_spec_bumps_generation_only_when_spec_changes(repo: LabWorkerRepository) -> None:
    repo.create(manifest("g"))

    def relabel(w: LabWorker) -> None:
        w.metadata.labels["tier"] = "silver"

    r = repo.update_spec("default", "g", relabel)
    assert r.written and r.worker is not None and r.worker.metadata.generation == 1

    def retrack(w: LabWorker) -> None:
        w.spec.lab_track = "devnet"

    r = repo.update_spec("default", "g", retrack)
    assert r.worker is not None and r.worker.metadata.generation == 2
    r = repo.update_spec("default", "g", retrack)  # same spec again: no write at all
    assert not r.written


def test_update_status_never_touches_spec(repo: LabWorkerRepository) -> None:
    repo.create(manifest("s"))

    def sneaky(w: LabWorker) -> None:
        w.spec.lab_track = "hijacked"

    with pytest.raises(SpecChangeRefused):
        repo.update_status("default", "s", sneaky)
    stored = repo.get("default", "s")
    assert stored is not None and stored.spec.lab_track == "ccna"


def test_concurrent_status_increments_and_spec_writes_lose_nothing(
    repo: LabWorkerRepository,
) -> None:
    # 17 writers on one key: each write may lose ~16 races, so lift the conflict bound
    # (the controller's default of 10 is for normal traffic, where a requeue is cheaper).
    repo.max_conflict_retries = 10_000
    repo.create(manifest("hot"))
    barrier = threading.Barrier(17)
    errors: list[BaseException] = []

    def bump_status() -> None:
        try:
            barrier.wait()
            for _ in range(50):

                def inc(w: LabWorker) -> None:
                    w.status.hosted_labs += 1

                repo.update_status("default", "hot", inc)
        except BaseException as exc:
            errors.append(exc)

    def bump_spec() -> None:
        try:
            barrier.wait()
            for i in range(20):

                def change(w: LabWorker, i: int = i) -> None:
                    w.spec.instance.tags["rev"] = str(i)

                repo.update_spec("default", "hot", change)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=bump_status) for _ in range(16)]
    threads.append(threading.Thread(target=bump_spec))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    final = repo.get("default", "hot")
    assert final is not None
    assert final.status.hosted_labs == 800
    assert final.spec.instance.tags["rev"] == "19"
    assert final.metadata.generation == 21


def test_mark_for_deletion_respects_finalizers(repo: LabWorkerRepository) -> None:
    repo.create(manifest("plain"))
    assert repo.mark_for_deletion("default", "plain").deleted
    assert repo.get("default", "plain") is None

    repo.create(manifest("guarded"))

    def add_finalizer(w: LabWorker) -> None:
        w.metadata.finalizers.append(FINALIZER)

    repo.update_status("default", "guarded", add_finalizer)
    r = repo.mark_for_deletion("default", "guarded")
    assert not r.deleted and r.worker is not None and r.worker.metadata.deletion_timestamp

    def remove_finalizer(w: LabWorker) -> None:
        w.metadata.finalizers.remove(FINALIZER)

    assert repo.update_status("default", "guarded", remove_finalizer).deleted
    assert repo.get("default", "guarded") is None


def test_finders_and_async_twins(repo: LabWorkerRepository) -> None:
    async def scenario() -> None:
        await repo.save_async(manifest("x1", "ccna"))
        await repo.save_async(manifest("x2", "devnet", namespace="emea"))
        updated = await repo.save_async(manifest("x1", "ccnp"))  # exists: spec update
        assert updated.metadata.generation == 2

        def to_ready(w: LabWorker) -> None:
            w.status.phase = Phase.READY

        await repo.update_status_async("emea", "x2", to_ready)
        assert [w.metadata.name for w in await repo.list_async()] == ["x1", "x2"]
        assert [w.metadata.name for w in await repo.list_async("emea")] == ["x2"]
        assert [w.metadata.name for w in await repo.find_by_phase_async(Phase.READY)] == ["x2"]
        assert [w.metadata.name for w in await repo.find_by_lab_track_async("ccnp")] == ["x1"]
        got = await repo.get_by_id_async("emea/x2")
        assert got is not None and got.status.phase == Phase.READY
        assert await repo.delete_async("emea/x2")
        assert await repo.get_by_id_async("emea/x2") is None
        assert repo.list(selector="tier=gold")[0].metadata.name == "x1"

    asyncio.run(scenario())
    assert split_key("ns/name") == ("ns", "name")


def test_invalid_stored_objects_are_skipped_by_list(
    shared_etcd: EtcdProcess, repo: LabWorkerRepository
) -> None:
    repo.create(manifest("ok"))
    bad = '{"metadata":{"name":"bad","namespace":"default"},"spec":{"instance":{"volumeSizeGb":1}}}'
    shared_etcd.put(repo.backend.prefix + "default/bad", bad)
    assert [w.metadata.name for w in repo.list()] == ["ok"]
    assert shared_etcd.get_raw(repo.backend.prefix + "default/bad") == bad.encode()

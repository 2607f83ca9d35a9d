"""LabWorkerRepository against a real etcd: generation rules, CAS retry, apply, finders."""

from __future__ import annotations

import threading

import pytest

from controller.labworker.model import FINALIZER, LabWorker
from controller.labworker.phase import Phase
from controller.labworker.repository import LabWorkerRepository
from controller.resources import ObjectKey
from controller.runtime.repository import SpecChangeRefused
from controller.storage import AlreadyExists, Conflict, connect
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


def test_a_reapplied_saved_manifest_is_a_new_object_with_a_new_uid(
    repo: LabWorkerRepository,
) -> None:
    """`get -o yaml > f; delete; apply -f f` must not resurrect the uid: it is the provider's
    idempotency token, and EC2 would hand the terminated instance back."""
    first = repo.create(manifest("saved"))
    saved = first.model_copy(deep=True)
    assert repo.delete("default", "saved")
    again = repo.create(saved)
    assert again.metadata.uid and again.metadata.uid != first.metadata.uid


def test_update_spec_bumps_generation_only_when_spec_changes(repo: LabWorkerRepository) -> None:
    repo.create(manifest("g"))

    def relabel(w: LabWorker) -> None:
        w.metadata.labels["tier"] = "silver"

    r = repo.update_spec("default", "g", relabel)
    assert r.written and r.object is not None and r.object.metadata.generation == 1

    def retrack(w: LabWorker) -> None:
        w.spec.lab_track = "devnet"

    r = repo.update_spec("default", "g", retrack)
    assert r.object is not None and r.object.metadata.generation == 2
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
    assert not r.deleted and r.object is not None and r.object.metadata.deletion_timestamp

    def remove_finalizer(w: LabWorker) -> None:
        w.metadata.finalizers.remove(FINALIZER)

    assert repo.update_status("default", "guarded", remove_finalizer).deleted
    assert repo.get("default", "guarded") is None


def test_finders_apply_and_delete(repo: LabWorkerRepository) -> None:
    assert repo.apply(manifest("x1", "ccna"))[1] == "created"
    repo.apply(manifest("x2", "devnet", namespace="emea"))
    updated, outcome = repo.apply(manifest("x1", "ccnp"))  # exists: spec update
    assert outcome == "configured" and updated.metadata.generation == 2
    assert repo.apply(manifest("x1", "ccnp"))[1] == "unchanged"

    def to_ready(w: LabWorker) -> None:
        w.status.phase = Phase.READY

    repo.update_status("emea", "x2", to_ready)
    assert [w.metadata.name for w in repo.list()] == ["x1", "x2"]
    assert [w.metadata.name for w in repo.list("emea")] == ["x2"]
    assert [w.metadata.name for w in repo.find_by_phase(Phase.READY)] == ["x2"]
    assert [w.metadata.name for w in repo.find_by_lab_track("ccnp")] == ["x1"]
    got = repo.get_by_key("emea/x2")
    assert got is not None and got.status.phase == Phase.READY
    assert repo.delete("emea", "x2")
    assert repo.get_by_key(ObjectKey("emea", "x2")) is None
    assert not repo.delete("emea", "x2")
    assert repo.list(selector="tier=gold")[0].metadata.name == "x1"


def test_apply_with_a_stale_resource_version_is_a_conflict(repo: LabWorkerRepository) -> None:
    first = repo.create(manifest("pinned", "ccna"))
    repo.apply(manifest("pinned", "ccnp"))
    stale = manifest("pinned", "devnet")
    stale.metadata.resource_version = first.metadata.resource_version
    with pytest.raises(Conflict):
        repo.apply(stale)
    got = repo.get("default", "pinned")
    assert got is not None and got.spec.lab_track == "ccnp"
    assert repo.delete("default", "pinned")
    with pytest.raises(Conflict):  # the version it names is gone: no silent re-create
        repo.apply(stale)
    assert repo.get("default", "pinned") is None


def test_invalid_stored_objects_are_skipped_by_list(
    shared_etcd: EtcdProcess, repo: LabWorkerRepository
) -> None:
    repo.create(manifest("ok"))
    bad = '{"metadata":{"name":"bad","namespace":"default"},"spec":{"instance":{"volumeSizeGb":1}}}'
    shared_etcd.put(repo.prefix + "default/bad", bad)
    assert [w.metadata.name for w in repo.list()] == ["ok"]
    assert shared_etcd.get_raw(repo.prefix + "default/bad") == bad.encode()

"""LabQuota enforcement inside the worker's own transaction, against a real etcd.

Every write goes through `controller.app.repositories(client, root)` — the RepositorySet
`labctl` uses, with every kind's admission — so these are the guarantees a user gets.
"""

from __future__ import annotations

import json
import threading
import uuid

import pytest

from controller.labworker.kind import LABWORKER
from controller.labworker.model import FINALIZER, LabWorker
from controller.quota.check import LabQuotaExceeded, UsageRecordUnreadable
from controller.quota.enforcement import QuotaAdmission
from controller.quota.kind import LABQUOTA
from controller.quota.model import LabQuota
from controller.quota.usage import usage_key
from controller.resources import ObjectKey
from controller.runtime.repository import AdmissionRefused, Repository, RepositorySet
from controller.storage import Compare, EtcdClient, Op
from tests.etcdproc import EtcdProcess

NS = "team-a"


def worker(
    name: str, instance_type: str = "m5zn.metal", *, finalizers: list[str] | None = None
) -> LabWorker:
    return LabWorker.model_validate(
        {
            "metadata": {"name": name, "namespace": NS, "finalizers": finalizers or []},
            "spec": {"labTrack": "ccna", "instance": {"type": instance_type}},
        }
    )


def quota(name: str, hard: dict[str, int]) -> LabQuota:
    return LabQuota.model_validate(
        {"metadata": {"name": name, "namespace": NS}, "spec": {"hard": hard}}
    )


def usage(client: EtcdClient, root: str, namespace: str = NS) -> dict[str, int] | None:
    kv = client.get(usage_key(root, namespace))
    return None if kv is None else dict(json.loads(kv.value))


def stored_workers(client: EtcdClient, root: str, namespace: str = NS) -> list[str]:
    prefix = f"{LABWORKER.prefix(root)}{namespace}/"
    kvs, _ = client.list_prefix(prefix)
    return sorted(kv.key[len(prefix) :] for kv in kvs)


def race(repo: Repository[LabWorker], types: list[str]) -> tuple[list[str], list[BaseException]]:
    """One thread per entry of `types`, all creating at once (a barrier): distinct workers."""
    barrier = threading.Barrier(len(types))
    created: list[str] = []
    failed: list[BaseException] = []
    lock = threading.Lock()

    def create(i: int, instance_type: str) -> None:
        w = worker(f"w{i:02d}", instance_type)
        barrier.wait()
        try:
            repo.create(w)
        except BaseException as exc:
            with lock:
                failed.append(exc)
        else:
            with lock:
                created.append(w.metadata.name)

    threads = [
        threading.Thread(target=create, args=(i, t), name=f"creator-{i}")
        for i, t in enumerate(types)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    return sorted(created), failed


def test_the_labctl_repositories_carry_the_quota_admission(repos: RepositorySet) -> None:
    plugins = repos.for_kind(LABWORKER).admission
    assert [type(p) for p in plugins] == [QuotaAdmission]


def test_sixteen_concurrent_creates_against_a_limit_of_three_leave_exactly_three(
    client: EtcdClient, root: str, repos: RepositorySet
) -> None:
    repos.for_kind(LABQUOTA).create(quota("team-a", {"labworkers": 3}))

    created, failed = race(repos.for_kind(LABWORKER), ["m5zn.metal"] * 16)

    assert len(created) == 3, failed
    assert len(failed) == 13
    for err in failed:
        assert isinstance(err, LabQuotaExceeded), repr(err)
        assert str(err) == (
            f'labworkers "{err.name}" is forbidden: exceeded quota team-a: labworkers '
            "limited to 3, used 3, requested 1"
        )
    assert stored_workers(client, root) == created
    assert usage(client, root) == {"labworkers": 3, "labworkers/m5zn.metal": 3}


def test_sixteen_concurrent_creates_against_an_instance_type_limit_leave_exactly_three(
    client: EtcdClient, root: str, repos: RepositorySet
) -> None:
    repos.for_kind(LABQUOTA).create(quota("metal", {"labworkers/m5zn.metal": 3}))

    created, failed = race(repos.for_kind(LABWORKER), ["m5zn.metal"] * 16)

    assert len(created) == 3 and len(failed) == 13, failed
    for err in failed:
        assert isinstance(err, LabQuotaExceeded), repr(err)
        assert "exceeded quota metal: labworkers/m5zn.metal limited to 3, used 3, requested 1" in (
            str(err)
        )
    assert stored_workers(client, root) == created
    assert usage(client, root) == {"labworkers": 3, "labworkers/m5zn.metal": 3}


def test_a_type_limit_leaves_other_types_alone_under_the_same_race(
    client: EtcdClient, root: str, repos: RepositorySet
) -> None:
    repos.for_kind(LABQUOTA).create(quota("metal", {"labworkers/m5zn.metal": 3}))
    repo = repos.for_kind(LABWORKER)
    # 11 creates succeed here, so one may lose up to 10 compares before it lands: lift the
    # bound (the default of 10 suits a controller, which requeues instead).
    repo.max_conflict_retries = 100

    created, failed = race(repo, ["m5zn.metal"] * 8 + ["c5.metal"] * 8)

    assert len(created) == 11 and len(failed) == 5, failed
    assert all(isinstance(err, LabQuotaExceeded) for err in failed), failed
    assert usage(client, root) == {
        "labworkers": 11,
        "labworkers/c5.metal": 8,
        "labworkers/m5zn.metal": 3,
    }


def test_a_delete_gives_the_count_back_in_the_same_transaction(
    client: EtcdClient, root: str, repos: RepositorySet
) -> None:
    repos.for_kind(LABQUOTA).create(quota("team-a", {"labworkers": 3}))
    repo = repos.for_kind(LABWORKER)
    for name in ("w1", "w2", "w3"):
        repo.create(worker(name))
    with pytest.raises(LabQuotaExceeded):
        repo.create(worker("w4"))

    assert repo.delete(NS, "w1")
    assert usage(client, root) == {"labworkers": 2, "labworkers/m5zn.metal": 2}
    repo.create(worker("w4"))
    assert usage(client, root) == {"labworkers": 3, "labworkers/m5zn.metal": 3}
    assert not repo.delete(NS, "w1")  # already gone: nothing given back twice
    assert usage(client, root) == {"labworkers": 3, "labworkers/m5zn.metal": 3}


def test_a_finalized_delete_gives_the_count_back_when_the_key_goes(
    client: EtcdClient, root: str, repos: RepositorySet
) -> None:
    repos.for_kind(LABQUOTA).create(quota("team-a", {"labworkers": 2}))
    repo = repos.for_kind(LABWORKER)
    repo.create(worker("w1", finalizers=[FINALIZER]))
    repo.create(worker("w2"))

    marked = repo.mark_for_deletion(NS, "w1")
    assert marked.object is not None and marked.object.metadata.deletion_timestamp
    # Still there (its finalizer holds it), so still counted.
    assert usage(client, root) == {"labworkers": 2, "labworkers/m5zn.metal": 2}
    with pytest.raises(LabQuotaExceeded):
        repo.create(worker("w3"))

    def release(w: LabWorker) -> None:
        w.metadata.finalizers = []

    result = repo.update_status(NS, "w1", release)
    assert result.deleted
    assert usage(client, root) == {"labworkers": 1, "labworkers/m5zn.metal": 1}
    repo.create(worker("w3"))
    assert stored_workers(client, root) == ["w2", "w3"]


def test_raising_a_limit_admits_more_and_lowering_it_keeps_the_existing(
    client: EtcdClient, root: str, repos: RepositorySet
) -> None:
    quotas = repos.for_kind(LABQUOTA)
    repo = repos.for_kind(LABWORKER)
    quotas.create(quota("team-a", {"labworkers": 2}))
    repo.create(worker("w1"))
    repo.create(worker("w2"))
    with pytest.raises(LabQuotaExceeded):
        repo.create(worker("w3"))

    quotas.update_spec(NS, "team-a", lambda q: q.spec.hard.update(labworkers=4))
    repo.create(worker("w3"))
    repo.create(worker("w4"))
    with pytest.raises(LabQuotaExceeded, match="labworkers limited to 4, used 4, requested 1"):
        repo.create(worker("w5"))

    quotas.update_spec(NS, "team-a", lambda q: q.spec.hard.update(labworkers=1))
    with pytest.raises(LabQuotaExceeded, match="labworkers limited to 1, used 4, requested 1"):
        repo.create(worker("w5"))
    assert stored_workers(client, root) == ["w1", "w2", "w3", "w4"]
    # Deleting gives back, but creates stay refused until the use is below the limit.
    repo.delete(NS, "w4")
    with pytest.raises(LabQuotaExceeded, match="limited to 1, used 3"):
        repo.create(worker("w5"))


def test_several_quotas_all_apply(client: EtcdClient, root: str, repos: RepositorySet) -> None:
    quotas = repos.for_kind(LABQUOTA)
    quotas.create(quota("total", {"labworkers": 10}))
    quotas.create(quota("metal", {"labworkers/m5zn.metal": 1, "labworkers": 5}))
    repo = repos.for_kind(LABWORKER)
    repo.create(worker("w1"))
    with pytest.raises(LabQuotaExceeded) as info:
        repo.create(worker("w2"))
    assert str(info.value) == (
        'labworkers "w2" is forbidden: exceeded quota metal: labworkers/m5zn.metal limited '
        "to 1, used 1, requested 1"
    )
    repo.create(worker("w2", "c5.metal"))


def test_an_instance_type_change_moves_the_count_and_is_checked(
    client: EtcdClient, root: str, repos: RepositorySet
) -> None:
    repos.for_kind(LABQUOTA).create(quota("c5", {"labworkers/c5.metal": 1}))
    repo = repos.for_kind(LABWORKER)
    repo.create(worker("w1"))
    repo.create(worker("w2"))
    assert usage(client, root) == {"labworkers": 2, "labworkers/m5zn.metal": 2}

    def to_c5(w: LabWorker) -> None:
        w.spec.instance.type = "c5.metal"

    repo.update_spec(NS, "w1", to_c5)
    assert usage(client, root) == {
        "labworkers": 2,
        "labworkers/c5.metal": 1,
        "labworkers/m5zn.metal": 1,
    }
    with pytest.raises(
        LabQuotaExceeded,
        match=r'labworkers "w2" is forbidden: exceeded quota c5: labworkers/c5.metal limited '
        "to 1, used 1, requested 1",
    ):
        repo.update_spec(NS, "w2", to_c5)
    w2 = repo.get(NS, "w2")
    assert w2 is not None and w2.spec.instance.type == "m5zn.metal"

    # A spec change that keeps the type touches no usage record at all.
    before = client.get(usage_key(root, NS))
    repo.update_spec(NS, "w2", lambda w: setattr(w.spec, "lab_track", "devnet"))
    after = client.get(usage_key(root, NS))
    assert before is not None and after is not None
    assert after.mod_revision == before.mod_revision

    # Deleting the moved worker gives back its *new* type.
    repo.delete(NS, "w1")
    assert usage(client, root) == {"labworkers": 1, "labworkers/m5zn.metal": 1}


def test_usage_is_kept_without_quotas_so_a_new_quota_knows_it_at_once(
    client: EtcdClient, root: str, repos: RepositorySet
) -> None:
    repo = repos.for_kind(LABWORKER)
    repo.create(worker("w1"))
    repo.create(worker("w2", "c5.metal"))
    assert usage(client, root) == {
        "labworkers": 2,
        "labworkers/c5.metal": 1,
        "labworkers/m5zn.metal": 1,
    }
    assert usage(client, root, "elsewhere") is None

    repos.for_kind(LABQUOTA).create(quota("team-a", {"labworkers": 2}))
    with pytest.raises(LabQuotaExceeded, match="limited to 2, used 2"):
        repo.create(worker("w3"))


def test_a_quota_created_after_the_check_is_read_fails_the_transaction(
    client: EtcdClient, root: str, repos: RepositorySet
) -> None:
    """The range compare: the check read no quota, a quota appears before the write lands,
    etcd refuses the write — and the repository's retry then sees the quota."""
    admission = QuotaAdmission(client, root)
    w1 = worker("w1")
    parts = admission.on_create(w1)
    assert parts.compares and parts.ops
    repos.for_kind(LABQUOTA).create(quota("late", {"labworkers": 0}))
    key = LABWORKER.etcd_key(root, ObjectKey(NS, "w1"))
    result = client.txn([Compare.absent(key), *parts.compares], [Op.put(key, b"{}"), *parts.ops])
    assert not result.succeeded
    assert client.get(key) is None and usage(client, root) is None
    with pytest.raises(LabQuotaExceeded, match="exceeded quota late: labworkers limited to 0"):
        repos.for_kind(LABWORKER).create(w1)


def test_a_quota_edited_after_the_check_is_read_fails_the_transaction(
    client: EtcdClient, root: str, repos: RepositorySet
) -> None:
    quotas = repos.for_kind(LABQUOTA)
    quotas.create(quota("team-a", {"labworkers": 5}))
    w1 = worker("w1")
    parts = QuotaAdmission(client, root).on_create(w1)
    quotas.update_spec(NS, "team-a", lambda q: q.spec.hard.update(labworkers=0))
    key = LABWORKER.etcd_key(root, ObjectKey(NS, "w1"))
    result = client.txn([Compare.absent(key), *parts.compares], [Op.put(key, b"{}"), *parts.ops])
    assert not result.succeeded


def test_an_unreadable_usage_record_refuses_creates_and_is_never_reset(
    shared_etcd: EtcdProcess, client: EtcdClient, root: str, repos: RepositorySet
) -> None:
    repo = repos.for_kind(LABWORKER)
    repo.create(worker("w1"))
    repo.create(worker("w2"))
    key = usage_key(root, NS)
    shared_etcd.put(key, b"{garbage")

    with pytest.raises(UsageRecordUnreadable) as info:
        repo.create(worker("w3"))
    text = str(info.value)
    assert isinstance(info.value, AdmissionRefused)
    assert f"the quota usage record {key} is unreadable (not JSON" in text
    assert shared_etcd.get_raw(key) == b"{garbage"

    with pytest.raises(UsageRecordUnreadable):
        repo.update_spec(NS, "w1", lambda w: setattr(w.spec.instance, "type", "c5.metal"))
    # A delete is never held back by bookkeeping; the record stays as it was.
    assert repo.delete(NS, "w1")
    assert shared_etcd.get_raw(key) == b"{garbage"
    assert stored_workers(client, root) == ["w2"]

    # The operator's way out: delete the record; the next write recounts the workers.
    client.delete(key)
    repo.create(worker("w3"))
    assert usage(client, root) == {"labworkers": 2, "labworkers/m5zn.metal": 2}


def test_an_absent_record_is_rebuilt_from_the_workers_already_there(
    shared_etcd: EtcdProcess, client: EtcdClient, root: str, repos: RepositorySet
) -> None:
    """Workers from before quotas (or written with etcdctl) are counted, not ignored."""
    for i, instance_type in enumerate(["m5zn.metal", "m5zn.metal", "c5.metal"]):
        w = worker(f"old{i}", instance_type)
        w.metadata.uid = str(uuid.uuid4())
        shared_etcd.put(
            LABWORKER.etcd_key(root, ObjectKey(NS, w.metadata.name)), w.to_storage_json()
        )
    shared_etcd.put(f"{LABWORKER.prefix(root)}{NS}/junk", b"not a worker")  # not counted
    repos.for_kind(LABQUOTA).create(quota("team-a", {"labworkers": 3}))
    repo = repos.for_kind(LABWORKER)

    with pytest.raises(LabQuotaExceeded, match="limited to 3, used 3, requested 1"):
        repo.create(worker("new"))
    assert usage(client, root) is None  # a refused write writes nothing

    assert repo.delete(NS, "old2")
    assert usage(client, root) == {"labworkers": 2, "labworkers/m5zn.metal": 2}
    repo.create(worker("new"))
    assert usage(client, root) == {"labworkers": 3, "labworkers/m5zn.metal": 3}


def test_reapplying_a_worker_in_a_full_namespace_is_no_error(
    shared_etcd: EtcdProcess, root: str, repos: RepositorySet
) -> None:
    """`labctl apply` creates, and on AlreadyExists updates: a taken name must be reported as
    taken, not as over quota, or re-applying a manifest would fail once the quota is full."""
    repos.for_kind(LABQUOTA).create(quota("team-a", {"labworkers": 1}))
    repo = repos.for_kind(LABWORKER)
    _, outcome = repo.apply(worker("w1"))
    assert outcome == "created"
    assert repo.apply(worker("w1"))[1] == "unchanged"
    changed = worker("w1")
    changed.spec.lab_track = "devnet"
    assert repo.apply(changed)[1] == "configured"
    with pytest.raises(LabQuotaExceeded):
        repo.apply(worker("w2"))
    # The same while the usage record is unreadable: an existing name is still just taken.
    shared_etcd.put(usage_key(root, NS), b"[]")
    assert repo.apply(changed)[1] == "unchanged"
    with pytest.raises(UsageRecordUnreadable):
        repo.apply(worker("w2"))
    assert shared_etcd.get_raw(usage_key(root, NS)) == b"[]"  # never reset

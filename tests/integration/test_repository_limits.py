"""The repository enforces, on every write and every read, the rules the informer applies.

Real etcd. A write that would store something the controller skips is refused before
anything is sent (the key and the revision are unchanged); a read of such a value raises
InvalidObject with the same reason the informer reports for it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from controller.labworker.kind import LABWORKER
from controller.labworker.model import LabWorker
from controller.labworker.repository import LabWorkerRepository
from controller.runtime.informer import InvalidObjectError
from controller.runtime.record import record_decoder
from controller.runtime.repository import InvalidObject, WriteRefused
from controller.storage import CorruptValue, EtcdStorageBackend, connect
from tests.etcdproc import EtcdProcess

MiB = 1024 * 1024


def manifest(name: str = "w", namespace: str = "default") -> LabWorker:
    return LabWorker.model_validate(
        {
            "metadata": {"name": name, "namespace": namespace, "labels": {"tier": "gold"}},
            "spec": {"labTrack": "ccna"},
        }
    )


@pytest.fixture
def repo(shared_etcd: EtcdProcess, request: pytest.FixtureRequest) -> LabWorkerRepository:
    name = request.node.name.replace("[", "-").rstrip("]")
    return LabWorkerRepository.for_prefix(connect(shared_etcd.endpoint), f"/t-{name}")


def keys_under(etcd: EtcdProcess, repo: LabWorkerRepository) -> list[str]:
    return etcd.etcdctl("get", repo.prefix, "--prefix", "--keys-only").split()


def _set(path: str, value: object) -> Callable[[LabWorker], None]:
    """Assign without validation, as any mutate function can (pydantic does not re-validate)."""

    def mutate(w: LabWorker) -> None:
        section, field = path.split(".")
        setattr(getattr(w, section), field, value)

    return mutate


# (mutation of a valid worker, reason, what the message must say)
BROKEN: dict[str, tuple[Callable[[LabWorker], None], str, tuple[str, ...]]] = {
    "1MiB-annotation": (
        _set("metadata.annotations", {"note": "x" * MiB}),
        "too-large",
        ("metadata.annotations.note", f"{MiB} bytes", "262144 bytes"),
    ),
    "many-small-annotations": (
        _set("metadata.annotations", {f"note-{i}": "x" * 1024 for i in range(300)}),
        "too-large",
        ("over the limit of 262144 bytes",),
    ),
    "bad-name": (
        _set("metadata.name", "Bad_Name"),
        "invalid-object",
        ("metadata.name", "DNS-1123 subdomain"),
    ),
    "bad-namespace": (
        _set("metadata.namespace", "EMEA"),
        "invalid-object",
        ("metadata.namespace", "DNS-1123 label"),
    ),
    "bad-label-key": (
        _set("metadata.labels", {"bad key": "v"}),
        "invalid-object",
        ("metadata.labels", "label key 'bad key'"),
    ),
    "bad-label-value": (
        _set("metadata.labels", {"tier": "g" * 64}),
        "invalid-object",
        ("metadata.labels", "64 characters long; at most 63"),
    ),
    "bad-annotation-key": (
        _set("metadata.annotations", {"/note": "v"}),
        "invalid-object",
        ("metadata.annotations", "empty prefix"),
    ),
    "lone-surrogate": (
        _set("metadata.annotations", {"note": "\ud800"}),
        "invalid-object",
        ("metadata.annotations.note", "not valid Unicode"),
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_create_refuses_what_the_informer_would_skip_and_writes_nothing(
    repo: LabWorkerRepository, shared_etcd: EtcdProcess, case: str
) -> None:
    mutate, reason, expected = BROKEN[case]
    worker = manifest()
    mutate(worker)
    before = shared_etcd.revision()

    with pytest.raises(WriteRefused) as refused:
        repo.create(worker)

    assert refused.value.reason == reason
    message = str(refused.value)
    assert message.startswith(f"{worker.metadata.namespaced_name}: refused to store it")
    for text in expected:
        assert text in message, message
    assert len(message) < 600  # never a copy of the 1 MiB value
    assert keys_under(shared_etcd, repo) == []
    assert shared_etcd.revision() == before


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_update_spec_refuses_and_leaves_the_stored_object_alone(
    repo: LabWorkerRepository, shared_etcd: EtcdProcess, case: str
) -> None:
    mutate, reason, expected = BROKEN[case]
    repo.create(manifest())
    key = repo.prefix + "default/w"
    stored, before = shared_etcd.get_raw(key), shared_etcd.revision()

    with pytest.raises(WriteRefused) as refused:
        repo.update_spec("default", "w", mutate)

    # A changed name or namespace is caught as a key mismatch: still refused, nothing written.
    assert refused.value.reason in (reason, "key-mismatch")
    if refused.value.reason == reason:
        assert all(text in str(refused.value) for text in expected), str(refused.value)
    assert shared_etcd.get_raw(key) == stored
    assert shared_etcd.revision() == before


def test_update_status_refuses_oversized_or_invalid_status(
    repo: LabWorkerRepository, shared_etcd: EtcdProcess
) -> None:
    repo.create(manifest())
    key = repo.prefix + "default/w"
    stored, before = shared_etcd.get_raw(key), shared_etcd.revision()

    with pytest.raises(WriteRefused, match=r"status\.errorMessage \(307200 bytes\)") as big:
        repo.update_status("default", "w", _set("status.error_message", "e" * 300 * 1024))
    assert big.value.reason == "too-large"
    with pytest.raises(WriteRefused, match=r"metadata\.finalizers") as bad:
        repo.update_status("default", "w", _set("metadata.finalizers", ["not a finalizer"]))
    assert bad.value.reason == "invalid-object"

    assert shared_etcd.get_raw(key) == stored
    assert shared_etcd.revision() == before
    assert repo.update_status("default", "w", _set("status.error_message", "fine")).written


def test_reads_report_every_value_the_informer_skips_for_the_same_reason(
    repo: LabWorkerRepository, shared_etcd: EtcdProcess
) -> None:
    good = repo.create(manifest("good"))
    prefix = repo.prefix
    copied = shared_etcd.get_raw(prefix + "default/good")
    assert copied is not None
    oversized = manifest("big")
    oversized.metadata.annotations = {"note": "x" * 300 * 1024}
    planted = {
        "default/deep": b"[" * 50_000 + b"]" * 50_000,
        "default/not-json": b"\x00\xff garbage",
        "default/copy": copied,  # metadata says default/good
        "default/big": oversized.to_storage_json(),
        "default/not-a-worker": b'{"metadata": {"name": "not-a-worker"}}',
        "default/a/b": copied,
    }
    for key, value in planted.items():
        shared_etcd.put(prefix + key, value)
    expected = {
        "default/deep": "invalid-json",
        "default/not-json": "invalid-json",
        "default/copy": "key-mismatch",
        "default/big": "too-large",
        "default/not-a-worker": "invalid-object",
        "default/a/b": "bad-key",
    }

    for key, reason in expected.items():
        with pytest.raises(InvalidObject) as invalid:
            repo.get_by_key(key)
        assert invalid.value.reason == reason, (key, invalid.value)
        kv = repo.client.get(prefix + key)
        assert kv is not None
        with pytest.raises(InvalidObjectError) as skipped:
            record_decoder(LABWORKER)(key, kv)
        assert skipped.value.reason.split(":", 1)[0] == reason  # the informer agrees

    reported: list[InvalidObject] = []
    assert repo.list(on_invalid=reported.append) == [good]
    assert {err.key: err.reason for err in reported} == expected
    assert repo.list("default", "tier=gold", on_invalid=lambda _err: None) == [good]

    # Never deleted by name: the copy's name is "good", and deleting it could delete that.
    with pytest.raises(InvalidObject, match="key-mismatch"):
        repo.mark_for_deletion("default", "copy")
    assert shared_etcd.get_raw(prefix + "default/copy") == copied
    assert repo.get("default", "good") == good

    # The generic document backend decodes the same deep value without a RecursionError.
    backend = EtcdStorageBackend(repo.client, prefix)
    with pytest.raises(CorruptValue, match="recursion limit exceeded"):
        backend.get("default/deep")
    assert "default/deep" not in {d["metadata"].get("name") for d in backend.list()}

"""What quota decisions read: a namespace's usage record, its LabQuotas and its workers, all at
ONE etcd revision — and the compares that prove, inside the write's transaction, that nothing
read has changed since.

- The usage record is read first (a linearizable read); its revision R is the snapshot's.
- The LabQuotas and, when needed, the workers are read at R, so the three agree.
- `UsageRead.compare()` pins the record (its `mod_revision`, or absence); `QuotaRead.compare()`
  is one range compare over the namespace's LabQuota prefix: every key in it has
  `mod_revision ≤ R`. That holds exactly while no LabQuota of the namespace was edited or
  created since R (a deleted one only loosens the limits the decision was checked against),
  and it is a single compare however many quotas there are (etcd caps a transaction at 128).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from controller.labworker.kind import LABWORKER
from controller.labworker.model import LabWorker
from controller.quota.kind import LABQUOTA
from controller.quota.model import LabQuota
from controller.quota.usage import Usage, UsageUnreadable, count, usage_key
from controller.resources.limits import InvalidStoredValue, decode_stored
from controller.storage import Compare, EtcdClient, KeyValue
from controller.storage.codec import encode_key, prefix_range_end

log = logging.getLogger("controller.quota")


@dataclass(frozen=True)
class UsageRead:
    """The usage record as of `revision`: its value, or why there is none to use."""

    key: str
    namespace: str
    revision: int
    kv: KeyValue | None
    usage: Usage | None
    """None when the record is absent or unreadable."""
    unreadable: UsageUnreadable | None = None

    def compare(self) -> Compare:
        """The record is still what was read: same `mod_revision`, or still absent."""
        if self.kv is None:
            return Compare.absent(self.key)
        return Compare.mod_revision(self.key, self.kv.mod_revision)


def read_usage(client: EtcdClient, root: str, namespace: str) -> UsageRead:
    """The usage record, by a linearizable read whose revision becomes the snapshot's."""
    key = usage_key(root, namespace)
    result = client.range(key)
    kv = result.kvs[0] if result.kvs else None
    if kv is None:
        return UsageRead(key, namespace, result.revision, None, None)
    try:
        usage = Usage.decode(key, kv.value)
    except UsageUnreadable as exc:
        return UsageRead(key, namespace, result.revision, kv, None, exc)
    return UsageRead(key, namespace, result.revision, kv, usage)


def workers_prefix(root: str, namespace: str) -> str:
    return f"{LABWORKER.prefix(root)}{namespace}/"


def count_workers(client: EtcdClient, root: str, namespace: str, revision: int) -> Usage:
    """The namespace's use as of `revision`, counted from its workers (paged, one revision).

    A value the informer would skip (controller.resources.limits) is not counted: it runs
    no host, and no admitted write could have stored it."""
    prefix = LABWORKER.prefix(root)
    types: list[str] = []
    for page, _ in client.iter_prefix(workers_prefix(root, namespace), revision=revision):
        for kv in page:
            try:
                worker = decode_stored(kv.key[len(prefix) :], kv.value, LabWorker)
            except InvalidStoredValue:
                continue
            types.append(worker.spec.instance.type)
    return count(types)


def count_worker_keys(client: EtcdClient, root: str, namespace: str, revision: int) -> int:
    """How many keys the namespace's worker prefix holds at `revision` (etcd counts them;
    no value is sent): the cheap first look for drift."""
    prefix = workers_prefix(root, namespace)
    return client.range(prefix, prefix_range_end(prefix), revision=revision, count_only=True).count


@dataclass(frozen=True)
class QuotaRead:
    """The namespace's LabQuotas as of `revision` (the valid ones; see `read_quotas`)."""

    prefix: str
    revision: int
    quotas: list[LabQuota]

    def compare(self) -> Compare:
        """No LabQuota of the namespace was created or changed after `revision`."""
        return Compare(
            {
                "key": encode_key(self.prefix),
                "range_end": encode_key(prefix_range_end(self.prefix)),
                "target": "MOD",
                "result": "LESS",
                "mod_revision": str(self.revision + 1),
            }
        )


def read_quotas(client: EtcdClient, root: str, namespace: str, revision: int) -> QuotaRead:
    """Every LabQuota of `namespace` at `revision`. One the informer would skip (garbage
    written with etcdctl) limits nothing: it is logged as an error each time it is met,
    naming its key, and left alone."""
    base = LABQUOTA.prefix(root)
    prefix = f"{base}{namespace}/"
    result = client.range(prefix, prefix_range_end(prefix), revision=revision)
    quotas: list[LabQuota] = []
    for kv in result.kvs:
        try:
            quota = decode_stored(kv.key[len(base) :], kv.value, LabQuota)
        except InvalidStoredValue as exc:
            log.error(
                "LabQuota %s is not a valid LabQuota (%s: %s); it limits nothing until it is "
                "fixed or deleted",
                kv.key[len(base) :],
                exc.reason,
                exc.detail,
            )
            continue
        quota.metadata.resource_version = kv.mod_revision
        quotas.append(quota)
    return QuotaRead(prefix, revision, quotas)

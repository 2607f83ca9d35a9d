"""QuotaAdmission: LabQuotas enforced inside the LabWorker's own write transaction.

Kubernetes checks a ResourceQuota at admission and charges it afterwards, so two creates
racing for the last slot can both pass. Here the check and the charge are one etcd
transaction with the worker's write (controller.runtime.repository, Admission):

- create: read the usage record (revision R) and the namespace's LabQuotas at R; refuse
  (`LabQuotaExceeded`) if one more worker of this instance type would go over a limit;
  otherwise add to the transaction: the record still at its R `mod_revision` (or still
  absent), no LabQuota of the namespace changed or created since R, and the record put
  with the new counts.
- spec update changing `spec.instance.type`: the same, moving one from the old type's key
  to the new one's (checked against the new type's limits).
- delete (the final key delete: `labctl delete`, the controller's finalizer removal):
  give the counts back, comparing the record. Never refused: a quota must never keep a
  worker from going away.

A lost compare means another admitted write in the namespace (or a quota edit) landed
first: the repository calls us again, we read again, and decide on what is now true — so
16 concurrent creates against a limit of 3 leave exactly 3. The record is kept for every
namespace, quotas or not, so a quota created later knows the use at once; an absent record
(a namespace from before quotas, or one an operator deleted) is rebuilt by counting the
namespace's workers at R. An unreadable record refuses creates and type changes
(`UsageRecordUnreadable`) and is never reset; deletes then proceed without touching it.
"""

from __future__ import annotations

import logging

from controller.labworker.kind import LABWORKER
from controller.labworker.model import LabWorker
from controller.quota.check import LabQuotaExceeded, UsageRecordUnreadable, violations
from controller.quota.snapshot import (
    UsageRead,
    count_workers,
    read_quotas,
    read_usage,
)
from controller.quota.usage import Usage, move_delta, worker_delta
from controller.resources import ObjectKey
from controller.runtime.repository import NO_PARTS, TxnParts
from controller.storage import Compare, EtcdClient, Op

log = logging.getLogger("controller.quota.admission")

RESOURCE = LABWORKER.plural
"""How refusals name what was refused (`labworkers "w4" is forbidden: …`)."""


class QuotaAdmission:
    """`Admission[LabWorker]`. Stateless: every call reads what it decides on (the
    repository calls it again after each lost compare), so one instance serves every
    thread and every writer."""

    def __init__(self, client: EtcdClient, root: str) -> None:
        self.client = client
        self.root = root

    def on_create(self, obj: LabWorker) -> TxnParts:
        return self._charge(obj, worker_delta(obj.spec.instance.type), creating=True)

    def on_update(self, old: LabWorker, new: LabWorker) -> TxnParts:
        delta = move_delta(old.spec.instance.type, new.spec.instance.type)
        if not delta:
            return NO_PARTS  # nothing counted changes: no read, no compare, no contention
        return self._charge(new, delta, creating=False)

    def on_delete(self, obj: LabWorker) -> TxnParts:
        meta = obj.metadata
        read = read_usage(self.client, self.root, meta.namespace)
        if read.unreadable is not None:
            log.error(
                "LabWorker %s deleted without giving its count back: the quota usage record "
                "%s is unreadable (%s); the record is left as it is (creates in namespace %s "
                "are refused until it is rewritten by the quota controller or deleted)",
                meta.namespaced_name,
                read.key,
                read.unreadable.detail,
                meta.namespace,
            )
            return TxnParts(compares=[read.compare()])
        current = self._current(read)
        after, below = current.apply(worker_delta(obj.spec.instance.type, -1))
        if below:
            log.warning(
                "quota usage record %s counted no %s for LabWorker %s being deleted; kept at "
                "0 (a worker was written around the repository, e.g. with etcdctl); the quota "
                "controller recounts the namespace",
                read.key,
                " and ".join(below),
                meta.namespaced_name,
            )
        return TxnParts(compares=[read.compare()], ops=[Op.put(read.key, after.encode())])

    # -- internals ---------------------------------------------------------------------------

    def _charge(self, obj: LabWorker, delta: dict[str, int], *, creating: bool) -> TxnParts:
        """Check `delta` against every quota of the namespace and charge it, or refuse."""
        meta = obj.metadata
        read = read_usage(self.client, self.root, meta.namespace)
        if read.unreadable is not None:
            if creating and (exists := self._already_exists(obj, read.revision)):
                return exists
            log.error(
                "LabWorker %s refused: the quota usage record %s is unreadable (%s)",
                meta.namespaced_name,
                read.key,
                read.unreadable.detail,
            )
            raise UsageRecordUnreadable(RESOURCE, meta.name, read.key, read.unreadable.detail)
        current = self._current(read)
        quotas = read_quotas(self.client, self.root, meta.namespace, read.revision)
        found = violations(quotas.quotas, current, delta)
        if found:
            if creating and (exists := self._already_exists(obj, read.revision)):
                return exists
            raise LabQuotaExceeded(RESOURCE, meta.name, found)
        after, below = current.apply(delta)
        if below:  # a type change away from a type the record did not count: drift
            log.warning(
                "quota usage record %s counted no %s for LabWorker %s; kept at 0; the quota "
                "controller recounts the namespace",
                read.key,
                " and ".join(below),
                meta.namespaced_name,
            )
        return TxnParts(
            compares=[read.compare(), quotas.compare()],
            ops=[Op.put(read.key, after.encode())],
        )

    def _already_exists(self, obj: LabWorker, revision: int) -> TxnParts | None:
        """A create of a name that is taken must fail as AlreadyExists, not as a quota
        refusal: `labctl apply` then updates the worker instead (re-applying a manifest in a
        full namespace is no error). Asked only before refusing, so a create that fits
        costs no extra read.

        The parts returned require the worker to still exist, which together with the
        create's own absence compare makes the transaction fail: the repository reports
        AlreadyExists, or — if the worker was deleted meanwhile — calls us again."""
        key = LABWORKER.etcd_key(self.root, ObjectKey(obj.metadata.namespace, obj.metadata.name))
        kvs = self.client.range(key, revision=revision).kvs
        if not kvs:
            return None
        return TxnParts(compares=[Compare.create_revision(key, kvs[0].create_revision)])

    def _current(self, read: UsageRead) -> Usage:
        """The recorded use, or — no record yet — the namespace's workers counted at the
        snapshot's revision (the transaction then requires the record to be still absent,
        which every other admitted write in the namespace would have changed)."""
        if read.usage is not None:
            return read.usage
        counted = count_workers(self.client, self.root, read.namespace, read.revision)
        if counted.total:
            log.info(
                "quota usage record %s is absent; counted %s at revision %d and recording it",
                read.key,
                counted.describe(),
                read.revision,
            )
        return counted

"""The quota controller's reconcile: report a LabQuota's use, and heal its namespace's usage
record when it no longer matches the workers.

Enforcement does not depend on this controller (controller.quota.enforcement checks every
write); it keeps `status` true for people and dashboards, and it repairs the one thing the
admission cannot see: workers written around the repository (etcdctl), which leave the usage
record behind the truth.

Drift is judged from ONE consistent read: the record is read (revision R) and the
namespace's workers are counted at R, so an admitted write can never look like drift — it
changes both in one transaction. Counting decodes every worker, so it is done when it can
matter: when the record is absent or unreadable, when the number of worker keys at R (etcd
counts them, no value is sent) differs from the recorded total, and otherwise at most once
per `recount_interval` per namespace (an instance type changed with etcdctl keeps the total).
A disagreeing record is rewritten by a CAS on the `mod_revision` read at R; a lost CAS means
an admitted write moved it meanwhile, and the key is looked at again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from controller.quota.metrics import NOOP_QUOTA_METRICS, CorrectionReason, QuotaMetrics
from controller.quota.model import LabQuota
from controller.quota.reasons import (
    FULL,
    LIMIT_EXCEEDED,
    LIMIT_REACHED,
    USAGE_CORRECTED,
    WITHIN_LIMITS,
)
from controller.quota.snapshot import (
    UsageRead,
    count_worker_keys,
    count_workers,
    read_usage,
)
from controller.quota.usage import Usage, differences
from controller.resources import ObjectKey, now_rfc3339, set_condition
from controller.resources.conditions import ConditionStatus
from controller.runtime.clock import SYSTEM_CLOCK, Clock
from controller.runtime.recorder import NOOP_RECORDER, Recorder
from controller.runtime.repository import (
    InvalidObject,
    Repository,
    TooManyConflicts,
    WriteRefused,
)
from controller.runtime.result import ReconcileError, Result, TerminalError
from controller.storage import EtcdClient, NotFound, Op, StorageError

log = logging.getLogger("controller.quota.reconciler")

Reader = Callable[[ObjectKey], LabQuota | None]

DEFAULT_RECOUNT_INTERVAL = 300.0
"""Seconds between full recounts of a namespace whose worker total matches its record."""


class UsageMoved(Exception):
    """The usage record changed between the recount's read and its rewrite."""


class QuotaReconciler:
    """Safe for several worker threads: the only state is when each namespace was last
    recounted, kept under a lock."""

    def __init__(
        self,
        client: EtcdClient,
        root: str,
        repository: Repository[LabQuota],
        *,
        reader: Reader | None = None,
        recorder: Recorder = NOOP_RECORDER,
        metrics: QuotaMetrics = NOOP_QUOTA_METRICS,
        clock: Clock = SYSTEM_CLOCK,
        recount_interval: float = DEFAULT_RECOUNT_INTERVAL,
        now: Callable[[], str] = now_rfc3339,
        on_conflicts: Callable[[int], object] | None = None,
    ) -> None:
        """`reader` reads the LabQuota (the manager's informer cache); the repository's
        `get_by_key` by default. `recorder` gets the `UsageCorrected` Events.
        `on_conflicts(n)` is told how many CAS conflicts a status write retried (n > 0)."""
        self.client = client
        self.root = root
        self.repository = repository
        self.reader: Reader = reader if reader is not None else repository.get_by_key
        self.recorder = recorder
        self.metrics = metrics
        self.clock = clock
        self.recount_interval = recount_interval
        self.now = now
        self.on_conflicts = on_conflicts
        self._lock = threading.Lock()
        self._recounted: dict[str, float] = {}

    def __call__(self, key: ObjectKey) -> Result:
        return self.reconcile(key)

    def reconcile(self, key: ObjectKey) -> Result:
        quota = self._read(key)
        if quota is None:
            log.debug("LabQuota %s: gone; nothing to reconcile", key)
            self.metrics.quota_deleted(key.namespace, key.name)
            return Result.done()
        try:
            usage = self.usage(key.namespace, quota)
        except UsageMoved:
            log.debug(
                "LabQuota %s: the usage record of namespace %s changed while it was being "
                "recounted; looking again",
                key,
                key.namespace,
            )
            return Result(requeue=True)
        except StorageError as exc:
            raise ReconcileError(
                f"LabQuota {key}: could not count the use of namespace {key.namespace} "
                f"({exc}); retrying"
            ) from exc
        return self._write_status(key, quota, usage)

    # -- the namespace's use -------------------------------------------------------------

    def usage(self, namespace: str, quota: LabQuota | None = None) -> Usage:
        """The namespace's use, after healing its record if it disagreed with the workers.
        `quota` (when given) is where a correction is recorded as an Event."""
        read = read_usage(self.client, self.root, namespace)
        if read.usage is not None and not self._recount_due(namespace):
            keys = count_worker_keys(self.client, self.root, namespace, read.revision)
            if keys == read.usage.total:
                return read.usage
        counted = count_workers(self.client, self.root, namespace, read.revision)
        if read.usage != counted and (read.kv is not None or counted.total > 0):
            self._rewrite(read, counted, quota)
        self._mark_recounted(namespace)
        return counted

    def _rewrite(self, read: UsageRead, counted: Usage, quota: LabQuota | None) -> None:
        result = self.client.txn([read.compare()], [Op.put(read.key, counted.encode())])
        if not result.succeeded:
            raise UsageMoved()
        reason: CorrectionReason
        if read.unreadable is not None:
            reason = "unreadable"
            what = f"was unreadable ({read.unreadable.detail})"
        elif read.usage is None:
            reason = "absent"
            what = "was absent"
        else:
            reason = "drift"
            what = "disagreed with the workers: " + ", ".join(
                f"{key} recorded {recorded}, counted {found}"
                for key, recorded, found in differences(read.usage, counted)
            )
        message = (
            f"quota usage record {read.key} of namespace {read.namespace} {what} at revision "
            f"{read.revision}; rewrote it from a recount of the namespace's workers "
            f"({counted.describe()})"
        )
        log.warning(
            "%s; workers were probably written around the repository (e.g. with etcdctl); "
            "quotas are enforced against the corrected counts from now on",
            message,
        )
        self.metrics.quota_usage_corrected(reason)
        if quota is not None:
            self.recorder.event(quota, "Warning", USAGE_CORRECTED, message)

    def _recount_due(self, namespace: str) -> bool:
        with self._lock:
            last = self._recounted.get(namespace)
        return last is None or self.clock.now() - last >= self.recount_interval

    def _mark_recounted(self, namespace: str) -> None:
        with self._lock:
            self._recounted[namespace] = self.clock.now()

    # -- status ----------------------------------------------------------------------------

    def _read(self, key: ObjectKey) -> LabQuota | None:
        try:
            return self.reader(key)
        except InvalidObject as exc:
            raise TerminalError(
                f"{exc}; the controller leaves it untouched until it is fixed"
            ) from exc
        except StorageError as exc:
            raise ReconcileError(f"LabQuota {key}: could not read it ({exc}); retrying") from exc

    def _write_status(self, key: ObjectKey, quota: LabQuota, usage: Usage) -> Result:
        now = self.now()

        def observe(fresh: LabQuota) -> None:
            hard = dict(sorted(fresh.spec.hard.items()))
            used = {name: usage.get(name) for name in hard}
            status, reason, message = full_condition(hard, used)
            fresh.status.hard = hard
            fresh.status.used = used
            fresh.status.observed_generation = fresh.metadata.generation
            fresh.status.conditions = set_condition(
                fresh.status.conditions,
                FULL,
                status,
                reason,
                message,
                fresh.metadata.generation,
                now,
            )

        try:
            update = self.repository.update_status(key.namespace, key.name, observe, current=quota)
        except NotFound:
            log.debug("LabQuota %s: deleted while being reconciled", key)
            return Result.done()
        except TooManyConflicts as exc:
            raise ReconcileError(str(exc)) from exc
        except WriteRefused as exc:
            raise TerminalError(
                f"LabQuota {key}: status write refused ({exc}); not retried until it changes"
            ) from exc
        except StorageError as exc:
            raise ReconcileError(
                f"LabQuota {key}: status write failed ({exc}); will retry with backoff"
            ) from exc
        if update.conflicts and self.on_conflicts is not None:
            self.on_conflicts(update.conflicts)
        if update.object is not None:
            status = update.object.status
            self.metrics.quota_usage(key.namespace, key.name, status.used, status.hard)
        if update.written and update.object is not None:
            log.info(
                "LabQuota %s: used %s",
                key,
                ", ".join(
                    f"{name} {used}/{update.object.status.hard[name]}"
                    for name, used in update.object.status.used.items()
                )
                or "(no limits)",
            )
        return Result.done()


def full_condition(hard: dict[str, int], used: dict[str, int]) -> tuple[ConditionStatus, str, str]:
    """The `Full` condition: which limits leave no room, and whether one is over."""
    over = [f"{k}: {used[k]}/{limit}" for k, limit in hard.items() if used[k] > limit]
    at = [f"{k}: {used[k]}/{limit}" for k, limit in hard.items() if used[k] == limit]
    if over:
        return (
            "True",
            LIMIT_EXCEEDED,
            f"over the limit: {', '.join(over)} (the limit is below the current use: existing "
            "workers are kept, new ones are refused until the use is below it)"
            + (f"; at the limit: {', '.join(at)}" if at else ""),
        )
    if at:
        return "True", LIMIT_REACHED, f"at the limit: {', '.join(at)}; new ones are refused"
    return "False", WITHIN_LIMITS, "every limit has room"

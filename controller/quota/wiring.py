"""Wires the LabQuota kind into a Manager: the quota controller (leader-only).

Enforcement is not wired here but in `controller.quota.admission(repositories)`, which the
composition root calls for the Manager's repositories and for `labctl`'s alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from controller.config import Settings
from controller.labworker.kind import LABWORKER
from controller.quota.kind import LABQUOTA
from controller.quota.metrics import quota_metrics_from
from controller.quota.model import LabQuota
from controller.quota.reconciler import QuotaReconciler
from controller.resources import ObjectKey
from controller.runtime.controller import ControllerOptions, EventMapper
from controller.runtime.informer import InformerEvent
from controller.runtime.manager import Manager

CONTROLLER_NAME = "labquota"

QUOTA_WORKERS = 2
"""Quotas are few and each reconcile is a few reads; more threads would only contend."""


def quotas_in_namespace(quota_keys: Iterable[str], namespace: str) -> list[ObjectKey]:
    """The LabQuotas (cache keys `ns/name`) that count the workers of `namespace`."""
    prefix = f"{namespace}/"
    return [ObjectKey.parse(key) for key in quota_keys if key.startswith(prefix)]


def worker_to_quotas(quota_keys: Callable[[], Iterable[str]]) -> EventMapper:
    """Map a LabWorker event to every LabQuota of its namespace: their use may have moved."""

    def mapper(event: InformerEvent[object]) -> Iterable[ObjectKey]:
        return quotas_in_namespace(quota_keys(), ObjectKey.parse(event.key).namespace)

    return mapper


def setup_quotas(manager: Manager, settings: Settings) -> QuotaReconciler:
    metrics = manager.options.reconcile_metrics
    informer = manager.informer(LABQUOTA)

    def read_cached(key: ObjectKey) -> LabQuota | None:
        record = informer.get(str(key))
        return record.decode() if record is not None else None

    reconciler = QuotaReconciler(
        manager.client,
        manager.options.root,
        manager.repository(LABQUOTA),
        reader=read_cached,
        recorder=manager.recorder,
        metrics=quota_metrics_from(metrics),
        on_conflicts=lambda n: metrics.cas_conflict(CONTROLLER_NAME, n),
    )
    (
        manager.controller(CONTROLLER_NAME)
        .for_(LABQUOTA)
        .watches(LABWORKER, worker_to_quotas(informer.cache.keys))
        .with_options(
            ControllerOptions(
                workers=min(QUOTA_WORKERS, settings.reconcile.workers),
                singleton=True,  # bookkeeping over every namespace: the leader's job
                base_delay=settings.reconcile.retry_base_delay,
                max_delay=settings.reconcile.retry_max_delay,
            )
        )
        .complete(reconciler.reconcile)
    )
    return reconciler

"""Wires the LabWorkerPool kind into a Manager: the pool controller and the garbage collector
that deletes the workers of a deleted pool.

(Not named `setup.py`: importing a submodule `setup` would replace the package's `setup`
function with the module.)"""

from __future__ import annotations

from controller.config import Settings
from controller.labworker.kind import LABWORKER
from controller.pool.kind import POOL
from controller.pool.reconciler import PoolReconciler
from controller.runtime.clock import SYSTEM_CLOCK, Clock
from controller.runtime.controller import ControllerOptions
from controller.runtime.gc import GarbageCollector, add_garbage_collector
from controller.runtime.manager import Manager

CONTROLLER_NAME = "labworkerpool"


def setup_pools(
    manager: Manager, settings: Settings, *, clock: Clock = SYSTEM_CLOCK
) -> tuple[PoolReconciler, GarbageCollector]:
    """`clock` times the pool's backoffs (a FakeClock in tests)."""
    reconciler = PoolReconciler(manager, clock=clock)
    (
        manager.controller(CONTROLLER_NAME)
        .for_(POOL)
        .owns(LABWORKER)  # a worker's event requeues the pool that controls it
        .watches(LABWORKER, reconciler.pools_for_orphan)  # ownerless workers to adopt
        .with_options(
            ControllerOptions(
                workers=max(1, min(settings.reconcile.workers, 4)),
                base_delay=settings.reconcile.retry_base_delay,
                max_delay=settings.reconcile.retry_max_delay,
            )
        )
        .complete(reconciler.reconcile)
    )
    collector = add_garbage_collector(manager, LABWORKER, [POOL])
    return reconciler, collector

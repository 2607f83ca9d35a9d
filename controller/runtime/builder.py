"""Builder: how a kind's setup declares a controller (controller-runtime's builder).

    manager.controller("labworkerpool")
        .for_(POOL)                      # reconcile pools; their own events enqueue them
        .owns(LABWORKER)                 # a worker's event enqueues its controller owner
        .watches(QUOTA, keys_for_quota)  # any other kind, mapped by a function
        .complete(reconciler.reconcile)

Informers come from the manager, one per kind, so two controllers watching LabWorkers share
one list/watch loop and one cache.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from controller.resources import Kind, ObjectKey
from controller.runtime.controller import (
    Controller,
    ControllerOptions,
    EventMapper,
    ReconcileFn,
    own_key,
)
from controller.runtime.informer import InformerEvent

if TYPE_CHECKING:
    from controller.runtime.manager import Manager


def owner_key(owner_kind: str) -> EventMapper:
    """`owns`: the key of the event object's controller owner, if it is an `owner_kind`."""

    def mapper(event: InformerEvent[Any]) -> Iterable[ObjectKey]:
        ref = getattr(event.obj, "controller", None)
        if ref is None or ref.kind != owner_kind:
            return ()
        return (ObjectKey(ObjectKey.parse(event.key).namespace, ref.name),)

    return mapper


class Builder:
    def __init__(self, manager: Manager, name: str) -> None:
        self._manager = manager
        self._name = name
        self._for: Kind[Any] | None = None
        self._sources: list[tuple[Kind[Any], EventMapper]] = []
        self._options: ControllerOptions | None = None

    def for_(
        self, kind: Kind[Any], *, predicate: Callable[[InformerEvent[Any]], bool] | None = None
    ) -> Builder:
        """Reconcile `kind`; its own events enqueue it — only those `predicate` accepts, if
        given (controller-runtime's WithPredicates): a controller with nothing to do for most
        objects keeps them out of its queue instead of reconciling them to a no-op."""
        self._for = kind
        if predicate is None:
            self._sources.append((kind, own_key))
        else:
            accept = predicate

            def filtered(event: InformerEvent[Any]) -> Iterable[ObjectKey]:
                return own_key(event) if accept(event) else ()

            self._sources.append((kind, filtered))
        return self

    def owns(self, kind: Kind[Any]) -> Builder:
        if self._for is None:
            raise ValueError("call for_() before owns()")
        self._sources.append((kind, owner_key(self._for.kind)))
        return self

    def watches(self, kind: Kind[Any], mapper: EventMapper) -> Builder:
        self._sources.append((kind, mapper))
        return self

    def with_options(self, options: ControllerOptions) -> Builder:
        self._options = options
        return self

    def complete(self, reconcile: ReconcileFn) -> Controller:
        if self._for is None:
            raise ValueError(f"controller {self._name}: for_(kind) is required")
        manager = self._manager
        m = manager.options
        options = self._options or ControllerOptions(workers=m.controller_workers)
        options = replace(
            options,
            priority_queue=m.priority_queue,
            priority_aging=m.priority_aging,
            metrics=m.reconcile_metrics,
            workqueue_metrics=m.workqueue_metrics,
        )
        controller = Controller(self._name, self._for.kind, reconcile, options)
        for kind, mapper in self._sources:
            controller.watch(manager.informer(kind), mapper)
        m.reconcile_metrics.register_controller(self._name, options.workers)
        manager.add(controller)
        return controller

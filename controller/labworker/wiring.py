"""Wires the LabWorker kind into a Manager: provider plug-in, fencing, reconciler, controller."""

from __future__ import annotations

import logging
from dataclasses import replace

from controller.config import ConfigError, Settings
from controller.labworker import plugins
from controller.labworker.fenced import FencedProvider
from controller.labworker.kind import LABWORKER
from controller.labworker.model import LabWorker
from controller.labworker.policy import DEFAULT_INTERVALS
from controller.labworker.provider import LabProvider
from controller.labworker.reconciler import LabWorkerReconciler
from controller.labworker.traced import TracedProvider
from controller.resources import ObjectKey
from controller.runtime.controller import ControllerOptions
from controller.runtime.manager import Manager
from controller.storage import EtcdClient

log = logging.getLogger("controller.labworker.wiring")

CONTROLLER_NAME = "labworker"


def setup_labworkers(manager: Manager, settings: Settings) -> LabWorkerReconciler:
    metrics = manager.options.reconcile_metrics
    provider = TracedProvider(
        build_provider(settings, manager.client, manager.identity), settings.provider.name
    )
    wrapped: LabProvider = provider
    guard = manager.guard
    if guard is not None:
        # etcd refuses a deposed owner's writes; the local lease bound refuses its cloud calls.
        wrapped = FencedProvider(
            provider,
            guard,
            metrics=metrics,
            controller=CONTROLLER_NAME,
        )
    informer = manager.informer(LABWORKER)

    def read_cached(key: ObjectKey) -> LabWorker | None:
        record = informer.get(str(key))
        return record.decode() if record is not None else None

    reconciler = LabWorkerReconciler(
        manager.repository(LABWORKER),
        wrapped,
        reader=read_cached,
        intervals=replace(DEFAULT_INTERVALS, health_check=settings.provider.health_check_interval),
        metrics=metrics,
        controller=CONTROLLER_NAME,
        recorder=manager.recorder,
    )
    (
        manager.controller(CONTROLLER_NAME)
        .for_(LABWORKER)
        .with_options(
            ControllerOptions(
                workers=settings.reconcile.workers,
                base_delay=settings.reconcile.retry_base_delay,
                max_delay=settings.reconcile.retry_max_delay,
            )
        )
        .complete(reconciler.reconcile)
    )
    return reconciler


def build_provider(settings: Settings, client: EtcdClient, identity: str) -> LabProvider:
    """The LAB_PROVIDER plug-in, built from its settings (flag > environment > default).

    An unknown provider or an unusable setting is a ConfigError naming the variable, which
    `labctl` prints as one `error:` line.
    """
    try:
        plugin = plugins.find(settings.provider.name)
    except plugins.UnknownProvider as exc:
        raise ConfigError(str(exc)) from None
    values = plugins.resolve_settings(plugin, settings.provider.plugin_settings)
    context = plugins.ProviderContext(
        settings=values, client=client, prefix=settings.etcd.prefix, identity=identity
    )
    try:
        provider = plugin.build(context)
    except ValueError as exc:
        raise ConfigError(f"LAB_PROVIDER={plugin.name}: {exc}") from None
    shown = {
        s.env: ("***" if s.secret and values.get(s.env) else values.get(s.env))
        for s in plugin.settings
    }
    log.info("lab provider %s (%s) built for %s", plugin.name, shown, identity)
    return provider

"""Wiring of `labctl run`: settings → observability → etcd → informer → reconciler → manager.

This is the only place that knows every piece; each piece knows only its neighbours.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from controller.config import Settings, etcd_client
from controller.labworker.factory import make_provider
from controller.labworker.policy import DEFAULT_INTERVALS
from controller.labworker.provider import LabProvider
from controller.labworker.reconciler import LabWorkerReconciler
from controller.labworker.records import INDEXERS, LabWorkerRecord, decode_record
from controller.labworker.traced import TracedProvider
from controller.observability import (
    ControllerMetrics,
    HealthRegistry,
    WorkqueueMetrics,
    configure_logging,
    new_registry,
    start_otlp_metrics_export,
)
from controller.observability.server import HttpServer, start_observability_servers
from controller.observability.tracing import configure_tracing, shutdown_tracing
from controller.repository import LabWorkerRepository, workers_prefix
from controller.resources import LabWorker
from controller.runtime.controller import Controller, ControllerOptions
from controller.runtime.informer import Informer, InformerHooks
from controller.runtime.leader import LeaderElector
from controller.runtime.manager import Manager
from controller.storage import EtcdClient

log = logging.getLogger("controller.labworker.app")

CONTROLLER_NAME = "labworker"
RESOURCE = "labworkers"


@dataclass
class App:
    """Everything `labctl run` builds, exposed for tests and embedding."""

    settings: Settings
    client: EtcdClient
    repository: LabWorkerRepository
    provider: LabProvider
    informer: Informer[LabWorkerRecord]
    reconciler: LabWorkerReconciler
    controller: Controller[LabWorkerRecord]
    manager: Manager
    registry: CollectorRegistry
    health: HealthRegistry


def build_app(settings: Settings, *, provider: LabProvider | None = None) -> App:
    registry = new_registry()
    metrics = ControllerMetrics(registry)
    health = HealthRegistry()
    client = etcd_client(settings, pool_size=settings.controller_workers + 4)

    def on_request(method: str, seconds: float, error: BaseException | None) -> None:
        metrics.etcd_request(
            method.strip("/").replace("/", "_"), seconds, type(error).__name__ if error else None
        )

    client.request_hooks.append(on_request)
    repository = LabWorkerRepository.for_prefix(client, settings.etcd_prefix)
    repository.backend.corrupt_hooks.append(
        lambda err: metrics.invalid_object(RESOURCE, "invalid-json")
    )
    if provider is None:
        sim: dict[str, Any] = {}
        if settings.lab_provider == "sim":
            sim = {
                "step_delay": settings.lab_sim_delay,
                "failure_rate": settings.lab_sim_failure_rate,
                "state_file": Path(settings.lab_sim_state_file)
                if settings.lab_sim_state_file
                else None,
            }
        provider = make_provider(settings.lab_provider, **sim)
    provider = TracedProvider(provider, settings.lab_provider)

    hooks = InformerHooks(
        on_invalid=lambda key, reason: metrics.invalid_object(RESOURCE, reason),
        on_relist=lambda reason: metrics.relist(RESOURCE, reason),
        on_watch_restart=lambda reason: metrics.watch_restart(RESOURCE, reason),
        on_cache_size=lambda n: metrics.cache_size(RESOURCE, n),
        on_event=lambda: metrics.informer_event(RESOURCE),
    )
    informer: Informer[LabWorkerRecord] = Informer(
        client,
        workers_prefix(settings.etcd_prefix),
        decode_record,
        indexers=INDEXERS,
        name=RESOURCE,
        resync_period=settings.resync_period,
        idle_timeout=settings.watch_idle_timeout,
        hooks=hooks,
    )

    def read_cached(key: str) -> LabWorker | None:
        record = informer.get(key)
        return record.decode() if record is not None else None

    reconciler = LabWorkerReconciler(
        repository,
        provider,
        reader=read_cached,
        intervals=replace(DEFAULT_INTERVALS, health_check=settings.health_check_interval),
        on_conflicts=lambda n: metrics.cas_conflict(CONTROLLER_NAME, n),
    )
    controller = Controller(
        CONTROLLER_NAME,
        "LabWorker",
        informer,
        reconciler.reconcile,
        ControllerOptions(
            workers=settings.controller_workers,
            base_delay=settings.retry_base_delay,
            max_delay=settings.retry_max_delay,
            metrics=metrics,
            workqueue_metrics=WorkqueueMetrics(registry),
        ),
    )
    metrics.register_controller(CONTROLLER_NAME, settings.controller_workers)
    elector = None
    if settings.leader_elect:
        elector = LeaderElector(
            client,
            f"{settings.etcd_prefix.rstrip('/')}/leader/{CONTROLLER_NAME}-controller",
            identity=settings.leader_election_id,
            ttl=settings.leader_election_ttl,
            on_change=lambda leading: metrics.leader_status(CONTROLLER_NAME, leading),
        )
        repository.status_guards = elector.fence
        metrics.leader_status(CONTROLLER_NAME, False)
    else:
        metrics.leader_status(CONTROLLER_NAME, True)  # the only instance
    manager = Manager(
        client,
        health=health,
        shutdown_grace=settings.shutdown_grace,
        watch_dead_after=settings.watch_dead_after,
        elector=elector,
    )
    manager.add(controller)
    return App(
        settings,
        client,
        repository,
        provider,
        informer,
        reconciler,
        controller,
        manager,
        registry,
        health,
    )


def start_servers(app: App) -> list[HttpServer]:
    s = app.settings
    servers = start_observability_servers(
        app.health,
        app.registry,
        host=s.http_host,
        metrics_port=s.metrics_port,
        health_port=s.health_port,
    )
    for server in servers:
        log.info("serving %s on http://%s:%d", ", ".join(server.paths), s.http_host, server.port)
    return servers


def run_controller(settings: Settings) -> int:
    """`labctl run`: block until SIGTERM/SIGINT, then drain and return the exit code."""
    configure_logging(settings.log_level, settings.log_format)
    configure_tracing()
    log.info("starting lab resource controller", extra={"settings": settings.public()})
    app = build_app(settings)
    servers = start_servers(app)
    metrics_export = start_otlp_metrics_export(app.registry)
    app.manager.install_signal_handlers()
    try:
        return app.manager.run()
    finally:
        for server in servers:
            server.stop()
        if metrics_export is not None:
            metrics_export.shutdown()
        shutdown_tracing()
        app.client.close()

"""Wiring of `labctl run`: settings → observability → etcd → informer → reconciler → manager.

This is the only place that knows every piece; each piece knows only its neighbours.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from prometheus_client import CollectorRegistry

from controller.config import ConfigError, Settings, etcd_client
from controller.labworker import plugins
from controller.labworker.fenced import FencedProvider
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
from controller.runtime.leader import LeaderElector, default_identity
from controller.runtime.manager import Manager
from controller.runtime.write_health import WriteHealth
from controller.storage import EtcdClient, Heartbeat

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
    write_health = WriteHealth(
        client,
        prefix=settings.etcd_prefix,
        username=settings.etcd_username,
        on_failing=metrics.etcd_write_failing,
        on_alarms=metrics.etcd_alarms,
    )
    client.request_hooks.append(write_health.writes.record)
    repository = LabWorkerRepository.for_prefix(client, settings.etcd_prefix)
    repository.backend.corrupt_hooks.append(
        lambda err: metrics.invalid_object(RESOURCE, "invalid-json")
    )
    identity = settings.leader_election_id or default_identity()
    elector = None
    if settings.leader_elect:
        elector = LeaderElector(
            client,
            f"{settings.etcd_prefix.rstrip('/')}/leader/{CONTROLLER_NAME}-controller",
            identity=identity,
            ttl=settings.leader_election_ttl,
            on_change=lambda leading: metrics.leader_status(CONTROLLER_NAME, leading),
        )
        # etcd refuses a deposed leader's writes; the local lease bound refuses its cloud calls.
        repository.status_guards = elector.fence
        metrics.leader_status(CONTROLLER_NAME, False)
    else:
        metrics.leader_status(CONTROLLER_NAME, True)  # the only instance
    if provider is None:
        provider = build_provider(settings, client, identity)
    provider = TracedProvider(provider, settings.lab_provider)
    if elector is not None:
        provider = FencedProvider(
            provider,
            elector,
            on_refused=lambda call: metrics.provider_call_refused(CONTROLLER_NAME, call),
        )
    heartbeat = None
    if settings.watch_heartbeat_interval > 0:
        heartbeat = Heartbeat(
            client,
            f"{settings.etcd_prefix.rstrip('/')}/heartbeats/{identity}",
            interval=settings.watch_heartbeat_interval,
        )

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
        heartbeat_key=heartbeat.key if heartbeat is not None else None,
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
    manager = Manager(
        client,
        health=health,
        shutdown_grace=settings.shutdown_grace,
        watch_dead_after=settings.watch_dead_after,
        elector=elector,
        write_health=write_health,
        heartbeat=heartbeat,
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


def build_provider(settings: Settings, client: EtcdClient, identity: str) -> LabProvider:
    """The LAB_PROVIDER plug-in, built from its settings (flag > environment > default).

    An unknown provider or an unusable setting is a ConfigError naming the variable, which
    `labctl` prints as one `error:` line.
    """
    try:
        plugin = plugins.find(settings.lab_provider)
    except plugins.UnknownProvider as exc:
        raise ConfigError(str(exc)) from None
    values = plugins.resolve_settings(plugin, settings.provider_settings)
    context = plugins.ProviderContext(
        settings=values, client=client, prefix=settings.etcd_prefix, identity=identity
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


def start_servers(app: App) -> list[HttpServer]:
    s = app.settings
    try:
        servers = start_observability_servers(
            app.health,
            app.registry,
            host=s.http_host,
            metrics_port=s.metrics_port,
            health_port=s.health_port,
        )
    except OSError as exc:  # the port is taken, or the address is not this host's
        raise ConfigError(
            f"{exc.strerror or exc}: set METRICS_PORT / HEALTH_PORT (or HTTP_HOST) to a free "
            "port on this host"
        ) from None
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

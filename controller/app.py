"""The composition root of `labctl run`: settings → observability → etcd → Manager → kinds.

This is the only place that knows every piece. Each kind is a package exposing `KINDS` (its
`Kind` descriptions) and `setup(manager, settings)` (its controllers, admission plug-ins,
indexes); adding a kind is adding its package to KIND_PACKAGES (docs/architecture.md,
Runtime). Order matters only in that a kind's setup may use what an earlier one installed
(events installs the recorder every later reconciler records through).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from prometheus_client import CollectorRegistry

from controller import events, labworker, pool, quota
from controller.config import ConfigError, Settings, etcd_client
from controller.observability import (
    ControllerMetrics,
    HealthRegistry,
    WorkqueueMetrics,
    configure_logging,
    new_registry,
    start_otlp_metrics_export,
)
from controller.observability.otlp_env import check_exporter_environment
from controller.observability.server import HttpServer, start_observability_servers
from controller.observability.sharding_metrics import ShardingMetrics
from controller.observability.tracing import configure_tracing, shutdown_tracing
from controller.resources import KindRegistry, ObjectKey
from controller.runtime.compaction import CompactionMetrics, HistoryCompactor
from controller.runtime.controller import Controller
from controller.runtime.leader import LeaderElector, default_identity
from controller.runtime.manager import Manager, ManagerOptions
from controller.runtime.repository import RepositorySet
from controller.runtime.runnable import RunnableFunc
from controller.runtime.sharding import ShardCoordinator
from controller.runtime.write_health import WriteHealth
from controller.storage import EtcdClient, Heartbeat

log = logging.getLogger("controller.app")

KIND_PACKAGES: tuple[ModuleType, ...] = (events, quota, labworker, pool)
"""Every kind this controller serves: one package each (KINDS + setup(manager, settings))."""

LEADER_ELECTION_NAME = "labworker-controller"
"""The election key's last segment (kept from the single-kind controller: a rolling upgrade
must elect against the same key)."""


def register_admission(repositories: RepositorySet) -> RepositorySet:
    """Every kind package's admission plug-ins (quotas) on `repositories`: the controller's
    and `labctl`'s writes are checked alike."""
    for package in KIND_PACKAGES:
        admission = getattr(package, "admission", None)
        if admission is not None:
            admission(repositories)
    return repositories


def repositories(client: EtcdClient, root: str) -> RepositorySet:
    """The repositories `labctl` writes through, with every kind's admission plug-ins."""
    return register_admission(RepositorySet(client, root))


def kind_registry() -> KindRegistry:
    """Every kind `labctl` and the controller know, by every name (`lw`, `pool`, …)."""
    registry = KindRegistry()
    for package in KIND_PACKAGES:
        for kind in package.KINDS:
            registry.register(kind)
    return registry


@dataclass
class App:
    """Everything `labctl run` builds, exposed for tests, benchmarks and embedding."""

    settings: Settings
    client: EtcdClient
    manager: Manager
    registry: CollectorRegistry
    health: HealthRegistry
    metrics: ControllerMetrics

    def controller(self, name: str) -> Controller:
        for runnable in self.manager.runnables:
            if isinstance(runnable, Controller) and runnable.name == name:
                return runnable
        raise KeyError(f"no controller named {name!r}")


def build_app(settings: Settings) -> App:
    registry = new_registry()
    metrics = ControllerMetrics(registry)
    health = HealthRegistry()
    client = etcd_client(settings, pool_size=settings.reconcile.workers * 2 + 4)

    def on_request(method: str, seconds: float, error: BaseException | None) -> None:
        metrics.etcd_request(
            method.strip("/").replace("/", "_"), seconds, type(error).__name__ if error else None
        )

    client.request_hooks.append(on_request)
    write_health = WriteHealth(
        client,
        prefix=settings.etcd.prefix,
        username=settings.etcd.username,
        metrics=metrics,
    )
    client.request_hooks.append(write_health.writes.record)
    identity = settings.leader.id or default_identity()
    elector = None
    if settings.leader.elect or settings.sharding.enabled:  # sharding: singletons need a leader
        elector = LeaderElector(
            client,
            f"{settings.etcd.prefix.rstrip('/')}/leader/{LEADER_ELECTION_NAME}",
            identity=identity,
            ttl=settings.leader.ttl,
            metrics=metrics,
        )
    sharder = None
    if settings.sharding.enabled:
        sharder = ShardCoordinator(
            client,
            settings.etcd.prefix,
            identity,
            count=settings.sharding.count,
            ttl=settings.sharding.lease_ttl,
            drain_timeout=settings.shutdown.grace,
            metrics=ShardingMetrics(registry),
        )
    heartbeat = None
    if settings.watch.heartbeat_interval > 0:
        heartbeat = Heartbeat(
            client,
            f"{settings.etcd.prefix.rstrip('/')}/heartbeats/{identity}",
            interval=settings.watch.heartbeat_interval,
        )
    manager = Manager(
        client,
        ManagerOptions(
            root=settings.etcd.prefix,
            shutdown_grace=settings.shutdown.grace,
            watch_dead_after=settings.watch.dead_after,
            resync_period=settings.reconcile.resync_period,
            watch_idle_timeout=settings.watch.idle_timeout,
            controller_workers=settings.reconcile.workers,
            priority_queue=settings.queue.priority,
            priority_aging=settings.queue.aging,
            informer_metrics=metrics,
            reconcile_metrics=metrics,
            workqueue_metrics=WorkqueueMetrics(registry),
        ),
        health=health,
        elector=elector,
        write_health=write_health,
        heartbeat=heartbeat,
        sharder=sharder,
    )
    manager.identity = identity
    register_admission(manager.repositories)
    for package in KIND_PACKAGES:
        package.setup(manager, settings)
    if settings.history.retention > 0:
        manager.add(
            HistoryCompactor(
                client,
                retention=settings.history.retention,
                probe_key=settings.etcd.prefix,
                metrics=CompactionMetrics(registry),
            )
        )
    _record_reconciles_for_tests(manager)
    return App(settings, client, manager, registry, health, metrics)


RECONCILE_LOG_ENV = "LABCTL_TEST_RECONCILE_LOG"
"""Test-only: a file every reconcile appends `{controller, key, replica, start, end}` to, so a
test can check across processes that no key was reconciled by two replicas at once."""


def _record_reconciles_for_tests(manager: Manager) -> None:
    path = os.environ.get(RECONCILE_LOG_ENV)
    if not path:
        return
    lock = threading.Lock()
    replica = manager.identity

    def observe(controller: str, key: ObjectKey, start_ns: int, end_ns: int) -> None:
        line = json.dumps(
            {
                "controller": controller,
                "key": str(key),
                "replica": replica,
                "start": start_ns,
                "end": end_ns,
            }
        )
        with lock, open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")  # one write of one line: O_APPEND keeps lines whole

    for runnable in manager.runnables:
        if isinstance(runnable, Controller):
            runnable.observers.append(observe)


def add_servers(app: App) -> list[HttpServer]:
    """Bind the metrics and health ports now (a taken port is a ConfigError at start) and
    let the manager serve them from the start of its run."""
    s = app.settings
    try:
        servers = start_observability_servers(
            app.health,
            app.registry,
            host=s.http.host,
            metrics_port=s.http.metrics_port,
            health_port=s.http.health_port,
        )
    except OSError as exc:  # the port is taken, or the address is not this host's
        raise ConfigError(
            f"{exc.strerror or exc}: set METRICS_PORT / HEALTH_PORT (or HTTP_HOST) to a free "
            "port on this host"
        ) from None
    for server in servers:
        log.info("serving %s on http://%s:%d", ", ".join(server.paths), s.http.host, server.port)
        app.manager.add(RunnableFunc(f"http-{server.port}", server.start, server.stop))
    return servers


def add_metrics_export(app: App) -> None:
    """OTLP metrics push, when configured, as a runnable flushed at shutdown."""
    bridge: list[Any] = []

    def start() -> None:
        exporter = start_otlp_metrics_export(app.registry)
        if exporter is not None:
            bridge.append(exporter)

    def stop() -> None:
        for exporter in bridge:
            exporter.shutdown()

    app.manager.add(RunnableFunc("otlp-metrics", start, stop))


def run_controller(settings: Settings) -> int:
    """`labctl run`: block until SIGTERM/SIGINT, then drain and return the exit code."""
    try:
        check_exporter_environment(os.environ)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    configure_logging(settings.log.level, settings.log.format)
    configure_tracing()
    log.info("starting lab resource controller", extra={"settings": settings.public()})
    app = build_app(settings)
    servers = add_servers(app)
    add_metrics_export(app)
    app.manager.install_signal_handlers()
    try:
        return app.manager.run()
    finally:
        for server in servers:
            server.stop()
        shutdown_tracing()
        app.client.close()

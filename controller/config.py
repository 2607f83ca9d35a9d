"""Settings of `labctl run`: every one is an environment variable AND a flag (flag wins).

One table drives the argparse flags, the `--help` text (which names each variable), the
parsing and the validation, so the three can never drift apart.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from controller.storage import EtcdClient, connect, parse_endpoints


@dataclass(frozen=True)
class Setting:
    env: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str
    secret: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.env.lower().replace("_", "-")

    @property
    def attr(self) -> str:
        return self.env.lower()


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise ValueError(f"must not be negative, got {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"not a TCP port: {value}")
    return value


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {text!r}")
        return text.lower()

    return parse


SETTINGS: tuple[Setting, ...] = (
    Setting("ETCD_ENDPOINTS", "127.0.0.1:2379", "etcd endpoints, comma-separated host:port"),
    Setting("ETCD_HOST", None, "single etcd host (used with ETCD_PORT if ETCD_ENDPOINTS unset)"),
    Setting("ETCD_PORT", None, "single etcd port (with ETCD_HOST)"),
    Setting("ETCD_PREFIX", "/lab-resource-manager", "key prefix of all controller data"),
    Setting("ETCD_CA_CERT", None, "CA bundle to verify etcd's certificate (enables TLS)"),
    Setting("ETCD_CERT", None, "client certificate for mutual TLS"),
    Setting("ETCD_KEY", None, "client private key for mutual TLS", secret=True),
    Setting("ETCD_USERNAME", None, "etcd user (auth)"),
    Setting("ETCD_PASSWORD", None, "etcd password (auth)", secret=True),
    Setting("ETCD_TIMEOUT", 5.0, "deadline of one etcd call, seconds", _non_negative_float),
    Setting("CONTROLLER_WORKERS", 8, "concurrent reconciles", _positive_int),
    Setting("LAB_PROVIDER", "sim", "lab host provider (sim)"),
    Setting(
        "LAB_SIM_DELAY", 2.0, "sim: seconds per simulated cloud/host step", _non_negative_float
    ),
    Setting("LAB_SIM_FAILURE_RATE", 0.0, "sim: probability of a transient provider error", float),
    Setting("LAB_SIM_STATE_FILE", None, "sim: persist the simulated cloud to this JSON file"),
    Setting("LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR"),
    Setting(
        "LOG_FORMAT",
        "auto",
        "json, console, or auto (json unless a TTY)",
        _choice("json", "console", "auto"),
    ),
    Setting("METRICS_PORT", 8080, "Prometheus /metrics port (0 = ephemeral)", _port),
    Setting("HEALTH_PORT", 8081, "/healthz and /readyz port (0 = ephemeral)", _port),
    Setting("HTTP_HOST", "0.0.0.0", "address the metrics/health servers bind"),
    Setting(
        "RESYNC_PERIOD", 600.0, "re-queue every worker this often, seconds", _non_negative_float
    ),
    Setting(
        "WATCH_IDLE_TIMEOUT",
        10.0,
        "reconnect a watch silent this long, seconds",
        _non_negative_float,
    ),
    Setting(
        "WATCH_DEAD_AFTER",
        60.0,
        "/healthz fails when the watch is down this long, seconds",
        _non_negative_float,
    ),
    Setting(
        "RETRY_BASE_DELAY",
        0.1,
        "first retry delay of a failing worker, seconds",
        _non_negative_float,
    ),
    Setting("RETRY_MAX_DELAY", 300.0, "retry delay cap, seconds", _non_negative_float),
    Setting(
        "HEALTH_CHECK_INTERVAL",
        30.0,
        "re-check Ready/Active hosts this often, seconds",
        _non_negative_float,
    ),
    Setting(
        "LEADER_ELECT",
        False,
        "run as one of several replicas: only the elected leader reconciles, and its "
        "writes are fenced",
        _bool,
    ),
    Setting("LEADER_ELECTION_TTL", 15, "leader lease TTL, seconds (failover time)", _positive_int),
    Setting("LEADER_ELECTION_ID", None, "this replica's identity (default hostname-pid)"),
    Setting(
        "SHUTDOWN_GRACE",
        25.0,
        "SIGTERM: wait this long for in-flight reconciles, seconds",
        _non_negative_float,
    ),
)


@dataclass(frozen=True)
class Settings:
    etcd_endpoints: list[str]
    etcd_prefix: str
    etcd_ca_cert: str | None
    etcd_cert: str | None
    etcd_key: str | None
    etcd_username: str | None
    etcd_password: str | None
    etcd_timeout: float
    controller_workers: int
    lab_provider: str
    lab_sim_delay: float
    lab_sim_failure_rate: float
    lab_sim_state_file: str | None
    log_level: str
    log_format: str
    metrics_port: int
    health_port: int
    http_host: str
    resync_period: float
    watch_idle_timeout: float
    watch_dead_after: float
    retry_base_delay: float
    retry_max_delay: float
    health_check_interval: float
    leader_elect: bool
    leader_election_ttl: int
    leader_election_id: str | None
    shutdown_grace: float

    def __repr__(self) -> str:  # secrets never reach a log line through repr
        shown = {
            f.name: (
                "***" if _is_secret(f.name) and getattr(self, f.name) else getattr(self, f.name)
            )
            for f in fields(self)
        }
        return f"Settings({shown})"

    def public(self) -> dict[str, Any]:
        """For the start-up log line: everything but secrets."""
        return {f.name: getattr(self, f.name) for f in fields(self) if not _is_secret(f.name)}


def _is_secret(attr: str) -> bool:
    return any(s.attr == attr and s.secret for s in SETTINGS)


class ConfigError(ValueError):
    """A setting has an unusable value; the message names the variable and the flag."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for s in SETTINGS:
        default = "" if s.default is None else f" (default {s.default})"
        parser.add_argument(
            s.flag, dest=s.attr, default=None, help=f"{s.help}; env {s.env}{default}"
        )


def load(
    args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Resolve flag > environment > default, then validate every value."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    for s in SETTINGS:
        text = getattr(args, s.attr, None) if args is not None else None
        if text is None:
            text = env.get(s.env) or None
        if text is None:
            raw[s.attr] = s.default
            continue
        try:
            raw[s.attr] = s.parse(text)
        except ValueError as exc:
            shown = "***" if s.secret else repr(text)
            raise ConfigError(f"{s.env} / {s.flag} = {shown}: {exc}") from None
    endpoints_text = raw.pop("etcd_endpoints")
    host, port = raw.pop("etcd_host"), raw.pop("etcd_port")
    explicit = (getattr(args, "etcd_endpoints", None) if args else None) or env.get(
        "ETCD_ENDPOINTS"
    )
    if not explicit and host:
        endpoints_text = f"{host}:{port or 2379}"
    try:
        raw["etcd_endpoints"] = parse_endpoints(endpoints_text)
    except ValueError as exc:
        raise ConfigError(f"ETCD_ENDPOINTS / --etcd-endpoints: {exc}") from None
    if bool(raw["etcd_cert"]) != bool(raw["etcd_key"]):
        raise ConfigError("ETCD_CERT and ETCD_KEY must be given together (mutual TLS)")
    if bool(raw["etcd_username"]) != bool(raw["etcd_password"]):
        raise ConfigError("ETCD_USERNAME and ETCD_PASSWORD must be given together")
    return Settings(**raw)


def env_names() -> Sequence[str]:
    return [s.env for s in SETTINGS]


def etcd_client(settings: Settings, *, pool_size: int = 32) -> EtcdClient:
    """The etcd client these settings describe (nothing is contacted yet)."""
    return connect(
        settings.etcd_endpoints,
        ca_cert=settings.etcd_ca_cert,
        cert=settings.etcd_cert,
        key=settings.etcd_key,
        username=settings.etcd_username,
        password=settings.etcd_password,
        timeout=settings.etcd_timeout,
        pool_size=pool_size,
    )

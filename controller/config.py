"""Settings of `labctl run`: every one is an environment variable AND a flag (flag wins).

One table drives the argparse flags, the `--help` text (which names each variable), the
parsing and the validation, so the three can never drift apart.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from controller.labworker import plugins
from controller.labworker.plugins import ProviderSetting
from controller.storage import (
    Credentials,
    EndpointAddress,
    EtcdClient,
    InvalidSettings,
    connect,
    parse_endpoints,
)


@dataclass(frozen=True)
class Setting:
    env: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str
    secret: bool = False

    @property
    def flag(self) -> str:
        return plugins.flag_of(self.env)

    @property
    def attr(self) -> str:
        return plugins.attr_of(self.env)


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


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"must be greater than 0, got {text}")
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
    Setting(
        "ETCD_ENDPOINTS",
        "127.0.0.1:2379",
        "etcd endpoints, comma-separated: https://host:port (TLS, verified against "
        "ETCD_CA_CERT or the system trust store), http://host:port (plaintext), or host:port "
        "(TLS if ETCD_CA_CERT or ETCD_CERT is set); IPv6 as [::1]:2379",
    ),
    Setting("ETCD_HOST", None, "single etcd host (used with ETCD_PORT if ETCD_ENDPOINTS unset)"),
    Setting("ETCD_PORT", None, "single etcd port (with ETCD_HOST)"),
    Setting("ETCD_PREFIX", "/lab-resource-manager", "key prefix of all controller data"),
    Setting("ETCD_CA_CERT", None, "CA bundle to verify etcd's certificate (enables TLS)"),
    Setting("ETCD_CERT", None, "client certificate for mutual TLS"),
    Setting("ETCD_KEY", None, "client private key for mutual TLS", secret=True),
    Setting("ETCD_USERNAME", None, "etcd user (auth)"),
    Setting(
        "ETCD_PASSWORD",
        None,
        "etcd password (auth); as a flag it is visible in ps: give it in ETCD_PASSWORD_FILE "
        "(or this environment variable) instead",
        secret=True,
    ),
    Setting(
        "ETCD_PASSWORD_FILE",
        None,
        "file holding the etcd password, read at start (a trailing newline is dropped); the "
        "preferred way to give it",
    ),
    Setting("ETCD_TIMEOUT", 5.0, "deadline of one etcd call, seconds", _non_negative_float),
    Setting("CONTROLLER_WORKERS", 8, "concurrent reconciles", _positive_int),
    Setting(
        "LAB_PROVIDER",
        "sim",
        "lab host provider plug-in: sim, aws, or any `labctl providers` lists",
    ),
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
        6.0,
        "a watch stream that proves nothing (no event, heartbeat or progress notification) "
        "this long is treated as dead and reopened, seconds",
        _positive_float,
    ),
    Setting(
        "WATCH_HEARTBEAT_INTERVAL",
        2.0,
        "rewrite this replica's heartbeat key this often so quiet watches prove they are "
        "alive, seconds (0 = off: then set etcd's "
        "--experimental-watch-progress-notify-interval below WATCH_IDLE_TIMEOUT)",
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
        "SHARDING",
        False,
        "run as one of several ACTIVE replicas: the key space is cut into SHARD_COUNT shards "
        "spread over live replicas; each replica reconciles only the shards it holds a lease "
        "on, and its writes and provider calls are fenced per shard (singletons such as "
        "compaction still use leader election)",
        _bool,
    ),
    Setting(
        "SHARD_COUNT",
        256,
        "virtual shards of the key space (every replica must use the same number)",
        _positive_int,
    ),
    Setting(
        "SHARD_LEASE_TTL",
        15,
        "TTL of a replica's membership and shard leases, seconds (a dead replica's shards "
        "move within it)",
        _positive_int,
    ),
    Setting(
        "PRIORITY_QUEUE",
        True,
        "reconcile changes written by users (new objects, spec edits, deletions) before the "
        "background work of initial lists, relists and resyncs",
        _bool,
    ),
    Setting(
        "PRIORITY_AGING",
        5.0,
        "background work waiting longer than this is served alongside user changes (no "
        "starvation), seconds",
        _positive_float,
    ),
    Setting(
        "HISTORY_RETENTION",
        86400.0,
        "the leader compacts etcd to keep this much object history (labctl history), seconds; "
        "0 = never (use when etcd runs --auto-compaction-retention or is shared)",
        _non_negative_float,
    ),
    Setting(
        "EVENT_TTL",
        3600,
        "how long an Event is kept after its last occurrence, seconds (etcd expires it with "
        "a lease)",
        _positive_int,
    ),
    Setting(
        "SHUTDOWN_GRACE",
        25.0,
        "SIGTERM: wait this long for in-flight reconciles, seconds",
        _non_negative_float,
    ),
)


@dataclass(frozen=True)
class Settings:
    etcd_endpoints: list[EndpointAddress]
    etcd_prefix: str
    etcd_ca_cert: str | None
    etcd_cert: str | None
    etcd_key: str | None
    etcd_username: str | None
    etcd_password: str | None
    etcd_timeout: float
    controller_workers: int
    lab_provider: str
    log_level: str
    log_format: str
    metrics_port: int
    health_port: int
    http_host: str
    resync_period: float
    watch_idle_timeout: float
    watch_heartbeat_interval: float
    watch_dead_after: float
    retry_base_delay: float
    retry_max_delay: float
    health_check_interval: float
    leader_elect: bool
    leader_election_ttl: int
    leader_election_id: str | None
    sharding: bool
    shard_count: int
    shard_lease_ttl: int
    priority_queue: bool
    priority_aging: float
    history_retention: float
    event_ttl: int
    shutdown_grace: float
    provider_settings: Mapping[str, str] = field(default_factory=dict)
    """The installed provider plug-ins' settings that were given, by variable name (flag
    beats environment); the chosen plug-in fills in its defaults and parses them when it is
    built (`plugins.resolve_settings`). They may hold secrets: neither view below shows them."""

    def __repr__(self) -> str:  # secrets never reach a log line through repr
        shown: dict[str, Any] = {
            f.name: (
                "***" if _is_secret(f.name) and getattr(self, f.name) else getattr(self, f.name)
            )
            for f in fields(self)
            if f.name != "provider_settings"
        }
        shown["provider_settings"] = sorted(self.provider_settings)
        return f"Settings({shown})"

    def public(self) -> dict[str, Any]:
        """For the start-up log line: everything but secrets (the provider logs its own)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if not _is_secret(f.name) and f.name != "provider_settings"
        }


def _is_secret(attr: str) -> bool:
    return any(s.attr == attr and s.secret for s in SETTINGS)


class ConfigError(ValueError):
    """A setting has an unusable value; the message names the variable and the flag."""


def plugin_settings() -> list[tuple[str, ProviderSetting]]:
    """(plug-in name, setting) of every installed provider plug-in, each variable once.

    A variable that is already a controller setting, or was declared by a plug-in listed
    earlier, is not offered twice (argparse would refuse the duplicate flag); the first
    declaration wins.
    """
    taken = {s.env for s in SETTINGS}
    found: list[tuple[str, ProviderSetting]] = []
    for name, plugin in sorted(plugins.installed().items()):
        for setting in plugin.settings:
            if setting.env in taken:
                continue
            taken.add(setting.env)
            found.append((name, setting))
    return found


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for s in SETTINGS:
        default = "" if s.default is None else f" (default {s.default})"
        parser.add_argument(
            s.flag, dest=s.attr, default=None, help=f"{s.help}; env {s.env}{default}"
        )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name, p in plugin_settings():
        if name not in groups:
            groups[name] = parser.add_argument_group(f"provider {name} (LAB_PROVIDER={name})")
        default = "" if p.default is None else f" (default {p.default})"
        groups[name].add_argument(
            p.flag, dest=p.attr, default=None, help=f"{p.help}; env {p.env}{default}"
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
    _load_etcd_settings(raw, args, env)
    return Settings(**raw, provider_settings=_given_provider_settings(args, env))


def _given_provider_settings(
    args: argparse.Namespace | None, env: Mapping[str, str]
) -> dict[str, str]:
    given: dict[str, str] = {}
    for _, p in plugin_settings():
        text = (getattr(args, p.attr, None) if args is not None else None) or env.get(p.env)
        if text:
            given[p.env] = text
    return given


def _load_etcd_settings(
    raw: dict[str, Any], args: argparse.Namespace | None, env: Mapping[str, str]
) -> None:
    """Endpoints with their scheme, TLS files checked now, the password read from its file."""
    endpoints_text = raw.pop("etcd_endpoints")
    host, port = raw.pop("etcd_host"), raw.pop("etcd_port")
    explicit = (getattr(args, "etcd_endpoints", None) if args else None) or env.get(
        "ETCD_ENDPOINTS"
    )
    if not explicit and host:
        bracketed = f"[{host}]" if ":" in host and not host.startswith("[") else host
        endpoints_text = f"{bracketed}:{port or 2379}"
    try:
        raw["etcd_endpoints"] = parse_endpoints(
            endpoints_text, tls_files=bool(raw["etcd_ca_cert"] or raw["etcd_cert"])
        )
    except InvalidSettings as exc:
        raise ConfigError(f"ETCD_ENDPOINTS / --etcd-endpoints: {exc}") from None
    if bool(raw["etcd_cert"]) != bool(raw["etcd_key"]):
        raise ConfigError("ETCD_CERT and ETCD_KEY must be given together (mutual TLS)")
    try:
        # Reads and checks the CA, certificate and key files: a bad path fails the start.
        Credentials(ca_cert=raw["etcd_ca_cert"], cert=raw["etcd_cert"], key=raw["etcd_key"])
    except InvalidSettings as exc:
        raise ConfigError(str(exc)) from None
    password_file = raw.pop("etcd_password_file")
    if password_file:
        if raw["etcd_password"]:
            raise ConfigError(
                "ETCD_PASSWORD and ETCD_PASSWORD_FILE are both set: give the password once "
                "(ETCD_PASSWORD_FILE keeps it out of ps and the environment)"
            )
        raw["etcd_password"] = _read_password_file(password_file)
    if bool(raw["etcd_username"]) != bool(raw["etcd_password"]):
        raise ConfigError(
            "ETCD_USERNAME and ETCD_PASSWORD (or ETCD_PASSWORD_FILE) must be given together"
        )


def _read_password_file(path: str) -> str:
    where = f"ETCD_PASSWORD_FILE / --etcd-password-file = {path!r}"
    try:
        with open(path, encoding="utf-8") as f:
            password = f.read().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError:  # its message would quote bytes of the password
        raise ConfigError(f"{where}: not UTF-8 text") from None
    if not password:
        raise ConfigError(f"{where}: the file is empty")
    return password


def env_names() -> Sequence[str]:
    """Every variable `labctl run` reads: its own and those of the installed plug-ins."""
    return [s.env for s in SETTINGS] + [p.env for _, p in plugin_settings()]


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

"""Settings of `labctl run`, grouped (`settings.etcd.endpoints`, `settings.leader.elect` …).

Each setting is declared ONCE, as a field of its group's frozen dataclass: its type, and in
`setting(...)` its environment variable, default, help and parser. The argparse flag
(`--etcd-endpoints`), the `--help` text naming the variable, parsing, validation, secret
redaction and `env_names()` are all derived from that one declaration, so they cannot drift.

Every setting is an environment variable AND a flag (flag wins). A hand-written loader is
kept rather than pydantic-settings: the variable names are an operator interface that does
not follow the nesting (CONTROLLER_WORKERS is `reconcile.workers`), so every field would need
an alias anyway, and the flags must live in our argparse tree next to the provider plug-ins'
and fail as one `error:` line naming both the variable and the flag.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, get_type_hints

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
    """What one field is to the outside world: its variable, default, help and parser."""

    env: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str
    secret: bool = False
    group: str = ""
    """Filled in by `_declared()`: the group's attribute on `Settings` (`etcd`)."""
    name: str = ""
    """Filled in by `_declared()`: the field's name in its group (`endpoints`)."""

    @property
    def flag(self) -> str:
        return plugins.flag_of(self.env)

    @property
    def attr(self) -> str:
        """The argparse destination of the flag."""
        return plugins.attr_of(self.env)

    @property
    def path(self) -> str:
        """`etcd.endpoints`: where the value is found on `Settings`."""
        return f"{self.group}.{self.name}"


def setting(
    env: str,
    default: Any,
    help: str,
    parse: Callable[[str], Any] = str,
    *,
    secret: bool = False,
) -> Any:
    """Declare a group's field as a setting (no dataclass default: only `load` builds them)."""
    return field(metadata={"setting": Setting(env, default, help, parse, secret)})


# -- parsers: each raises ValueError with a message fit for the `error:` line ----------------

_DURATION = re.compile(r"(?:(\d+(?:\.\d*)?|\.\d+)(ms|h|m|s))")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds from `30s`, `5m`, `1h`, `1h30m`, `250ms` or plain seconds (`90`, `0.5`)."""
    stripped = text.strip().lower()
    if stripped.startswith("-"):
        raise ValueError("must not be negative")
    try:
        seconds = float(stripped)
    except ValueError:
        parts = _DURATION.findall(stripped)
        if not parts or "".join(n + u for n, u in parts) != stripped:
            raise ValueError("expected a duration such as 30s, 5m, 1h or plain seconds") from None
        seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValueError("expected a finite duration")
    return seconds


def _duration(text: str) -> float:
    value = parse_duration(text)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _positive_duration(text: str) -> float:
    value = parse_duration(text)
    if not value > 0:
        raise ValueError("must be greater than 0")
    return value


def _whole_seconds(text: str) -> int:
    """A TTL etcd takes in whole seconds (leases): at least 1s, no fraction."""
    value = parse_duration(text)
    if value < 1 or value != int(value):
        raise ValueError("must be a whole number of seconds, at least 1")
    return int(value)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError("expected a whole number") from None
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError("expected a TCP port number") from None
    if not 0 <= value <= 65535:
        raise ValueError(f"not a TCP port: {value}")
    return value


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.strip().lower() not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return text.strip().lower()

    return parse


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(text: str) -> str:
    level = text.strip().upper()
    if level == "WARN":
        level = "WARNING"
    if level not in _LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
    return level


# -- the groups -------------------------------------------------------------------------------


class _Group:
    """Shared by every group: `repr` and `public()` never show a secret's value."""

    def _settings(self) -> Iterator[tuple[str, Any, Setting | None]]:
        for f in fields(self):  # type: ignore[arg-type]
            yield f.name, getattr(self, f.name), f.metadata.get("setting")

    def __repr__(self) -> str:  # secrets never reach a log line through repr
        shown = ", ".join(
            f"{name}={'***' if s is not None and s.secret and value else value!r}"
            for name, value, s in self._settings()
        )
        return f"{type(self).__name__}({shown})"

    def public(self) -> dict[str, Any]:
        """Every value but secrets (for the start-up log line)."""
        return {
            name: value for name, value, s in self._settings() if s is not None and not s.secret
        }


@dataclass(frozen=True, repr=False)
class EtcdSettings(_Group):
    """Where etcd is, how to authenticate, and the key prefix of all controller data."""

    endpoints: tuple[EndpointAddress, ...] = setting(
        "ETCD_ENDPOINTS",
        "127.0.0.1:2379",
        "etcd endpoints, comma-separated: https://host:port (TLS, verified against "
        "ETCD_CA_CERT or the system trust store), http://host:port (plaintext), or host:port "
        "(TLS if ETCD_CA_CERT or ETCD_CERT is set); IPv6 as [::1]:2379",
    )
    host: str | None = setting(
        "ETCD_HOST", None, "single etcd host (used with ETCD_PORT if ETCD_ENDPOINTS unset)"
    )
    port: int | None = setting("ETCD_PORT", None, "single etcd port (with ETCD_HOST)", _port)
    prefix: str = setting(
        "ETCD_PREFIX", "/lab-resource-manager", "key prefix of all controller data"
    )
    ca_cert: str | None = setting(
        "ETCD_CA_CERT", None, "CA bundle to verify etcd's certificate (enables TLS)"
    )
    cert: str | None = setting("ETCD_CERT", None, "client certificate for mutual TLS")
    key: str | None = setting("ETCD_KEY", None, "client private key for mutual TLS", secret=True)
    username: str | None = setting("ETCD_USERNAME", None, "etcd user (auth)")
    password: str | None = setting(
        "ETCD_PASSWORD",
        None,
        "etcd password (auth); as a flag it is visible in ps: give it in ETCD_PASSWORD_FILE "
        "(or this environment variable) instead",
        secret=True,
    )
    password_file: str | None = setting(
        "ETCD_PASSWORD_FILE",
        None,
        "file holding the etcd password, read at start (a trailing newline is dropped); the "
        "preferred way to give it",
    )
    timeout: float = setting(
        "ETCD_TIMEOUT", 5.0, "deadline of one etcd call (30s, 1m or seconds)", _duration
    )


@dataclass(frozen=True, repr=False)
class ReconcileSettings(_Group):
    """How much reconciling runs at once, how failures back off, how often all is re-queued."""

    workers: int = setting("CONTROLLER_WORKERS", 8, "concurrent reconciles", _positive_int)
    resync_period: float = setting(
        "RESYNC_PERIOD", 600.0, "re-queue every worker this often (10m or seconds)", _duration
    )
    retry_base_delay: float = setting(
        "RETRY_BASE_DELAY",
        0.1,
        "first retry delay of a failing worker (100ms or seconds)",
        _duration,
    )
    retry_max_delay: float = setting(
        "RETRY_MAX_DELAY", 300.0, "retry delay cap (5m or seconds)", _duration
    )


@dataclass(frozen=True, repr=False)
class ProviderSettings(_Group):
    """Which lab host provider plug-in reconciles LabWorkers, and its own settings."""

    name: str = setting(
        "LAB_PROVIDER",
        "sim",
        "lab host provider plug-in: sim, aws, or any `labctl providers` lists",
    )
    health_check_interval: float = setting(
        "HEALTH_CHECK_INTERVAL",
        30.0,
        "re-check Ready/Active hosts this often (30s or seconds)",
        _duration,
    )
    plugin_settings: Mapping[str, str] = field(default_factory=dict)
    """The installed provider plug-ins' settings that were given, by variable name (flag
    beats environment); the chosen plug-in fills in its defaults and parses them when it is
    built (`plugins.resolve_settings`). They may hold secrets: neither `repr` nor `public()`
    shows their values (the plug-in logs its own)."""

    def __repr__(self) -> str:
        return (
            f"ProviderSettings(name={self.name!r}, "
            f"health_check_interval={self.health_check_interval!r}, "
            f"plugin_settings={sorted(self.plugin_settings)!r})"
        )


@dataclass(frozen=True, repr=False)
class LogSettings(_Group):
    level: str = setting("LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING, ERROR or CRITICAL", _log_level)
    format: str = setting(
        "LOG_FORMAT",
        "auto",
        "json, console, or auto (json unless a TTY)",
        _choice("json", "console", "auto"),
    )


@dataclass(frozen=True, repr=False)
class HttpSettings(_Group):
    """The metrics and health servers."""

    host: str = setting("HTTP_HOST", "0.0.0.0", "address the metrics/health servers bind")
    metrics_port: int = setting(
        "METRICS_PORT", 8080, "Prometheus /metrics port (0 = ephemeral)", _port
    )
    health_port: int = setting(
        "HEALTH_PORT", 8081, "/healthz and /readyz port (0 = ephemeral)", _port
    )


@dataclass(frozen=True, repr=False)
class WatchSettings(_Group):
    """How a silent watch is told apart from a dead one (docs/architecture.md, Watches)."""

    idle_timeout: float = setting(
        "WATCH_IDLE_TIMEOUT",
        6.0,
        "a watch stream that proves nothing (no event, heartbeat or progress notification) "
        "this long is treated as dead and reopened (6s or seconds)",
        _positive_duration,
    )
    heartbeat_interval: float = setting(
        "WATCH_HEARTBEAT_INTERVAL",
        2.0,
        "rewrite this replica's heartbeat key this often so quiet watches prove they are "
        "alive (2s or seconds; 0 = off: then set etcd's "
        "--experimental-watch-progress-notify-interval below WATCH_IDLE_TIMEOUT)",
        _duration,
    )
    dead_after: float = setting(
        "WATCH_DEAD_AFTER",
        60.0,
        "/healthz fails when the watch is down this long (1m or seconds)",
        _duration,
    )


@dataclass(frozen=True, repr=False)
class LeaderSettings(_Group):
    elect: bool = setting(
        "LEADER_ELECT",
        False,
        "run as one of several replicas: only the elected leader reconciles, and its "
        "writes are fenced",
        _bool,
    )
    ttl: int = setting(
        "LEADER_ELECTION_TTL",
        15,
        "leader lease TTL, whole seconds (failover time)",
        _whole_seconds,
    )
    id: str | None = setting(
        "LEADER_ELECTION_ID", None, "this replica's identity (default hostname-pid)"
    )


@dataclass(frozen=True, repr=False)
class ShardingSettings(_Group):
    enabled: bool = setting(
        "SHARDING",
        False,
        "run as one of several ACTIVE replicas: the key space is cut into SHARD_COUNT shards "
        "spread over live replicas; each replica reconciles only the shards it holds a lease "
        "on, and its writes and provider calls are fenced per shard (singletons such as "
        "compaction still use leader election)",
        _bool,
    )
    count: int = setting(
        "SHARD_COUNT",
        256,
        "virtual shards of the key space (every replica must use the same number)",
        _positive_int,
    )
    lease_ttl: int = setting(
        "SHARD_LEASE_TTL",
        15,
        "TTL of a replica's membership and shard leases, whole seconds (a dead replica's "
        "shards move within it)",
        _whole_seconds,
    )


@dataclass(frozen=True, repr=False)
class QueueSettings(_Group):
    priority: bool = setting(
        "PRIORITY_QUEUE",
        True,
        "reconcile changes written by users (new objects, spec edits, deletions) before the "
        "background work of initial lists, relists and resyncs",
        _bool,
    )
    aging: float = setting(
        "PRIORITY_AGING",
        5.0,
        "background work waiting longer than this is served alongside user changes (no "
        "starvation; 5s or seconds)",
        _positive_duration,
    )


@dataclass(frozen=True, repr=False)
class HistorySettings(_Group):
    retention: float = setting(
        "HISTORY_RETENTION",
        86400.0,
        "the leader compacts etcd to keep this much object history (labctl history): 24h, "
        "90m or seconds; 0 = never (use when etcd runs --auto-compaction-retention or is "
        "shared)",
        _duration,
    )


@dataclass(frozen=True, repr=False)
class EventSettings(_Group):
    ttl: int = setting(
        "EVENT_TTL",
        3600,
        "how long an Event is kept after its last occurrence, whole seconds or 1h (etcd "
        "expires it with a lease)",
        _whole_seconds,
    )


@dataclass(frozen=True, repr=False)
class ShutdownSettings(_Group):
    grace: float = setting(
        "SHUTDOWN_GRACE",
        25.0,
        "SIGTERM: wait this long for in-flight reconciles (25s or seconds)",
        _duration,
    )


@dataclass(frozen=True)
class Settings:
    """Everything `labctl run` is configured with, one attribute per group."""

    etcd: EtcdSettings
    reconcile: ReconcileSettings
    provider: ProviderSettings
    log: LogSettings
    http: HttpSettings
    watch: WatchSettings
    leader: LeaderSettings
    sharding: ShardingSettings
    queue: QueueSettings
    history: HistorySettings
    events: EventSettings
    shutdown: ShutdownSettings

    def public(self) -> dict[str, dict[str, Any]]:
        """For the start-up log line: everything but secrets (the provider logs its own)."""
        return {f.name: getattr(self, f.name).public() for f in fields(self)}


def _group_types() -> dict[str, type[Any]]:
    hints = get_type_hints(Settings)
    return {f.name: hints[f.name] for f in fields(Settings)}


def _declared() -> tuple[Setting, ...]:
    """Every setting, in declaration order, with its group and field name filled in."""
    found: list[Setting] = []
    for group, group_type in _group_types().items():
        for f in fields(group_type):
            s = f.metadata.get("setting")
            if s is not None:
                found.append(Setting(s.env, s.default, s.help, s.parse, s.secret, group, f.name))
    return tuple(found)


SETTINGS: tuple[Setting, ...] = _declared()
"""The flat view of the declarations: what flags, `--help`, loading and `env_names()` walk."""


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
        for setting_ in plugin.settings:
            if setting_.env in taken:
                continue
            taken.add(setting_.env)
            found.append((name, setting_))
    return found


def add_arguments(parser: argparse.ArgumentParser) -> None:
    groups: dict[str, argparse._ArgumentGroup] = {}
    for s in SETTINGS:
        if s.group not in groups:
            groups[s.group] = parser.add_argument_group(f"{s.group} settings")
        default = "" if s.default is None else f" (default {s.default})"
        groups[s.group].add_argument(
            s.flag, dest=s.attr, default=None, help=f"{s.help}; env {s.env}{default}"
        )
    for name, p in plugin_settings():
        key = f"provider {name}"
        if key not in groups:
            groups[key] = parser.add_argument_group(f"provider {name} (LAB_PROVIDER={name})")
        default = "" if p.default is None else f" (default {p.default})"
        groups[key].add_argument(
            p.flag, dest=p.attr, default=None, help=f"{p.help}; env {p.env}{default}"
        )


def load(
    args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Resolve flag > environment > default, then validate every value."""
    env = os.environ if environ is None else environ
    raw: dict[str, dict[str, Any]] = {group: {} for group in _group_types()}
    for s in SETTINGS:
        text = getattr(args, s.attr, None) if args is not None else None
        if text is None:
            text = env.get(s.env) or None
        if text is None:
            raw[s.group][s.name] = s.default
            continue
        try:
            raw[s.group][s.name] = s.parse(text)
        except ValueError as exc:
            shown = "***" if s.secret else repr(text)
            raise ConfigError(f"{s.env} / {s.flag} = {shown}: {exc}") from None
    _resolve_etcd(raw["etcd"], explicit_endpoints=_given(args, env, "ETCD_ENDPOINTS"))
    raw["provider"]["plugin_settings"] = _given_provider_settings(args, env)
    return Settings(**{group: _group_types()[group](**values) for group, values in raw.items()})


def _given(args: argparse.Namespace | None, env: Mapping[str, str], name: str) -> bool:
    return bool((getattr(args, plugins.attr_of(name), None) if args else None) or env.get(name))


def _given_provider_settings(
    args: argparse.Namespace | None, env: Mapping[str, str]
) -> dict[str, str]:
    given: dict[str, str] = {}
    for _, p in plugin_settings():
        text = (getattr(args, p.attr, None) if args is not None else None) or env.get(p.env)
        if text:
            given[p.env] = text
    return given


def _resolve_etcd(raw: dict[str, Any], *, explicit_endpoints: bool) -> None:
    """Endpoints with their scheme, TLS files checked now, the password read from its file."""
    endpoints_text = raw["endpoints"]
    host, port = raw["host"], raw["port"]
    if not explicit_endpoints and host:
        bracketed = f"[{host}]" if ":" in host and not host.startswith("[") else host
        endpoints_text = f"{bracketed}:{port or 2379}"
    try:
        raw["endpoints"] = tuple(
            parse_endpoints(endpoints_text, tls_files=bool(raw["ca_cert"] or raw["cert"]))
        )
    except InvalidSettings as exc:
        raise ConfigError(f"ETCD_ENDPOINTS / --etcd-endpoints: {exc}") from None
    if bool(raw["cert"]) != bool(raw["key"]):
        raise ConfigError("ETCD_CERT and ETCD_KEY must be given together (mutual TLS)")
    try:
        # Reads and checks the CA, certificate and key files: a bad path fails the start.
        Credentials(ca_cert=raw["ca_cert"], cert=raw["cert"], key=raw["key"])
    except InvalidSettings as exc:
        raise ConfigError(str(exc)) from None
    if raw["password_file"]:
        if raw["password"]:
            raise ConfigError(
                "ETCD_PASSWORD and ETCD_PASSWORD_FILE are both set: give the password once "
                "(ETCD_PASSWORD_FILE keeps it out of ps and the environment)"
            )
        raw["password"] = _read_password_file(raw["password_file"])
    if bool(raw["username"]) != bool(raw["password"]):
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
    etcd = settings.etcd
    return connect(
        etcd.endpoints,
        ca_cert=etcd.ca_cert,
        cert=etcd.cert,
        key=etcd.key,
        username=etcd.username,
        password=etcd.password,
        timeout=etcd.timeout,
        pool_size=pool_size,
    )

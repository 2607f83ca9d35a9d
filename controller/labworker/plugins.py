"""Provider plug-ins: how `LAB_PROVIDER=<name>` finds the code that runs lab hosts.

A provider is a Python distribution that registers a `ProviderPlugin` object under the entry
point group `labctl.providers` (this package registers `sim` and `aws` in pyproject.toml). A
third party adds its own with its own `pip install`, without touching this repository:

    [project.entry-points."labctl.providers"]
    mycloud = "mycloud_provider:PLUGIN"

Each plug-in declares its settings (environment variable, default, help) so that `labctl run`
offers them as flags, `labctl providers` can list them, and secrets are known as secrets; the
plug-in's `build` receives the resolved values and whatever shared facilities it needs
(`ProviderContext`), and returns a `LabProvider`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from controller.labworker.provider import LabProvider
from controller.storage import EtcdClient

log = logging.getLogger("controller.labworker.plugins")

ENTRY_POINT_GROUP = "labctl.providers"


def flag_of(env: str) -> str:
    """The `labctl run` flag of an environment variable: LAB_SIM_DELAY -> --lab-sim-delay.

    One rule for the controller's own settings and every plug-in's, so they cannot drift."""
    return "--" + env.lower().replace("_", "-")


def attr_of(env: str) -> str:
    """The argparse destination of an environment variable's flag."""
    return env.lower()


@dataclass(frozen=True, slots=True)
class ProviderSetting:
    """One setting of a provider: an environment variable and the `labctl run` flag of it."""

    env: str
    default: str | None
    help: str
    secret: bool = False
    """Never printed (`labctl providers`, the start-up log line, error messages)."""

    @property
    def flag(self) -> str:
        return flag_of(self.env)

    @property
    def attr(self) -> str:
        return attr_of(self.env)


@dataclass(frozen=True, slots=True)
class ProviderContext:
    """What a provider may use besides its own settings."""

    settings: Mapping[str, str | None]
    """The plug-in's declared settings by environment name: flag, else env, else default."""
    client: EtcdClient
    """The controller's etcd client, for providers that keep shared state in etcd (`sim`)."""
    prefix: str
    """ETCD_PREFIX; a provider's own keys go under `<prefix>/providers/<name>/`."""
    identity: str
    """This replica's identity (hostname-pid unless LEADER_ELECTION_ID): for audit records."""


@dataclass(frozen=True, slots=True)
class ProviderPlugin:
    name: str
    summary: str
    """One line for `labctl providers`."""
    build: Callable[[ProviderContext], LabProvider]
    settings: tuple[ProviderSetting, ...] = field(default_factory=tuple)


class UnknownProvider(ValueError):
    """LAB_PROVIDER names no installed plug-in; the message lists the installed ones."""


def installed() -> dict[str, ProviderPlugin]:
    """Every provider plug-in installed in this Python environment, by name.

    A plug-in that fails to import or is not a `ProviderPlugin` is logged and left out: a
    broken third-party package must not stop the controller from running another provider.
    """
    found: dict[str, ProviderPlugin] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            plugin = ep.load()
        except Exception as exc:
            log.error(
                "provider plug-in %r (%s) failed to load: %s; it is not available",
                ep.name,
                ep.value,
                exc,
            )
            continue
        if not isinstance(plugin, ProviderPlugin):
            log.error(
                "provider plug-in %r (%s) is a %s, not a ProviderPlugin; it is not available",
                ep.name,
                ep.value,
                type(plugin).__name__,
            )
            continue
        found[ep.name] = plugin
    return found


def find(name: str, plugins: Mapping[str, ProviderPlugin] | None = None) -> ProviderPlugin:
    available = installed() if plugins is None else plugins
    plugin = available.get(name.strip().lower())
    if plugin is None:
        names = ", ".join(sorted(available)) or "none"
        raise UnknownProvider(
            f"unknown lab provider {name!r}: LAB_PROVIDER must name an installed provider "
            f"plug-in (installed: {names})"
        )
    return plugin


def resolve_settings(
    plugin: ProviderPlugin,
    environ: Mapping[str, str],
    flags: Mapping[str, str | None] | None = None,
) -> dict[str, str | None]:
    """The plug-in's settings by env name: the flag if given, else the variable, else default."""
    given = flags or {}
    resolved: dict[str, str | None] = {}
    for setting in plugin.settings:
        value = given.get(setting.attr)
        if value is None:
            value = environ.get(setting.env) or None
        resolved[setting.env] = value if value is not None else setting.default
    return resolved

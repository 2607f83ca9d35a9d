"""The `sim` provider as a plug-in (entry point `labctl.providers: sim`): its settings, parsed.

Kept apart from the simulator itself so that listing plug-ins and building `labctl run`'s
flags only declares settings; the simulator is built once `LAB_PROVIDER=sim` is chosen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from controller.labworker.plugins import ProviderContext, ProviderPlugin, ProviderSetting
from controller.labworker.sim import DEFAULT_STEP_DELAY, SimProvider

T = TypeVar("T")

DELAY = ProviderSetting(
    "LAB_SIM_DELAY", f"{DEFAULT_STEP_DELAY:g}", "seconds per simulated cloud or host step"
)
FAILURE_RATE = ProviderSetting(
    "LAB_SIM_FAILURE_RATE",
    "0",
    "probability (0 to 1) that a call fails transiently, before or after its effect",
)
SEED = ProviderSetting(
    "LAB_SIM_SEED", None, "seed of the fault-injection random generator (reproducible faults)"
)
AUDIT_LOG = ProviderSetting(
    "LAB_SIM_AUDIT_LOG",
    None,
    "append one JSON line per provision/start/stop/terminate/license call to this file",
)


def _parse(
    setting: ProviderSetting, raw: str | None, parse: Callable[[str], T], expected: str
) -> T | None:
    if raw is None or not raw.strip():
        return None
    try:
        return parse(raw.strip())
    except ValueError:
        raise ValueError(f"{setting.env} / {setting.flag} = {raw!r}: not {expected}") from None


def _delay(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise ValueError(text)
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError(text)
    return value


def build(context: ProviderContext) -> SimProvider:
    """The simulator on the controller's etcd; a bad setting raises ValueError naming it."""
    values = context.settings
    delay = _parse(DELAY, values.get(DELAY.env), _delay, "a number of seconds >= 0")
    rate = _parse(FAILURE_RATE, values.get(FAILURE_RATE.env), _rate, "a number from 0 to 1")
    seed = _parse(SEED, values.get(SEED.env), int, "an integer")
    audit_log = (values.get(AUDIT_LOG.env) or "").strip() or None
    return SimProvider(
        context.client,
        context.prefix,
        step_delay=DEFAULT_STEP_DELAY if delay is None else delay,
        failure_rate=rate or 0.0,
        seed=seed,
        identity=context.identity,
        audit_log=audit_log,
    )


PLUGIN = ProviderPlugin(
    name="sim",
    summary="simulated cloud and lab hosts (state in etcd, shared by all replicas)",
    build=build,
    settings=(DELAY, FAILURE_RATE, SEED, AUDIT_LOG),
)

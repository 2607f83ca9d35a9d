"""How long the reconciler waits: phase timeouts and polling intervals, as plain settings.

They are inputs of the pure `decide` function (not globals) so that tests can shrink them
and operators can tune them without touching the decision logic. Which timeout bounds which
phase is not said here but by each phase's module, listed in the phase table
(`controller/labworker/phases/table.py`), so a phase's budget sits next to what it waits for.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PhaseTimeouts:
    """Seconds a worker may spend in a phase before it goes Failed (reason PhaseTimeout).

    One field per phase that waits on something outside the object (the provider, the host's
    labs); `phases/table.py` says which field bounds which phase.

    None means "no limit": Draining waits for students to finish their labs, however long.
    """

    provisioning: float | None = 900.0
    starting: float | None = 600.0
    stopping: float | None = 600.0
    terminating: float | None = 900.0
    draining: float | None = None


@dataclass(frozen=True, slots=True)
class Intervals:
    """Requeue delays (seconds) for the different kinds of "look again later"."""

    health_check: float = 30.0
    """Ready, Active and Draining workers: how often the host is asked for its health."""
    health_record: float = 300.0
    """lastHealthCheck is rewritten at most this often when nothing else changed, so a
    converged fleet does not write to etcd on every health check."""
    provider_poll: float = 5.0
    """Waiting on the provider when it gives no `ready_in` estimate."""
    license_retry: float = 30.0
    """Starting without a license available: how soon to ask again."""
    teardown_retry: float = 300.0
    """A worker that failed while terminating waits this long before trying again
    (unless its spec changes), so a stuck teardown is retried without a write storm."""
    next_step: float = 0.01
    """After a phase change that has work waiting in the new phase."""
    stale_observation: float = 0.05
    """The object changed while the provider was being observed: observe again soon."""


DEFAULT_TIMEOUTS = PhaseTimeouts()
DEFAULT_INTERVALS = Intervals()

"""LabWorker phases and the transition table of docs/architecture.md (Phases), kept as data.

The table is the single source of truth: the reconciler asks `can_transition` before every
phase write, tests walk every row, and `labctl describe` can print the "when" text. Staying
in the same phase is not a transition; callers treat "no change" on their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Phase(StrEnum):
    PENDING = "Pending"
    PROVISIONING = "Provisioning"
    STARTING = "Starting"
    READY = "Ready"
    ACTIVE = "Active"
    DRAINING = "Draining"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    TERMINATING = "Terminating"
    TERMINATED = "Terminated"
    FAILED = "Failed"


class DesiredPhase(StrEnum):
    READY = "Ready"
    DRAINING = "Draining"
    STOPPED = "Stopped"
    TERMINATED = "Terminated"


@dataclass(frozen=True, slots=True)
class Transition:
    """One row of the table; a source of None stands for an object with no status yet."""

    sources: frozenset[Phase | None]
    target: Phase
    when: str


def _every_phase_except(*excluded: Phase) -> frozenset[Phase | None]:
    return frozenset(phase for phase in Phase if phase not in excluded)


def _from(*sources: Phase | None) -> frozenset[Phase | None]:
    return frozenset(sources)


# Rows follow the table in docs/architecture.md (Phases) in order. The two "any" rows leave out their own target, because a
# phase never transitions to itself, and Terminated, because nothing leaves Terminated.
TRANSITIONS: tuple[Transition, ...] = (
    Transition(_from(None), Phase.PENDING, "first seen without status"),
    Transition(_from(Phase.PENDING), Phase.PROVISIONING, "spec valid"),
    Transition(_from(Phase.PENDING), Phase.FAILED, "spec invalid (condition says why)"),
    Transition(
        _from(Phase.PROVISIONING),
        Phase.STARTING,
        "provider reports the instance running with an address",
    ),
    Transition(
        _from(Phase.STARTING),
        Phase.READY,
        "host healthy (licensed if autoLicense and a license is available)",
    ),
    Transition(_from(Phase.READY), Phase.ACTIVE, "host reports hostedLabs > 0"),
    Transition(_from(Phase.ACTIVE), Phase.READY, "hostedLabs == 0"),
    Transition(
        _from(Phase.READY, Phase.ACTIVE),
        Phase.DRAINING,
        "desiredPhase is Draining, Stopped or Terminated",
    ),
    Transition(_from(Phase.DRAINING), Phase.READY, "desiredPhase back to Ready"),
    Transition(
        _from(Phase.DRAINING),
        Phase.STOPPING,
        "no labs left and desiredPhase is Stopped or Terminated",
    ),
    Transition(_from(Phase.STOPPING), Phase.STOPPED, "provider reports the instance stopped"),
    Transition(_from(Phase.STOPPED), Phase.STARTING, "desiredPhase Ready"),
    Transition(_from(Phase.STOPPED), Phase.TERMINATING, "desiredPhase Terminated"),
    Transition(
        _every_phase_except(Phase.TERMINATED, Phase.FAILED),
        Phase.FAILED,
        "unrecoverable provider error or a phase timeout",
    ),
    Transition(_from(Phase.FAILED), Phase.TERMINATING, "desiredPhase Terminated"),
    Transition(_from(Phase.FAILED), Phase.PROVISIONING, "spec changed (new generation)"),
    Transition(
        _every_phase_except(Phase.TERMINATED, Phase.TERMINATING),
        Phase.TERMINATING,
        "deletionTimestamp set",
    ),
    Transition(
        _from(Phase.TERMINATING),
        Phase.TERMINATED,
        "provider reports the instance gone; then the finalizer is removed",
    ),
)


def _index_targets() -> Mapping[Phase | None, frozenset[Phase]]:
    targets: dict[Phase | None, set[Phase]] = {}
    for row in TRANSITIONS:
        for source in row.sources:
            targets.setdefault(source, set()).add(row.target)
    return {source: frozenset(found - {source}) for source, found in targets.items()}


_TARGETS = _index_targets()


def allowed_targets(from_phase: Phase | None) -> frozenset[Phase]:
    """Phases reachable in one step from `from_phase` (None: an object without status)."""
    return _TARGETS.get(from_phase, frozenset())


def can_transition(from_phase: Phase | None, to: Phase) -> bool:
    return to in allowed_targets(from_phase)


def transitions_between(from_phase: Phase | None, to: Phase) -> tuple[Transition, ...]:
    """The rows that allow the move, e.g. to log or show why it is legal."""
    if from_phase == to:
        return ()
    return tuple(row for row in TRANSITIONS if from_phase in row.sources and row.target == to)

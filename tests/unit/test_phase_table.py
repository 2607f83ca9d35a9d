"""The phase machine must allow exactly the moves of the phase table in docs/architecture.md, transcribed here by hand."""

from __future__ import annotations

import itertools

import pytest

from controller.labworker.phase import (
    TRANSITIONS,
    DesiredPhase,
    Phase,
    allowed_targets,
    can_transition,
    transitions_between,
)

P = Phase
EVERY_PHASE = tuple(Phase)

# One entry per (from, to) the docs/architecture.md phase table lists, written independently of phase.py.
DESIGN_TABLE: list[tuple[Phase | None, Phase]] = [
    (None, P.PENDING),
    (P.PENDING, P.PROVISIONING),
    (P.PENDING, P.FAILED),
    (P.PROVISIONING, P.STARTING),
    (P.STARTING, P.READY),
    (P.READY, P.ACTIVE),
    (P.ACTIVE, P.READY),
    (P.READY, P.DRAINING),
    (P.ACTIVE, P.DRAINING),
    (P.DRAINING, P.READY),
    (P.DRAINING, P.STOPPING),
    (P.STOPPING, P.STOPPED),
    (P.STOPPED, P.STARTING),
    (P.STOPPED, P.TERMINATING),
    # any but Terminated -> Failed
    *[(phase, P.FAILED) for phase in EVERY_PHASE if phase not in (P.TERMINATED, P.FAILED)],
    (P.FAILED, P.TERMINATING),
    (P.FAILED, P.PROVISIONING),
    # any -> Terminating (deletionTimestamp set); nothing leaves Terminated
    *[
        (phase, P.TERMINATING)
        for phase in EVERY_PHASE
        if phase not in (P.TERMINATED, P.TERMINATING)
    ],
    (P.TERMINATING, P.TERMINATED),
]
ALLOWED: frozenset[tuple[Phase | None, Phase]] = frozenset(DESIGN_TABLE)
EVERY_PAIR = [
    (source, target) for source, target in itertools.product((None, *EVERY_PHASE), EVERY_PHASE)
]


def _label(pair: tuple[Phase | None, Phase]) -> str:
    source, target = pair
    return f"{source or '(new)'}->{target}"


ALLOWED_IN_ORDER = sorted(ALLOWED, key=_label)


@pytest.mark.parametrize("pair", ALLOWED_IN_ORDER, ids=_label)
def test_every_design_row_is_allowed(pair: tuple[Phase | None, Phase]) -> None:
    source, target = pair
    assert can_transition(source, target)
    assert target in allowed_targets(source)
    assert transitions_between(source, target), "an allowed move must name the row allowing it"


@pytest.mark.parametrize(
    "pair",
    [
        (P.PENDING, P.READY),
        (P.PENDING, P.STARTING),
        (P.READY, P.STOPPED),
        (P.READY, P.STOPPING),
        (P.ACTIVE, P.STOPPING),
        (P.STOPPED, P.READY),
        (P.FAILED, P.READY),
        (P.TERMINATING, P.READY),
        (P.PROVISIONING, P.READY),
        (None, P.READY),
        (None, P.FAILED),
        (None, P.TERMINATING),
        *[(P.TERMINATED, target) for target in EVERY_PHASE],
    ],
    ids=_label,
)
def test_unlisted_moves_are_refused(pair: tuple[Phase | None, Phase]) -> None:
    source, target = pair
    assert not can_transition(source, target)
    assert not transitions_between(source, target)


@pytest.mark.parametrize("phase", EVERY_PHASE, ids=str)
def test_staying_in_a_phase_is_not_a_transition(phase: Phase) -> None:
    assert not can_transition(phase, phase)
    assert phase not in allowed_targets(phase)


def test_nothing_beyond_the_design_table_is_allowed() -> None:
    allowed = {pair for pair in EVERY_PAIR if can_transition(*pair)}
    assert allowed == ALLOWED


def test_terminated_is_final_and_new_objects_only_become_pending() -> None:
    assert allowed_targets(P.TERMINATED) == frozenset()
    assert allowed_targets(None) == frozenset({P.PENDING})


def test_rows_carry_a_human_reason() -> None:
    assert all(row.when.strip() for row in TRANSITIONS)
    (row,) = transitions_between(P.DRAINING, P.STOPPING)
    assert "no labs left" in row.when


def test_phase_values_are_the_wire_names() -> None:
    assert [phase.value for phase in Phase] == [
        "Pending",
        "Provisioning",
        "Starting",
        "Ready",
        "Active",
        "Draining",
        "Stopping",
        "Stopped",
        "Terminating",
        "Terminated",
        "Failed",
    ]
    assert [phase.value for phase in DesiredPhase] == [
        "Ready",
        "Draining",
        "Stopped",
        "Terminated",
    ]
    assert Phase("Ready") == "Ready"

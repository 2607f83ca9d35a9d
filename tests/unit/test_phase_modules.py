"""The phase table (controller/labworker/phases/table.py) against what the phases did before it.

Each phase group has one module holding its observe step, decision handler and timeout; the
table lists them. These tests pin the table to the behaviour of record: which phases call the
provider (and when), which PhaseTimeouts field bounds which phase, that every handler only
makes moves `phase.can_transition` allows, and that the modules layer without cycles.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.labworker.model import FINALIZER, InstanceSpec, LabWorker
from controller.labworker.observation import Observation, observe
from controller.labworker.phase import DesiredPhase, Phase, can_transition
from controller.labworker.phases import (
    failed,
    pending,
    provisioning,
    serving,
    starting,
    stopping,
    terminating,
)
from controller.labworker.phases.draft import Draft
from controller.labworker.phases.table import PHASES, handler_for
from controller.labworker.policy import DEFAULT_INTERVALS, DEFAULT_TIMEOUTS, PhaseTimeouts
from controller.labworker.provider import HostHealth, Instance, InstanceState
from controller.resources import DEFAULT_NAMESPACE, format_timestamp

P = Phase
D = DesiredPhase
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
PHASES_DIR = Path(provisioning.__file__).parent

# Where each phase's observe step, handler and timeout live.
HOME = {
    P.PENDING: pending,
    P.PROVISIONING: provisioning,
    P.STARTING: starting,
    P.READY: serving,
    P.ACTIVE: serving,
    P.DRAINING: serving,
    P.STOPPING: stopping,
    P.STOPPED: stopping,
    P.TERMINATING: terminating,
    P.FAILED: failed,
}
# The phases that call the provider (and so have provider errors to weigh), as before the table.
OBSERVING = {P.PROVISIONING, P.STARTING, P.READY, P.ACTIVE, P.DRAINING, P.STOPPING, P.TERMINATING}
DEFAULT_LIMITS: dict[Phase, float | None] = {
    P.PROVISIONING: 900.0,
    P.STARTING: 600.0,
    P.STOPPING: 600.0,
    P.TERMINATING: 900.0,
    P.DRAINING: None,
}
# Which PhaseTimeouts field bounds which phase.
TIMEOUT_FIELD = {
    P.PROVISIONING: "provisioning",
    P.STARTING: "starting",
    P.STOPPING: "stopping",
    P.TERMINATING: "terminating",
    P.DRAINING: "draining",
}


def make_worker(
    phase: Phase | None,
    desired: DesiredPhase = D.READY,
    *,
    deleting: bool = False,
    uid: str | None = "uid-1",
    generation: int = 1,
    observed: int = 1,
) -> LabWorker:
    metadata: dict[str, Any] = {
        "name": "w1",
        "namespace": "default",
        "uid": uid,
        "generation": generation,
        "finalizers": [FINALIZER],
    }
    if deleting:
        metadata["deletionTimestamp"] = format_timestamp(T0)
    worker = LabWorker.from_dict(
        {
            "metadata": metadata,
            "spec": {
                "labTrack": "ccna",
                "desiredPhase": desired.value,
                "host": {"autoLicense": True, "licenseSecretRef": "cml"},
            },
        }
    )
    worker.status = worker.status.model_copy(
        update={
            "phase": phase,
            "phase_transition_time": format_timestamp(T0) if phase is not None else None,
            "observed_generation": observed,
        }
    )
    return worker


# -- the table's rows -------------------------------------------------------------------------


def test_every_phase_but_terminated_has_a_row() -> None:
    assert set(PHASES) == set(Phase) - {P.TERMINATED}
    assert handler_for(None) is None
    assert handler_for(P.TERMINATED) is None
    assert all(handler_for(phase) is PHASES[phase] for phase in PHASES)


def test_the_phases_that_observe_the_provider() -> None:
    assert {phase for phase, handler in PHASES.items() if handler.observes} == OBSERVING
    for phase, handler in PHASES.items():
        assert (handler.observe is not None) is (phase in OBSERVING)


@pytest.mark.parametrize("phase", list(PHASES), ids=str)
def test_default_timeouts(phase: Phase) -> None:
    assert PHASES[phase].timeout(DEFAULT_TIMEOUTS) == DEFAULT_LIMITS.get(phase)


def test_each_timeout_field_bounds_exactly_its_phase() -> None:
    fields = [f.name for f in dataclasses.fields(PhaseTimeouts)]
    assert sorted(fields) == sorted(TIMEOUT_FIELD.values())
    distinct = PhaseTimeouts(**{name: float(i + 1) for i, name in enumerate(fields)})
    for phase, handler in PHASES.items():
        expected = getattr(distinct, TIMEOUT_FIELD[phase]) if phase in TIMEOUT_FIELD else None
        assert handler.timeout(distinct) == expected, phase


def test_the_table_replaced_for_phase() -> None:
    assert not hasattr(PhaseTimeouts, "for_phase")


@pytest.mark.parametrize("phase", list(PHASES), ids=str)
def test_each_phase_module_holds_observe_decide_and_timeout(phase: Phase) -> None:
    handler = PHASES[phase]
    home = HOME[phase].__name__
    assert handler.decide.__module__ == home
    assert handler.timeout.__module__ == home
    if handler.observe is not None:
        assert handler.observe.__module__ == home
        assert handler.observe_when.__module__ in (home, "controller.labworker.phases.table")


def test_every_phase_module_is_in_the_table() -> None:
    shared = {"__init__", "draft", "observed", "table"}
    modules = {path.stem for path in PHASES_DIR.glob("*.py")} - shared
    assert modules == {module.__name__.rsplit(".", 1)[1] for module in HOME.values()}


# -- which provider calls observe makes (no etcd: a recording stand-in) ----------------------


class Recorder:
    """Answers every call plausibly and records its name; a running, healthy instance."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.configured: list[tuple[str, dict[str, str]]] = []

    def configure(self, uid: str, annotations: Mapping[str, str]) -> None:
        self.configured.append((uid, dict(annotations)))

    def provision(
        self, uid: str, name: str, spec: InstanceSpec, *, namespace: str = DEFAULT_NAMESPACE
    ) -> Instance:
        self.calls.append("provision")
        return Instance("i-1", InstanceState.RUNNING, "10.0.0.1")

    def describe(self, uid: str) -> Instance | None:
        self.calls.append("describe")
        return Instance("i-1", InstanceState.RUNNING, "10.0.0.1")

    def start(self, uid: str) -> None:
        self.calls.append("start")

    def stop(self, uid: str) -> None:
        self.calls.append("stop")

    def terminate(self, uid: str) -> None:
        self.calls.append("terminate")

    def host_health(self, uid: str) -> HostHealth:
        self.calls.append("host_health")
        return HostHealth(ready=True, version="2.7", licensed=True, hosted_labs=0)

    def license(self, uid: str, secret_ref: str | None) -> bool:
        self.calls.append("license")
        return True


def _first_call_before_the_table(
    phase: Phase | None, desired: DesiredPhase, deleting: bool
) -> str | None:
    """The observation step's choice before the table, transcribed by hand."""
    if deleting:
        return "describe" if phase is P.TERMINATING else None
    ready = desired is D.READY
    steps: dict[Phase | None, str | None] = {
        P.PROVISIONING: "provision",
        P.STARTING: "describe",
        P.READY: "host_health" if ready else None,
        P.ACTIVE: "host_health" if ready else None,
        P.DRAINING: None if ready else "host_health",
        P.STOPPING: "describe",
        P.TERMINATING: "describe",
    }
    return steps.get(phase)


@pytest.mark.parametrize(
    ("phase", "desired", "deleting"),
    list(itertools.product([None, *Phase], DesiredPhase, [False, True])),
    ids=lambda value: str(value),
)
def test_observe_asks_the_provider_exactly_when_it_did_before(
    phase: Phase | None, desired: DesiredPhase, deleting: bool
) -> None:
    provider = Recorder()
    worker = make_worker(phase, desired, deleting=deleting)
    observation = observe(provider, worker)
    expected = _first_call_before_the_table(phase, desired, deleting)
    assert (provider.calls[0] if provider.calls else None) == expected
    assert bool(provider.configured) is (expected is not None)
    assert observation.made_for(worker)
    if expected is None:
        assert observation == Observation.blank(worker)


def test_a_skipped_step_does_not_report_a_missing_uid() -> None:
    # Ready with desiredPhase Draining is decided from the object alone: no uid is needed.
    quiet = observe(Recorder(), make_worker(P.READY, D.DRAINING, uid=None))
    assert quiet.fatal_error is None
    asking = observe(Recorder(), make_worker(P.READY, D.READY, uid=None))
    assert asking.fatal_error is not None and "uid" in asking.fatal_error


# -- every handler's moves are in the phase table ----------------------------------------------

INSTANCES: list[Instance | None] = [
    None,
    *(Instance("i-1", state, "10.0.0.1", ready_in=2.0) for state in InstanceState),
    Instance("i-1", InstanceState.RUNNING, None),
]
HEALTHS = [
    HostHealth(ready=True, version="2.7", licensed=False, hosted_labs=0),
    HostHealth(ready=True, version="2.7", licensed=True, hosted_labs=2),
    HostHealth(ready=False, version=None, licensed=False, hosted_labs=0, ready_in=3.0),
]


@pytest.mark.parametrize("phase", list(PHASES), ids=str)
def test_handlers_only_make_moves_of_the_phase_table(phase: Phase) -> None:
    handler = PHASES[phase]
    for desired, deleting, new_generation, instance, health, granted in itertools.product(
        DesiredPhase, [False, True], [False, True], INSTANCES, HEALTHS, [None, True, False]
    ):
        worker = make_worker(
            phase, desired, deleting=deleting, generation=2, observed=1 if new_generation else 2
        )
        observation = dataclasses.replace(
            Observation.blank(worker),
            instance=instance,
            instance_known=True,
            health=health,
            license_granted=granted,
        )
        draft = Draft(worker, observation, T0 + timedelta(seconds=5), DEFAULT_INTERVALS)
        handler.decide(draft)  # Draft.move raises IllegalTransition on a move outside the table
        moved_to = draft.status.phase
        assert moved_to is phase or (moved_to is not None and can_transition(phase, moved_to))


# -- layering: no import cycles -----------------------------------------------------------------


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_phase_modules_do_not_import_their_dispatchers() -> None:
    dispatchers = {"controller.labworker.decide", "controller.labworker.observation"}
    for path in PHASES_DIR.glob("*.py"):
        assert not _imports(path) & dispatchers, path.name


def test_shared_blocks_and_the_package_import_no_phase() -> None:
    phase_modules = {module.__name__ for module in HOME.values()}
    table = "controller.labworker.phases.table"
    for name in ("__init__", "draft", "observed"):
        assert not _imports(PHASES_DIR / f"{name}.py") & (phase_modules | {table}), name
    for module in HOME.values():
        assert table not in _imports(Path(module.__file__ or "")), module.__name__

"""The pool's decision: from the workers it owns to what to create, retire and delete. Pure.

`plan(workers, replicas, max_unavailable, force)` reads nothing else and changes nothing, so
every rule below is a unit test away, and the reconciler only carries the plan out.

Each owned worker is in one of three groups:

- *deleting*: deletionTimestamp set. The LabWorker controller terminates its instance; the
  pool waits and counts it as retiring.
- *leaving*: retired (`spec.desiredPhase` Terminated, set by the pool). It drains — Ready →
  Draining → Stopping → Stopped → Terminating → Terminated — and is deleted once no student
  can be on it: Terminated, or never started (Pending, Provisioning, Starting), Failed or
  Stopped. With `scaleDown: Force` it is deleted at once.
- *serving*: every other worker: `current` when made from the pool's template, else
  outdated.

Then:

1. Without outdated workers: create `replicas - serving`, or retire the surplus.
2. With outdated workers (a rolling update, surge then retire): keep at most
   `max_unavailable` updated workers that are not Ready yet, never more than `replicas`
   updated ones; retire an outdated worker only while `ready updated + outdated left ≥
   replicas`, so capacity never drops below `replicas` while the new template comes up.
   Updated workers beyond `replicas` (the pool shrank mid-roll) are retired too.
3. Whom to retire: idle (`hostedLabs == 0`) before busy, not-yet-Ready before Ready, fewer
   labs first, newest first. A retired worker that cannot host a lab yet (or the Force
   policy) is deleted now; any other drains first.

Failed workers are not replaced: a broken template would otherwise churn cloud instances
forever. They count as serving but not Ready (the pool's Available condition shows it);
deleting one makes the pool create its replacement.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from controller.labworker.phase import Phase

READY_PHASES = frozenset({Phase.READY, Phase.ACTIVE})
NO_STUDENT_PHASES: frozenset[Phase | None] = frozenset(
    {
        None,
        Phase.PENDING,
        Phase.PROVISIONING,
        Phase.STARTING,
        Phase.FAILED,
        Phase.STOPPED,
        Phase.TERMINATED,
    }
)
"""Phases in which no lab can be running: a worker here may be deleted without draining."""


@dataclass(frozen=True, slots=True)
class WorkerView:
    """What the plan needs to know about one owned worker."""

    name: str
    uid: str
    phase: Phase | None
    hosted_labs: int = 0
    current: bool = True
    """Made from the pool's current template."""
    retired: bool = False
    """`spec.desiredPhase` is Terminated: the pool (or someone) asked it to go."""
    deleting: bool = False
    """deletionTimestamp is set."""
    created: str = ""
    """creationTimestamp (RFC 3339, fixed width: string order is time order)."""

    @property
    def ready(self) -> bool:
        return self.phase in READY_PHASES


@dataclass(frozen=True, slots=True)
class Counts:
    """The pool's status numbers, from the workers as observed."""

    replicas: int = 0
    ready: int = 0
    active: int = 0
    updated: int = 0
    retiring: int = 0


@dataclass(frozen=True, slots=True)
class Plan:
    create: int
    """How many workers to create from the current template."""
    drain: tuple[WorkerView, ...]
    """Serving workers to retire gracefully: set `spec.desiredPhase` Terminated."""
    remove: tuple[WorkerView, ...]
    """Serving workers to delete at once (no student can be on them, or Force)."""
    finish: tuple[WorkerView, ...]
    """Retired workers that may now be deleted (Terminated, never started, or Force)."""
    counts: Counts
    outdated: int
    """Serving workers made from an older template: a rolling update is under way."""

    @property
    def rolling(self) -> bool:
        return self.outdated > 0

    @property
    def idle(self) -> bool:
        return not (self.create or self.drain or self.remove or self.finish)


def retire_order(workers: Iterable[WorkerView]) -> list[WorkerView]:
    """Who goes first: idle, then not-yet-Ready, then fewer labs, then newest (then name)."""
    by_name = sorted(workers, key=lambda w: w.name)
    newest_first = sorted(by_name, key=lambda w: w.created, reverse=True)
    return sorted(newest_first, key=lambda w: (w.hosted_labs > 0, w.ready, w.hosted_labs))


def count(workers: Sequence[WorkerView]) -> Counts:
    serving = [w for w in workers if not (w.deleting or w.retired)]
    return Counts(
        replicas=len(serving),
        ready=sum(1 for w in serving if w.ready),
        active=sum(1 for w in serving if w.phase is Phase.ACTIVE),
        updated=sum(1 for w in serving if w.current),
        retiring=len(workers) - len(serving),
    )


def plan(
    workers: Sequence[WorkerView], replicas: int, max_unavailable: int = 1, force: bool = False
) -> Plan:
    if replicas < 0 or max_unavailable < 1:
        raise ValueError(f"replicas {replicas} < 0 or max_unavailable {max_unavailable} < 1")
    leaving = [w for w in workers if w.retired and not w.deleting]
    serving = [w for w in workers if not (w.deleting or w.retired)]
    current = [w for w in serving if w.current]
    outdated = [w for w in serving if not w.current]
    ready_current = sum(1 for w in current if w.ready)

    finish = [w for w in leaving if force or w.phase in NO_STUDENT_PHASES]
    surplus_current = max(0, len(current) - replicas)
    if outdated:
        starting = len(current) - ready_current
        create = max(0, min(replicas - len(current), max_unavailable - starting))
        retire_outdated = min(len(outdated), max(0, ready_current + len(outdated) - replicas))
    else:
        create = max(0, replicas - len(current))
        retire_outdated = 0
    victims = retire_order(current)[:surplus_current] + retire_order(outdated)[:retire_outdated]
    drain: list[WorkerView] = []
    remove: list[WorkerView] = []
    for victim in victims:
        (remove if force or victim.phase in NO_STUDENT_PHASES else drain).append(victim)
    return Plan(
        create=create,
        drain=tuple(drain),
        remove=tuple(remove),
        finish=tuple(finish),
        counts=count(workers),
        outdated=len(outdated),
    )

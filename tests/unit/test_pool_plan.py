"""The pool's pure decision: what to create, drain and delete from a list of workers."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.labworker.phase import Phase
from controller.pool.plan import WorkerView, plan, retire_order
from controller.resources import format_timestamp

_serial = itertools.count()
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
"""Workers made later in a test are newer."""


def worker(
    name: str,
    phase: Phase | None = Phase.READY,
    *,
    labs: int = 0,
    current: bool = True,
    retired: bool = False,
    deleting: bool = False,
    created: str | None = None,
) -> WorkerView:
    if phase is Phase.READY and labs:
        phase = Phase.ACTIVE
    return WorkerView(
        name=name,
        uid=f"uid-{name}",
        phase=phase,
        hosted_labs=labs,
        current=current,
        retired=retired,
        deleting=deleting,
        created=created or format_timestamp(EPOCH + timedelta(seconds=next(_serial))),
    )


def names(views: tuple[WorkerView, ...]) -> list[str]:
    return [v.name for v in views]


# -- scaling ---------------------------------------------------------------------------------


def test_scale_up_from_nothing_creates_all_at_once() -> None:
    p = plan([], replicas=10)
    assert (p.create, p.drain, p.remove, p.finish) == (10, (), (), ())
    assert p.counts.replicas == 0


def test_converged_pool_does_nothing() -> None:
    p = plan([worker(f"w{i}") for i in range(3)], replicas=3)
    assert p.idle and not p.rolling
    assert (p.counts.replicas, p.counts.ready, p.counts.updated) == (3, 3, 3)


def test_scale_down_drains_idle_ready_workers_and_keeps_busy_ones() -> None:
    workers = [worker(f"idle{i}") for i in range(5)] + [
        worker("busy1", labs=3),
        worker("busy2", labs=1),
    ]
    p = plan(workers, replicas=3)
    assert p.create == 0
    assert sorted(names(p.drain)) == ["idle1", "idle2", "idle3", "idle4"]  # newest first
    assert p.remove == () and p.finish == ()


def test_scale_down_to_zero_drains_busy_workers_too_fewer_labs_first() -> None:
    workers = [worker("busy3", labs=3), worker("busy1", labs=1), worker("idle")]
    p = plan(workers, replicas=0)
    assert names(p.drain) == ["idle", "busy1", "busy3"]


def test_scale_down_deletes_workers_no_student_can_be_on_at_once() -> None:
    workers = [
        worker("ready"),
        worker("pending", Phase.PENDING),
        worker("provisioning", Phase.PROVISIONING),
        worker("failed", Phase.FAILED),
        worker("new", None),
    ]
    p = plan(workers, replicas=1)
    assert sorted(names(p.remove)) == ["failed", "new", "pending", "provisioning"]
    assert p.drain == ()


def test_not_ready_goes_before_ready_and_newest_before_oldest() -> None:
    old = worker("old", created="2024-01-01T00:00:00.000Z")
    new = worker("new", created="2024-01-02T00:00:00.000Z")
    starting = worker("starting", Phase.STARTING, created="2023-01-01T00:00:00.000Z")
    busy = worker("busy", labs=1, created="2025-01-01T00:00:00.000Z")
    assert [w.name for w in retire_order([old, busy, new, starting])] == [
        "starting",
        "new",
        "old",
        "busy",
    ]


def test_retired_workers_are_deleted_once_terminated_and_not_before() -> None:
    workers = [
        worker("keep"),
        worker("draining", Phase.DRAINING, labs=2, retired=True),
        worker("stopping", Phase.STOPPING, retired=True),
        worker("terminated", Phase.TERMINATED, retired=True),
        worker("stopped", Phase.STOPPED, retired=True),
        worker("gone", Phase.TERMINATING, deleting=True),
    ]
    p = plan(workers, replicas=1)
    assert sorted(names(p.finish)) == ["stopped", "terminated"]
    assert p.create == 0 and p.drain == () and p.remove == ()
    assert (p.counts.replicas, p.counts.retiring) == (1, 5)


def test_retiring_workers_are_not_counted_so_a_scale_up_creates_fresh_ones() -> None:
    workers = [worker("draining", Phase.DRAINING, labs=1, retired=True)]
    assert plan(workers, replicas=2).create == 2


def test_force_deletes_surplus_and_retired_workers_at_once_labs_or_not() -> None:
    workers = [
        worker("busy", labs=5),
        worker("idle"),
        worker("draining", Phase.DRAINING, labs=1, retired=True),
    ]
    p = plan(workers, replicas=0, force=True)
    assert sorted(names(p.remove)) == ["busy", "idle"]
    assert names(p.finish) == ["draining"]
    assert p.drain == ()


def test_failed_workers_are_counted_not_replaced() -> None:
    p = plan([worker("a"), worker("b", Phase.FAILED)], replicas=2)
    assert p.idle
    assert (p.counts.replicas, p.counts.ready) == (2, 1)


def test_active_replicas_are_counted() -> None:
    p = plan([worker("a", labs=2), worker("b")], replicas=2)
    assert (p.counts.ready, p.counts.active) == (2, 1)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        plan([], replicas=-1)
    with pytest.raises(ValueError):
        plan([], replicas=1, max_unavailable=0)


# -- rolling update --------------------------------------------------------------------------


def test_roll_surges_first_and_retires_nothing_until_an_update_is_ready() -> None:
    outdated = [worker(f"old{i}", current=False) for i in range(3)]
    p = plan(outdated, replicas=3, max_unavailable=1)
    assert p.rolling and p.create == 1 and p.drain == ()
    starting = [*outdated, worker("new0", Phase.PROVISIONING)]
    p = plan(starting, replicas=3, max_unavailable=1)
    assert p.idle  # one updated worker starting: maxUnavailable reached, nothing to retire


def test_roll_retires_one_outdated_worker_per_ready_update() -> None:
    workers = [worker(f"old{i}", current=False) for i in range(3)] + [worker("new0")]
    p = plan(workers, replicas=3, max_unavailable=1)
    assert p.create == 1
    assert len(p.drain) == 1 and p.drain[0].name.startswith("old")


def test_roll_with_a_larger_max_unavailable_surges_more() -> None:
    outdated = [worker(f"old{i}", current=False) for i in range(5)]
    assert plan(outdated, replicas=5, max_unavailable=2).create == 2


def test_roll_finishes_when_enough_updates_are_ready() -> None:
    workers = [worker("old0", current=False)] + [worker(f"new{i}") for i in range(3)]
    p = plan(workers, replicas=3)
    assert p.create == 0 and names(p.drain) == ["old0"]


def test_roll_retires_not_ready_outdated_workers_before_ready_ones() -> None:
    workers = [
        worker("old-ready", current=False),
        worker("old-failed", Phase.FAILED, current=False),
        worker("new0"),
    ]
    p = plan(workers, replicas=2)
    assert names(p.remove) == ["old-failed"] and p.drain == ()


def test_roll_while_scaling_down_retires_surplus_updates_too() -> None:
    workers = [worker(f"old{i}", current=False) for i in range(2)] + [
        worker(f"new{i}") for i in range(5)
    ]
    p = plan(workers, replicas=3)
    assert p.create == 0
    assert len(p.drain) == 4  # 2 updated beyond 3, and both outdated
    assert sum(1 for v in p.drain if v.current) == 2


def test_roll_to_zero_retires_everything() -> None:
    workers = [worker("old", current=False), worker("new", Phase.STARTING)]
    p = plan(workers, replicas=0)
    assert p.create == 0
    assert names(p.drain) == ["old"] and names(p.remove) == ["new"]


# -- the roll, simulated: availability never drops below replicas - maxUnavailable ----------


def _advance(workers: list[WorkerView]) -> list[WorkerView]:
    """One step of the LabWorker controller: every worker moves one phase along."""
    nxt = {
        None: Phase.PENDING,
        Phase.PENDING: Phase.PROVISIONING,
        Phase.PROVISIONING: Phase.STARTING,
        Phase.STARTING: Phase.READY,
        Phase.DRAINING: Phase.STOPPING,
        Phase.STOPPING: Phase.STOPPED,
        Phase.STOPPED: Phase.TERMINATING,
        Phase.TERMINATING: Phase.TERMINATED,
    }
    out = []
    for w in workers:
        if w.deleting:
            continue  # deleted workers disappear
        if w.retired and w.phase in (Phase.READY, Phase.ACTIVE):
            out.append(replace(w, phase=Phase.DRAINING))
        elif w.phase in nxt and (w.retired or w.phase not in (Phase.DRAINING,)):
            out.append(replace(w, phase=nxt[w.phase]))
        else:
            out.append(w)
    return out


def _apply(workers: list[WorkerView], replicas: int, max_unavailable: int) -> list[WorkerView]:
    p = plan(workers, replicas, max_unavailable)
    drained = {v.name for v in p.drain}
    deleted = {v.name for v in (*p.remove, *p.finish)}
    out = [
        replace(w, retired=True)
        if w.name in drained
        else replace(w, deleting=True)
        if w.name in deleted
        else w
        for w in workers
    ]
    out += [worker(f"n{next(_serial)}", None) for _ in range(p.create)]
    return out


@settings(max_examples=60, deadline=None)
@given(replicas=st.integers(1, 8), max_unavailable=st.integers(1, 3))
def test_a_simulated_roll_replaces_every_worker_without_losing_availability(
    replicas: int, max_unavailable: int
) -> None:
    workers = [worker(f"old{i}", current=False) for i in range(replicas)]
    lowest, peak = replicas, replicas
    for _ in range(500):
        workers = _apply(workers, replicas, max_unavailable)
        lowest = min(lowest, sum(1 for w in workers if w.ready and not w.deleting))
        peak = max(peak, sum(1 for w in workers if not (w.retired or w.deleting)))
        workers = _advance(workers)
        lowest = min(lowest, sum(1 for w in workers if w.ready))
        serving = [w for w in workers if not (w.retired or w.deleting)]
        if len(workers) == replicas and all(w.current and w.ready for w in serving):
            break
    else:
        raise AssertionError(f"the roll did not converge: {workers}")
    assert lowest >= replicas - max_unavailable
    assert all(not w.name.startswith("old") for w in workers)
    assert peak <= replicas + max_unavailable  # the surge is bounded by maxUnavailable


@settings(max_examples=60, deadline=None)
@given(
    start=st.integers(0, 12),
    target=st.integers(0, 12),
    busy=st.sets(st.integers(0, 11), max_size=4),
)
def test_simulated_scaling_converges_to_exactly_replicas(
    start: int, target: int, busy: set[int]
) -> None:
    workers = [worker(f"w{i}", labs=1 if i in busy else 0) for i in range(start)]
    for _ in range(100):
        workers = _apply(workers, target, 1)
        workers = _advance(workers)
        if len(workers) == target and all(w.ready for w in workers):
            break
    else:
        raise AssertionError(f"did not converge to {target}: {workers}")
    kept_busy = {w.name for w in workers if w.hosted_labs}
    expected_busy = {f"w{i}" for i in busy if i < start}
    # Busy workers are only retired when the idle ones are not enough.
    assert len(kept_busy) == min(len(expected_busy), target)

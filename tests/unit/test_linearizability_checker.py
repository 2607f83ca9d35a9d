"""The history checker accepts exactly the linearizable histories (small known cases, and a
big history generated from a real sequential execution)."""

from __future__ import annotations

import itertools
import random
from typing import Any

from tests.linearizability import (
    ANY,
    CAS,
    CONFLICT,
    CREATE,
    DELETE,
    EXISTS,
    GET,
    NO_EFFECT,
    OK,
    PUT,
    UNKNOWN,
    Operation,
    check,
    step,
)


def op(kind: str, start: float, end: float | None, output: Any, **kw: Any) -> Operation:
    """`end=None` means the call never answered (unknown outcome)."""
    kw.setdefault("key", "k")
    if end is None:
        return Operation(kind=kind, start=start, output=UNKNOWN, **kw)
    return Operation(kind=kind, start=start, end=end, output=output, **kw)


def linearizable(*ops: Operation) -> bool:
    return check(list(ops)).linearizable


# -- basics --------------------------------------------------------------------------------


def test_empty_and_sequential_histories() -> None:
    assert linearizable()
    assert linearizable(
        op(GET, 0, 1, None),
        op(CREATE, 2, 3, OK, value="a"),
        op(GET, 4, 5, "a"),
        op(CAS, 6, 7, OK, expected="a", value="b"),
        op(PUT, 8, 9, OK, value="c"),
        op(DELETE, 10, 11, True),
        op(DELETE, 12, 13, False),
        op(GET, 14, 15, None),
    )


def test_stale_read_after_a_completed_write_is_rejected() -> None:
    assert not linearizable(
        op(PUT, 0, 1, OK, value="a"),
        op(PUT, 2, 3, OK, value="b"),
        op(GET, 4, 5, "a"),
    )


def test_a_read_concurrent_with_a_write_may_see_either_value() -> None:
    for seen in ("a", "b"):
        assert linearizable(
            op(PUT, 0, 1, OK, value="a"),
            op(PUT, 2, 6, OK, value="b"),
            op(GET, 3, 4, seen),
        )
    # ...but once one reader saw the new value, a later reader cannot see the old one.
    assert not linearizable(
        op(PUT, 0, 1, OK, value="a"),
        op(PUT, 2, 10, OK, value="b"),
        op(GET, 3, 4, "b", client=1),
        op(GET, 5, 6, "a", client=2),
    )


def test_create_and_cas_outcomes_follow_the_register() -> None:
    assert not linearizable(op(CREATE, 0, 1, OK, value="a"), op(CREATE, 2, 3, OK, value="b"))
    assert linearizable(op(CREATE, 0, 1, OK, value="a"), op(CREATE, 2, 3, EXISTS, value="b"))
    assert not linearizable(op(CREATE, 0, 1, EXISTS, value="a"))  # nothing was there
    assert not linearizable(op(CAS, 0, 1, OK, expected="a", value="b"))  # absent != a
    assert linearizable(op(CAS, 0, 1, CONFLICT, expected="a", value="b"))
    # Two CAS from the same expected value: at most one can win.
    assert not linearizable(
        op(PUT, 0, 1, OK, value="a"),
        op(CAS, 2, 5, OK, expected="a", value="b", client=1),
        op(CAS, 2, 5, OK, expected="a", value="c", client=2),
    )
    assert linearizable(
        op(PUT, 0, 1, OK, value="a"),
        op(CAS, 2, 5, OK, expected="a", value="b", client=1),
        op(CAS, 2, 5, CONFLICT, expected="a", value="c", client=2),
        op(GET, 6, 7, "b"),
    )


def test_the_value_a_failed_cas_reports_must_be_the_current_one() -> None:
    assert linearizable(
        op(PUT, 0, 1, OK, value="a"),
        op(CAS, 2, 3, CONFLICT, expected="x", value="b", observed="a"),
        op(CREATE, 4, 5, EXISTS, value="c", observed="a"),
    )
    assert not linearizable(
        op(PUT, 0, 1, OK, value="a"),
        op(CAS, 2, 3, CONFLICT, expected="x", value="b", observed="z"),
    )
    assert not linearizable(
        op(PUT, 0, 1, OK, value="a"),
        op(CREATE, 2, 3, EXISTS, value="c", observed=None),
    )
    assert op(CAS, 0, 1, CONFLICT, expected="x", value="b").observed is ANY


def test_keys_are_checked_independently() -> None:
    verdict = check(
        [
            op(PUT, 0, 1, OK, value="a", key="x"),
            op(GET, 2, 3, "a", key="x"),
            op(PUT, 0, 1, OK, value="b", key="y"),
            op(GET, 2, 3, None, key="y"),  # wrong: y holds b
        ]
    )
    assert not verdict.linearizable
    assert [(k.key, k.linearizable) for k in verdict.keys] == [("x", True), ("y", False)]
    assert "key y" in verdict.detail and "get() = None" in verdict.detail


# -- the two bugs a retried unguarded delete produces ----------------------------------------


def test_deleted_twice_removing_an_object_created_in_between_is_rejected() -> None:
    # c1's delete is applied at once (c2 sees the key gone), c2 creates b, then c1's retry
    # deletes again: b vanishes although nobody deleted it.
    history = [
        op(CREATE, 0, 1, OK, value="a", client=1),
        op(DELETE, 2, 10, True, client=1),
        op(GET, 3, 4, None, client=2),
        op(CREATE, 5, 6, OK, value="b", client=2),
        op(GET, 11, 12, None, client=2),
    ]
    assert not linearizable(*history)
    # Had the delete reported "maybe applied" (unknown), it may have landed at 9: fine.
    history[1] = op(DELETE, 2, None, None, client=1)
    assert not linearizable(*history)  # an op applies once: it cannot explain both deletions
    history[2] = op(GET, 3, 4, "a", client=2)
    history[3] = op(CREATE, 5, 6, EXISTS, value="b", client=2)
    assert linearizable(*history)


def test_delete_returning_false_although_it_deleted_is_rejected() -> None:
    history = [
        op(CREATE, 0, 1, OK, value="a"),
        op(DELETE, 2, 10, False),
        op(GET, 11, 12, None),
    ]
    assert not linearizable(*history)
    history[1] = op(DELETE, 2, None, None)  # the honest report: maybe applied
    assert linearizable(*history)
    history[1] = op(DELETE, 2, 10, True)
    assert linearizable(*history)


def test_a_late_duplicate_put_is_rejected() -> None:
    # put(a) applied, then put(b), then the retried put(a) overwrites b.
    assert not linearizable(
        op(PUT, 0, 10, OK, value="a", client=1),
        op(GET, 1, 2, "a", client=2),
        op(PUT, 3, 4, OK, value="b", client=2),
        op(GET, 5, 6, "b", client=2),
        op(GET, 11, 12, "a", client=2),
    )


# -- unknown outcomes ----------------------------------------------------------------------


def test_an_unknown_write_may_apply_any_time_after_its_start_or_never() -> None:
    base = [op(PUT, 0, 1, OK, value="a"), op(PUT, 2, None, None, value="b", client=1)]
    assert linearizable(*base, op(GET, 3, 4, "a"), op(GET, 5, 6, "a"))  # never applied
    assert linearizable(*base, op(GET, 3, 4, "a"), op(GET, 100, 101, "b"))  # applied late
    assert not linearizable(*base, op(GET, 3, 4, "b"), op(GET, 5, 6, "a"))  # at most once
    # Not before it started:
    assert not linearizable(
        op(PUT, 0, 1, OK, value="a"),
        op(GET, 2, 3, "b"),
        op(PUT, 4, None, None, value="b"),
    )


def test_unknown_cas_and_create_apply_only_if_their_condition_holds() -> None:
    assert linearizable(
        op(PUT, 0, 1, OK, value="a"),
        op(CAS, 2, None, None, expected="a", value="b"),
        op(GET, 3, 4, "b"),
    )
    assert not linearizable(
        op(PUT, 0, 1, OK, value="a"),
        op(CAS, 2, None, None, expected="z", value="b"),
        op(GET, 3, 4, "b"),
    )
    assert not linearizable(
        op(PUT, 0, 1, OK, value="a"),
        op(CREATE, 2, None, None, value="b"),
        op(GET, 3, 4, "b"),
    )


def test_no_effect_ops_and_unknown_reads_are_ignored_but_counted() -> None:
    verdict = check(
        [
            op(PUT, 0, 1, OK, value="a"),
            op(PUT, 2, 3, NO_EFFECT, value="b"),
            op(GET, 4, None, None),
            op(GET, 5, 6, "a"),
        ]
    )
    assert verdict.linearizable
    assert (verdict.ops, verdict.unknown, verdict.no_effect) == (4, 1, 1)
    # A write reported as "never sent" whose value shows up anyway is caught.
    assert not linearizable(op(PUT, 0, 1, NO_EFFECT, value="b"), op(GET, 2, 3, "b"))


# -- a big history from a real sequential execution ------------------------------------------


def sequential_history(seed: int, n: int, keys: int, width: float) -> list[Operation]:
    """Run `n` random ops one after another on a dict (op i takes effect at time i), then
    widen each op's interval around its point by up to `width` on each side, so that many
    overlap. ~5% of writes lose their answer (unknown), and some unknown writes are never
    applied at all. The result is linearizable by construction."""
    rng = random.Random(seed)
    store: dict[str, str | None] = {}
    ops: list[Operation] = []
    for i in range(n):
        key = f"k{rng.randrange(keys)}"
        current = store.get(key)
        value = f"v{i}"
        kind = rng.choice([GET, GET, PUT, CREATE, CAS, CAS, DELETE])
        start = i - rng.uniform(0, width)
        end = i + rng.uniform(0, width)
        if rng.random() < 0.03 and kind != GET:  # lost before it reached the store
            ops.append(
                Operation(key, kind, value=value, expected=current, output=UNKNOWN, start=start)
            )
            continue
        o = Operation(key, kind, start=start, end=end, client=i % 8)
        if kind == GET:
            o.output = current
        elif kind == PUT:
            o.value, o.output = value, OK
            store[key] = value
        elif kind == CREATE:
            o.value = value
            if current is None:
                o.output, store[key] = OK, value
            else:
                o.output, o.observed = EXISTS, current
        elif kind == CAS:
            # Mostly the current value, sometimes a stale one (a racing writer's view).
            stale = [x.value for x in ops[-10:] if x.key == key and x.value]
            o.expected = current if (current and rng.random() < 0.7) or not stale else stale[0]
            o.value = value
            if current is not None and current == o.expected:
                o.output, store[key] = OK, value
            else:
                o.output, o.observed = CONFLICT, current
        else:
            o.output, store[key] = current is not None, None
        if kind != GET and rng.random() < 0.05:
            o.output, o.observed, o.end = UNKNOWN, ANY, float("inf")
        ops.append(o)
    return ops


def test_a_big_linearizable_history_checks_fast() -> None:
    history = sequential_history(seed=7, n=3000, keys=4, width=4.0)
    verdict = check(history)
    assert verdict.linearizable, verdict.detail
    assert verdict.ops == 3000 and verdict.unknown > 100


def test_a_big_history_with_one_stale_read_is_rejected() -> None:
    history = sequential_history(seed=11, n=2000, keys=3, width=3.0)
    assert check(history).linearizable
    # Make one read, late in the run, return a value overwritten long before.
    reads = [o for o in history if o.kind == GET and o.output is not UNKNOWN and o.start > 1500]
    target = reads[0]
    old = next(
        o.value
        for o in history
        if o.key == target.key and o.kind == PUT and o.output == OK and o.end < 1000
    )
    target.output = old
    verdict = check(history)
    assert not verdict.linearizable
    assert f"key {target.key}" in verdict.detail


# -- the fast search agrees with brute force ---------------------------------------------------


def brute_force(ops: list[Operation]) -> bool:
    """Every subset of the unknown ops, every order respecting real time: any legal?"""
    known = [o for o in ops if o.output is not UNKNOWN]
    unknown = [o for o in ops if o.output is UNKNOWN]
    for mask in range(1 << len(unknown)):
        chosen = known + [o for i, o in enumerate(unknown) if mask >> i & 1]
        for order in itertools.permutations(chosen):
            if any(
                later.end < earlier.start
                for i, earlier in enumerate(order)
                for later in order[i + 1 :]
            ):
                continue
            state: str | None = None
            for o in order:
                legal, state = step(state, o)
                if not legal:
                    break
            else:
                return True
    return False


def random_small_history(rng: random.Random) -> list[Operation]:
    values = ["a", "b", "c"]
    ops: list[Operation] = []
    for i in range(rng.randint(1, 6)):
        kind = rng.choice([GET, PUT, CREATE, CAS, DELETE])
        start = rng.uniform(0, 10)
        end: float | None = None if rng.random() < 0.3 else start + rng.uniform(0, 4)
        value = f"w{i}"
        guess = rng.choice([*values, *(o.value for o in ops if o.value)])
        output: Any = {
            GET: rng.choice([None, guess]),
            PUT: OK,
            CREATE: rng.choice([OK, EXISTS]),
            CAS: rng.choice([OK, CONFLICT]),
            DELETE: rng.choice([True, False]),
        }[kind]
        if kind == GET and end is None:
            end = start + 1  # unknown reads are dropped anyway; keep the case known
        extra: dict[str, Any] = {}
        if kind in (PUT, CREATE, CAS):
            extra["value"] = value
        if kind == CAS:
            extra["expected"] = guess
        if output in (EXISTS, CONFLICT) and rng.random() < 0.5:
            extra["observed"] = rng.choice([None, guess])
        ops.append(op(kind, start, end, output, client=i, **extra))
    return ops


def test_the_search_agrees_with_brute_force_on_random_small_histories() -> None:
    rng = random.Random(2024)
    verdicts = set()
    for _ in range(3000):
        history = random_small_history(rng)
        expected = brute_force(history)
        assert check(history).linearizable == expected, "\n".join(map(str, history))
        verdicts.add(expected)
    assert verdicts == {True, False}

"""Record a concurrent history of key-value operations and check it is linearizable.

A storage client is correct under faults only if every history it produces could have come
from one register per key, applying each operation atomically at some instant between the
call's start and its end. Assertions on final state cannot see the subtle bugs (a retried
delete that reports False although it deleted; a late duplicate put); a history check can.

The checker is Wing & Gong's search with Lowe's memoization (as in Knossos and Porcupine):
keys are checked independently (a register per key is P-compositional), and within a key a
depth-first search linearizes, one at a time, an operation that no pending operation
finished before, skipping any (linearized set, register state) pair already explored.

Unknown outcomes (a write that raised `Unavailable(maybe_applied=True)`, a thread cut off)
have no end: such an operation may take effect at any instant after its start, or never.
Operations known to have had no effect (a write that provably never left, a failed read)
are dropped. Values written must be unique per operation, so that the value a read returns
names the write it observed; a CAS's expected mod_revision is recorded as the value read
at that revision, which is the same condition under that uniqueness.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


class _Sentinel:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


UNKNOWN: Any = _Sentinel("UNKNOWN")
"""Output of a call whose outcome is unknown: it may have applied, at any time, or not at all."""
NO_EFFECT: Any = _Sentinel("NO_EFFECT")
"""Output of a call known to have done nothing (the request never left)."""
ANY: Any = _Sentinel("ANY")
"""`observed` when a failed create/CAS did not report the current value."""

GET, PUT, CREATE, CAS, DELETE = "get", "put", "create", "cas", "delete"
OK, EXISTS, CONFLICT = "ok", "exists", "conflict"


@dataclass
class Operation:
    """One call. `output` is, by kind:

    get -> the value read or None; put -> "ok"; create -> "ok" | "exists";
    cas -> "ok" | "conflict"; delete -> True if it deleted something, else False.
    Any kind: UNKNOWN or NO_EFFECT. `observed`: the current value a failed create/CAS
    reported (None if absent), or ANY.
    """

    key: str
    kind: str
    value: str | None = None  # put / create / cas: the (unique) value written
    expected: str | None = None  # cas: the value the key must hold
    output: Any = UNKNOWN
    observed: Any = ANY
    start: float = 0.0
    end: float = math.inf
    client: int = 0

    def __str__(self) -> str:
        args = {
            GET: "",
            PUT: f"{self.value}",
            CREATE: f"{self.value}",
            CAS: f"{self.expected} -> {self.value}",
            DELETE: "",
        }[self.kind]
        seen = "" if self.observed is ANY else f" (saw {self.observed})"
        span = f"[{self.start:.4f}, {self.end:.4f}]"
        return f"c{self.client} {self.kind}({args}) = {self.output}{seen} {span}"


# -- the model: one register ----------------------------------------------------------------


HIDDEN = "\0hidden"
"""The state "some value no operation ever looks for": all such values behave alike."""


def step(state: str | None, op: Operation, written: str | None = None) -> tuple[bool, str | None]:
    """Apply `op` to a register holding `state` (None: absent). (legal?, new state).

    `written` replaces `op.value` as the value stored (the checker passes HIDDEN for values
    nobody reads, so that states differing only in such values are explored once)."""
    out, kind = op.output, op.kind
    unknown = out is UNKNOWN
    value = op.value if written is None else written
    if kind == GET:
        return unknown or out == state, state
    if kind == PUT:
        return True, value
    if kind == CREATE:
        if state is None:
            return unknown or out == OK, value
        return unknown or (out == EXISTS and op.observed in (ANY, state)), state
    if kind == CAS:
        if state is not None and state == op.expected:
            return unknown or out == OK, value
        return unknown or (out == CONFLICT and op.observed in (ANY, state)), state
    if kind == DELETE:
        return unknown or out == (state is not None), None
    raise ValueError(f"unknown operation kind {kind!r}")


# -- the search -----------------------------------------------------------------------------


@dataclass
class KeyVerdict:
    key: str
    linearizable: bool
    ops: int
    unknown: int
    explored: int
    detail: str = ""


@dataclass
class Verdict:
    linearizable: bool
    ops: int
    unknown: int
    no_effect: int
    keys: list[KeyVerdict] = field(default_factory=list)

    @property
    def detail(self) -> str:
        return "\n".join(k.detail for k in self.keys if not k.linearizable)

    def summary(self) -> str:
        word = "linearizable" if self.linearizable else "NOT linearizable"
        return f"{self.ops} ops, {self.unknown} unknown, {self.no_effect} no-effect: {word}"


def check(history: Sequence[Operation], initial: str | None = None) -> Verdict:
    """Is `history` linearizable against one register per key (all starting at `initial`)?"""
    by_key: dict[str, list[Operation]] = defaultdict(list)
    no_effect = 0
    for op in history:
        if op.output is NO_EFFECT or (op.kind == GET and op.output is UNKNOWN):
            no_effect += op.output is NO_EFFECT
            continue  # changes nothing, observes nothing: it linearizes anywhere
        by_key[op.key].append(op)
    keys = [check_key(key, ops, initial) for key, ops in sorted(by_key.items())]
    return Verdict(
        linearizable=all(k.linearizable for k in keys),
        ops=len(history),
        unknown=sum(1 for op in history if op.output is UNKNOWN),
        no_effect=no_effect,
        keys=keys,
    )


def _required(op: Operation) -> str | None:
    """The value the register must hold when `op` takes effect, if its output says so."""
    if op.kind == GET and isinstance(op.output, str):
        return op.output
    if op.kind == CAS and op.output == OK:
        return op.expected
    if op.output in (EXISTS, CONFLICT) and isinstance(op.observed, str):
        return op.observed
    return None


def check_key(key: str, ops: Sequence[Operation], initial: str | None = None) -> KeyVerdict:
    """Wing–Gong–Lowe search over one key's operations.

    Unknown outcomes would make the search exponential (each may or may not have applied,
    at any point), so four sound reductions come first:

    * an unknown write of a value some completed op needed to see must have applied before
      that op ended: it becomes an ordinary op ending there (its output still unchecked);
    * a value nobody reads, expects or reports is stored as HIDDEN, so states that differ
      only in such values are one state;
    * the remaining unknown ops with the same effect (every delete; every put of a HIDDEN
      value...) are interchangeable, so only a count of how many were used is kept, and a
      CAS whose expected value can never come back is dead;
    * a configuration is skipped when one with the same completed ops and state, and no
      more unknown ops used, was explored already (fewer used means more options).
    """
    completed = [op for op in ops if op.output is not UNKNOWN]
    needed_by: dict[str, float] = {}
    for op in completed:
        need = _required(op)
        if need is not None:
            needed_by[need] = min(needed_by.get(need, math.inf), op.end)
    end_of = {id(op): op.end for op in completed}
    pending: list[Operation] = []
    for op in ops:
        if op.output is not UNKNOWN:
            continue
        if op.kind != DELETE and op.value in needed_by:
            end_of[id(op)] = max(op.start, needed_by[op.value])
            completed.append(op)
        else:
            pending.append(op)
    done = sorted(completed, key=lambda o: o.start)
    n = len(done)
    index_of = {id(op): i for i, op in enumerate(done)}

    looked_for: set[str] = set()
    for op in ops:
        looked_for.update(
            v
            for v in (op.output if op.kind == GET else None, op.expected, op.observed)
            if isinstance(v, str)
        )
    written = {id(op): op.value if op.value in looked_for else HIDDEN for op in ops}
    if initial is not None and initial not in looked_for:
        initial = HIDDEN
    writer = {op.value: index_of.get(id(op), -1) for op in ops if op.kind != DELETE and op.value}

    groups_by_effect: dict[object, list[Operation]] = defaultdict(list)
    for op in sorted(pending, key=lambda o: o.start):
        hidden = op.kind == DELETE or written[id(op)] == HIDDEN
        sig = (op.kind, op.expected if op.kind == CAS else None, written[id(op)])
        groups_by_effect[sig if hidden else id(op)].append(op)
    groups = list(groups_by_effect.values())
    group_of = {id(op): g for g, members in enumerate(groups) for op in members}
    cas_expected = [m[0].expected if m[0].kind == CAS else None for m in groups]
    is_cas = [m[0].kind == CAS for m in groups]

    # Lowe's doubly linked list of the completed ops' call and return events in time order.
    # Node 0 is the head; node 2i+1 is op i's call, 2i+2 its return. A call sorts before a
    # return at the same instant: touching intervals count as concurrent (the lenient side).
    events = sorted(
        [(op.start, 0, 2 * i + 1) for i, op in enumerate(done)]
        + [(end_of[id(op)], 1, 2 * i + 2) for i, op in enumerate(done)]
    )
    size = 2 * n + 1
    nxt = [0] * size
    prv = [0] * size
    order = [0] + [node for _, _, node in events]
    for a, b in itertools.pairwise(order):
        nxt[a], prv[b] = b, a
    nxt[order[-1]] = -1

    def lift(i: int) -> None:
        for node in (2 * i + 1, 2 * i + 2):
            p, q = prv[node], nxt[node]
            nxt[p] = q
            if q != -1:
                prv[q] = p

    def unlift(i: int) -> None:
        for node in (2 * i + 2, 2 * i + 1):
            p, q = prv[node], nxt[node]
            nxt[p] = node
            if q != -1:
                prv[q] = node

    state: str | None = initial
    linearized = 0  # bit i: done[i] is in the linearization
    used = [0] * len(groups)  # how many of each group's unknown ops were applied

    def dead(g: int) -> bool:
        """A CAS expecting a value the register does not hold and can never hold again."""
        if not is_cas[g]:
            return False
        expected = cas_expected[g]
        if expected is None:
            return True
        if state == expected:
            return False
        w = writer.get(expected)
        if w is None:
            return True  # nobody writes it (and it is no longer the initial value)
        return w >= 0 and bool(linearized >> w & 1)

    def candidates() -> list[Operation]:
        """Completed ops not preceded by a pending one, then unknown ones, in that order:
        the usual case (an unknown write nobody saw) then needs no branching at all."""
        out: list[Operation] = []
        node = nxt[0]
        bound = math.inf
        while node != -1:
            if node % 2 == 0:  # the first return: nothing called after it can go first
                bound = end_of[id(done[node // 2 - 1])]
                break
            out.append(done[(node - 1) // 2])
            node = nxt[node]
        for g, members in enumerate(groups):
            if used[g] < len(members) and members[used[g]].start <= bound and not dead(g):
                out.append(members[used[g]])
        return out

    def dominated() -> bool:
        """Was this (completed set, state) explored with no more unknown ops used? Record it."""
        vector = tuple(len(groups[g]) if dead(g) else u for g, u in enumerate(used))
        explored = seen.setdefault((linearized, state), [])
        for other in explored:
            if all(o <= v for o, v in zip(other, vector, strict=True)):
                return True
        explored.append(vector)
        return False

    seen: dict[tuple[int, str | None], list[tuple[int, ...]]] = {}
    remaining = n
    stack: list[tuple[list[Operation], int, str | None, Operation]] = []
    cands = candidates()
    index = 0
    deepest: list[Operation] = []
    deepest_state: str | None = initial
    deepest_cands: list[Operation] = cands
    while remaining:
        advanced = False
        while index < len(cands):
            op = cands[index]
            index += 1
            legal, after = step(state, op, written[id(op)])
            if not legal:
                continue
            before = state
            i = index_of.get(id(op), -1)
            state = after
            if i >= 0:
                linearized |= 1 << i
            else:
                used[group_of[id(op)]] += 1
            if dominated():
                state = before
                if i >= 0:
                    linearized &= ~(1 << i)
                else:
                    used[group_of[id(op)]] -= 1
                continue
            stack.append((cands, index, before, op))
            if i >= 0:
                lift(i)
                remaining -= 1
            cands, index = candidates(), 0
            advanced = True
            break
        if advanced:
            continue
        if len(stack) > len(deepest):  # a dead end deeper than any before: keep it to explain
            deepest = [entry[3] for entry in stack]
            deepest_state, deepest_cands = state, cands
        if not stack:
            return KeyVerdict(
                key,
                False,
                len(ops),
                sum(1 for op in ops if op.output is UNKNOWN),
                sum(len(v) for v in seen.values()),
                _explain(key, deepest, deepest_state, deepest_cands),
            )
        cands, index, state, op = stack.pop()
        i = index_of.get(id(op), -1)
        if i >= 0:
            linearized &= ~(1 << i)
            unlift(i)
            remaining += 1
        else:
            used[group_of[id(op)]] -= 1
    return KeyVerdict(
        key,
        True,
        len(ops),
        sum(1 for op in ops if op.output is UNKNOWN),
        sum(len(v) for v in seen.values()),
    )


def _explain(key: str, prefix: list[Operation], state: str | None, stuck: list[Operation]) -> str:
    lines = [
        f"key {key}: no linearization; the longest found orders {len(prefix)} ops, "
        f"leaving the register at {state!r}; last ones:"
    ]
    lines += [f"    {op}" for op in prefix[-8:]]
    lines.append("  none of the possible next ops is legal there:")
    lines += [f"    {op}" for op in stuck[:8]]
    return "\n".join(lines)


# -- recording ------------------------------------------------------------------------------


class History:
    """Thread-safe recorder: `op = history.begin(...)`, call, set `op.output`, `finish(op)`.

    An op finished with its output still UNKNOWN is recorded as unknown (no end time); the
    caller decides which exceptions mean "no effect" by setting `op.output = NO_EFFECT`.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.ops: list[Operation] = []

    def begin(self, client: int, key: str, kind: str, **kwargs: Any) -> Operation:
        op = Operation(key=key, kind=kind, client=client, **kwargs)
        op.start = self._clock()
        return op

    def finish(self, op: Operation) -> None:
        if op.output is not UNKNOWN:
            op.end = self._clock()
        with self._lock:
            self.ops.append(op)

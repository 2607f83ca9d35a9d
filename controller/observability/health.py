"""Named liveness/readiness checks and a progress-based check for stuck loops.

Liveness answers "should this process be restarted?" (a dead watch, stuck workers);
readiness answers "should it receive work/traffic now?" (cache synced, leader elected).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

CheckFn = Callable[[], tuple[bool, str]]


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class HealthReport:
    results: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.results)

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(result for result in self.results if not result.ok)


def _run_check(name: str, check: CheckFn) -> CheckResult:
    try:
        ok, detail = check()
    except Exception as exc:  # a broken check reports unhealthy instead of a 500
        return CheckResult(name, False, f"check raised {type(exc).__name__}: {exc}")
    return CheckResult(name, bool(ok), detail)


class HealthRegistry:
    """Checks by name; adding a name again replaces the earlier check."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._liveness: dict[str, CheckFn] = {}
        self._readiness: dict[str, CheckFn] = {}

    def add_liveness(self, name: str, check: CheckFn) -> None:
        with self._lock:
            self._liveness[name] = check

    def add_readiness(self, name: str, check: CheckFn) -> None:
        with self._lock:
            self._readiness[name] = check

    def remove(self, name: str) -> None:
        with self._lock:
            self._liveness.pop(name, None)
            self._readiness.pop(name, None)

    def liveness(self) -> HealthReport:
        with self._lock:
            checks = list(self._liveness.items())
        return HealthReport(tuple(_run_check(name, fn) for name, fn in checks))

    def readiness(self) -> HealthReport:
        with self._lock:
            checks = list(self._readiness.items())
        return HealthReport(tuple(_run_check(name, fn) for name, fn in checks))


class ProgressCheck:
    """Fails when ``beat()`` has not been called for more than ``max_age_seconds``.

    The clock starts at construction, which grants one full ``max_age_seconds`` of grace
    before the first beat. Beat from the loop being watched whenever it demonstrably
    progresses (an event or progress notification arrived; a worker finished an item or
    found the queue empty).
    """

    def __init__(
        self,
        name: str,
        max_age_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_age_seconds <= 0:
            raise ValueError(f"max_age_seconds must be positive, got {max_age_seconds}")
        self.name = name
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        self._last_beat = clock()

    def beat(self) -> None:
        self._last_beat = self._clock()  # a single attribute store: atomic, no lock needed

    def age_seconds(self) -> float:
        return max(0.0, self._clock() - self._last_beat)

    def check(self) -> tuple[bool, str]:
        age = self.age_seconds()
        if age > self.max_age_seconds:
            return False, (
                f"{self.name}: no progress for {age:.1f}s (limit {self.max_age_seconds:g}s)"
            )
        return True, f"{self.name}: last progress {age:.1f}s ago"

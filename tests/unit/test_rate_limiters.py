"""Exact delays of the rate limiters (deterministic: fake clock, no jitter unless asked)."""

from __future__ import annotations

import random

import pytest

from controller.runtime.clock import FakeClock
from controller.runtime.workqueue import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    RateLimiter,
    default_controller_rate_limiter,
)


def test_exponential_backoff_doubles_from_the_base_and_is_capped() -> None:
    limiter: ItemExponentialFailureRateLimiter[str] = ItemExponentialFailureRateLimiter(
        base_delay=0.1, max_delay=1.0
    )

    delays = [limiter.when("a") for _ in range(7)]

    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])
    assert limiter.num_requeues("a") == 7


def test_exponential_backoff_defaults_match_the_controller_defaults() -> None:
    limiter: ItemExponentialFailureRateLimiter[str] = ItemExponentialFailureRateLimiter()

    delays = [limiter.when("a") for _ in range(15)]

    assert delays[:4] == pytest.approx([0.1, 0.2, 0.4, 0.8])
    assert delays[-1] == 300.0


def test_exponential_backoff_is_tracked_per_item_and_reset_by_forget() -> None:
    limiter: ItemExponentialFailureRateLimiter[str] = ItemExponentialFailureRateLimiter(
        base_delay=1.0, max_delay=100.0
    )
    limiter.when("a")
    limiter.when("a")

    assert limiter.when("b") == 1.0
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert limiter.when("a") == 1.0
    assert limiter.num_requeues("b") == 1


def test_exponential_backoff_survives_more_failures_than_a_float_exponent_can_hold() -> None:
    limiter: ItemExponentialFailureRateLimiter[str] = ItemExponentialFailureRateLimiter(
        base_delay=0.1, max_delay=300.0
    )

    delays = [limiter.when("a") for _ in range(1100)]

    assert delays[-1] == 300.0
    assert max(delays) == 300.0


def test_jitter_only_shortens_delays_and_varies_them() -> None:
    limiter: ItemExponentialFailureRateLimiter[str] = ItemExponentialFailureRateLimiter(
        base_delay=10.0, max_delay=10.0, jitter=0.5, rng=random.Random(7)
    )

    delays = [limiter.when("a") for _ in range(20)]

    assert all(5.0 <= delay <= 10.0 for delay in delays)
    assert len(set(delays)) > 1


@pytest.mark.parametrize(
    ("base_delay", "max_delay", "jitter"),
    [(-0.1, 1.0, 0.0), (2.0, 1.0, 0.0), (0.1, 1.0, 1.5), (0.1, 1.0, -0.1)],
)
def test_exponential_backoff_rejects_nonsensical_settings(
    base_delay: float, max_delay: float, jitter: float
) -> None:
    with pytest.raises(ValueError):
        ItemExponentialFailureRateLimiter(base_delay, max_delay, jitter=jitter)


def test_bucket_allows_a_burst_then_spaces_retries_at_one_over_qps() -> None:
    clock = FakeClock()
    limiter = BucketRateLimiter(qps=10.0, burst=3, clock=clock)

    delays = [limiter.when(f"item-{i}") for i in range(6)]

    assert delays == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2, 0.3])


def test_bucket_refills_over_time_but_never_beyond_the_burst() -> None:
    clock = FakeClock()
    limiter = BucketRateLimiter(qps=10.0, burst=3, clock=clock)
    for _ in range(5):
        limiter.when("x")  # two tokens into debt: the next is free at t=0.3

    clock.step(0.3)
    assert limiter.when("x") == pytest.approx(0.0)
    assert limiter.when("x") == pytest.approx(0.1)

    clock.step(100.0)
    assert [limiter.when("x") for _ in range(4)] == pytest.approx([0.0, 0.0, 0.0, 0.1])


def test_bucket_has_no_per_item_memory() -> None:
    limiter = BucketRateLimiter(qps=1.0, burst=1, clock=FakeClock())
    limiter.when("a")
    limiter.when("a")

    assert limiter.num_requeues("a") == 0
    limiter.forget("a")  # accepted, changes nothing
    assert limiter.when("a") == pytest.approx(2.0)


@pytest.mark.parametrize(("qps", "burst"), [(0.0, 1), (-1.0, 1), (10.0, 0)])
def test_bucket_rejects_nonsensical_settings(qps: float, burst: int) -> None:
    with pytest.raises(ValueError):
        BucketRateLimiter(qps=qps, burst=burst)


class FixedLimiter:
    def __init__(self, delay: float, requeues: int) -> None:
        self.delay = delay
        self.requeues = requeues
        self.asked: list[str] = []
        self.forgotten: list[str] = []

    def when(self, item: str, /) -> float:
        self.asked.append(item)
        return self.delay

    def forget(self, item: str, /) -> None:
        self.forgotten.append(item)

    def num_requeues(self, item: str, /) -> int:
        return self.requeues


def test_max_of_waits_for_the_most_restrictive_limiter_and_informs_all() -> None:
    short, long = FixedLimiter(0.5, requeues=4), FixedLimiter(3.0, requeues=1)
    limiter: RateLimiter[str] = MaxOfRateLimiter(short, long)

    assert limiter.when("a") == 3.0
    assert short.asked == long.asked == ["a"]
    assert limiter.num_requeues("a") == 4
    limiter.forget("a")
    assert short.forgotten == long.forgotten == ["a"]


def test_max_of_needs_at_least_one_limiter() -> None:
    with pytest.raises(ValueError):
        MaxOfRateLimiter[str]()


def test_default_controller_limiter_combines_item_backoff_with_the_overall_bucket() -> None:
    clock = FakeClock()
    limiter: RateLimiter[str] = default_controller_rate_limiter(
        base_delay=0.1, max_delay=300.0, qps=1.0, burst=2, clock=clock
    )

    assert limiter.when("a") == pytest.approx(0.1)  # bucket has tokens: backoff decides
    assert limiter.when("a") == pytest.approx(0.2)
    assert limiter.when("b") == pytest.approx(1.0)  # bucket empty: it decides
    assert limiter.num_requeues("a") == 2
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0

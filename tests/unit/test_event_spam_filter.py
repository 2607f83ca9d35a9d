"""The spam filter's token buckets on a fake clock: burst 25, then one per 5 minutes."""

from __future__ import annotations

import pytest

from controller.events.spam import SpamFilter, TokenBucket
from controller.runtime.clock import FakeClock


def test_burst_of_25_then_refused() -> None:
    spam = SpamFilter(clock=FakeClock())
    assert all(spam.allow("a").allowed for _ in range(25))
    refused = spam.allow("a")
    assert not refused.allowed and refused.first_refusal
    again = spam.allow("a")
    assert not again.allowed and not again.first_refusal  # logged once per spell


def test_one_token_refills_every_five_minutes() -> None:
    clock = FakeClock()
    spam = SpamFilter(clock=clock)
    for _ in range(25):
        spam.allow("a")
    clock.step(299)
    assert not spam.allow("a").allowed
    clock.step(1)
    assert spam.allow("a").allowed
    assert not spam.allow("a").allowed
    clock.step(600)
    assert spam.allow("a").allowed and spam.allow("a").allowed
    refused = spam.allow("a")
    assert not refused.allowed and refused.first_refusal  # a new spell after being allowed


def test_refill_never_exceeds_the_burst() -> None:
    clock = FakeClock()
    spam = SpamFilter(burst=3, clock=clock)
    spam.allow("a")
    clock.step(1_000_000)
    assert [spam.allow("a").allowed for _ in range(4)] == [True, True, True, False]


def test_objects_have_separate_buckets() -> None:
    spam = SpamFilter(burst=1, clock=FakeClock())
    assert spam.allow("a").allowed
    assert not spam.allow("a").allowed
    assert spam.allow("b").allowed


def test_buckets_are_bounded_and_a_forgotten_object_starts_full() -> None:
    spam = SpamFilter(burst=1, clock=FakeClock(), max_entries=2)
    assert spam.allow("a").allowed
    assert not spam.allow("a").allowed
    spam.allow("b")
    spam.allow("c")  # evicts "a", the least recently used
    assert len(spam) == 2
    assert spam.allow("a").allowed


def test_token_bucket_counts_fractions() -> None:
    bucket = TokenBucket(burst=2, refill_seconds=10.0, tokens=0.0, updated=0.0)
    assert not bucket.take(5.0)  # half a token
    assert bucket.take(10.0)  # the second half arrived
    assert not bucket.take(10.0)


def test_time_going_back_refills_nothing() -> None:
    bucket = TokenBucket(burst=2, refill_seconds=10.0, tokens=0.0, updated=100.0)
    assert not bucket.take(50.0)


@pytest.mark.parametrize(("burst", "refill"), [(0, 300.0), (25, 0.0), (25, -1.0)])
def test_rejects_a_filter_that_cannot_allow_anything(burst: int, refill: float) -> None:
    with pytest.raises(ValueError, match="burst >= 1 and refill_seconds > 0"):
        SpamFilter(burst=burst, refill_seconds=refill)

"""`labctl get`'s AGE and describe's event ages: kubectl's format, from a fixed `now`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controller.resources import format_timestamp
from controller.resources.age import age, human_duration

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        # k8s.io/apimachinery/pkg/util/duration TestHumanDuration
        (1, "1s"),
        (70, "70s"),
        (190, "3m10s"),
        (70 * 60, "70m"),
        (47 * 3600, "47h"),
        (49 * 3600, "2d1h"),
        ((8 * 24 + 2) * 3600, "8d"),
        (367 * 24 * 3600, "367d"),
        ((365 * 2 * 24 + 25) * 3600, "2y1d"),
        ((365 * 8 * 24 + 2) * 3600, "8y"),
        # the examples and the boundaries between formats
        (45, "45s"),
        (5 * 60, "5m"),
        (3 * 3600, "3h"),
        (2 * 86400, "2d"),
        (0, "0s"),
        (0.9, "0s"),
        (119, "119s"),
        (120, "2m"),
        (599, "9m59s"),
        (600, "10m"),
        (179 * 60 + 59, "179m"),
        (3 * 3600 + 30 * 60, "3h30m"),
        (8 * 3600 + 59 * 60, "8h"),
        (2 * 86400 + 5 * 3600, "2d5h"),
        (2 * 365 * 86400, "2y"),
        (-1, "0s"),  # a second of clock skew between hosts reads as now
        (-2, "<invalid>"),
    ],
)
def test_human_duration_matches_kubectl(seconds: float, expected: str) -> None:
    assert human_duration(seconds) == expected


def test_age_reads_rfc3339_timestamps_against_now() -> None:
    assert age(format_timestamp(NOW - timedelta(seconds=45)), NOW) == "45s"
    assert age(format_timestamp(NOW - timedelta(minutes=5)), NOW) == "5m"
    assert age(format_timestamp(NOW - timedelta(hours=3)), NOW) == "3h"
    assert age(format_timestamp(NOW - timedelta(days=2)), NOW) == "2d"
    assert age("2026-03-01T11:59:59.999999Z", NOW) == "0s"  # any fractional precision


@pytest.mark.parametrize("missing", [None, "", "yesterday", "2026-02-30T00:00:00Z"])
def test_age_of_a_missing_or_unreadable_timestamp_is_unknown(missing: str | None) -> None:
    assert age(missing, NOW) == "<unknown>"

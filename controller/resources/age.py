"""How long ago, as kubectl prints it (AGE, LAST SEEN): one definition for every column."""

from __future__ import annotations

from datetime import UTC, datetime

from controller.resources.meta import parse_timestamp


def human_duration(seconds: float) -> str:
    """kubectl's AGE (k8s.io/apimachinery duration.HumanDuration): 45s, 5m30s, 3h, 2d5h, 1y.

    Precise while small, coarser as it grows; up to a second in the future is "0s" (clock
    skew between hosts), more is "<invalid>"."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        return f"{hours // 24 // 365}y{rest}d" if rest else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def age(timestamp: str | None, now: datetime | None = None) -> str:
    """How long ago `timestamp` (RFC 3339) was; `<unknown>` when absent or unreadable."""
    if not timestamp:
        return "<unknown>"
    now = now or datetime.now(UTC)
    try:
        moment = parse_timestamp(timestamp)
    except ValueError:
        return "<unknown>"
    return human_duration((now - moment.replace(tzinfo=moment.tzinfo or UTC)).total_seconds())

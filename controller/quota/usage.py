"""A namespace's quota usage: how many LabWorkers it holds, in total and per instance type.

The usage record `<root>/quota-usage/<namespace>` is one small JSON object,
`{"labworkers": 3, "labworkers/m5zn.metal": 1}`, kept for every namespace that has ever
held a worker, with or without a LabQuota: every admitted create, type change and delete
rewrites it in the same etcd transaction as the worker itself (controller.quota.enforcement),
so at every etcd revision it equals the count of the namespace's workers — unless someone
wrote workers around the repository (etcdctl), which the quota controller heals.

`Usage` is immutable arithmetic on those counts. Its canonical form always has `labworkers`
and has a type key only while it is above zero, so two usages that count the same workers
compare (and encode) equal.

A record that cannot be read is never taken as zero: `UsageUnreadable` says why, and the
admission refuses creates until it is fixed (docs/architecture.md, Quotas).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.quota.keys import LABWORKERS, TYPE_PREFIX, keys_of_instance
from controller.resources.names import shorten

USAGE_SEGMENT = "quota-usage"

MAX_RECORD_BYTES = 256 * 1024
"""Far above any real record (one short key per instance type in use)."""


def usage_key(root: str, namespace: str) -> str:
    """The etcd key of `namespace`'s usage record."""
    return f"{root.rstrip('/')}/{USAGE_SEGMENT}/{namespace}"


class UsageUnreadable(ValueError):
    """The usage record is not a usage record; `detail` says what is wrong with it."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"{key}: {detail}")
        self.key = key
        self.detail = detail


@dataclass(frozen=True)
class Usage:
    """Counts by resource name (controller.quota.keys), canonical (see the module doc)."""

    counts: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        canonical = {LABWORKERS: int(self.counts.get(LABWORKERS, 0))}
        for key in sorted(self.counts):
            if key != LABWORKERS and self.counts[key] > 0:
                canonical[key] = int(self.counts[key])
        object.__setattr__(self, "counts", canonical)

    @property
    def total(self) -> int:
        return self.counts[LABWORKERS]

    def get(self, key: str) -> int:
        return self.counts.get(key, 0)

    def apply(self, delta: Mapping[str, int]) -> tuple[Usage, list[str]]:
        """Usage after `delta` (negative entries give back), and the keys that would have gone
        below zero — kept at zero: the record had drifted (a worker written around the
        repository was deleted through it); the quota controller recounts."""
        counts = dict(self.counts)
        below: list[str] = []
        for key, change in delta.items():
            value = counts.get(key, 0) + change
            if value < 0:
                below.append(key)
                value = 0
            counts[key] = value
        return Usage(counts), below

    def encode(self) -> bytes:
        return json.dumps(self.counts, separators=(",", ":")).encode()

    def describe(self) -> str:
        """`labworkers=3, labworkers/m5zn.metal=1`: for logs and Events."""
        return ", ".join(f"{key}={value}" for key, value in self.counts.items())

    @classmethod
    def decode(cls, key: str, raw: bytes) -> Usage:
        """The record stored under `key`; raises UsageUnreadable naming what is wrong."""
        if len(raw) > MAX_RECORD_BYTES:
            raise UsageUnreadable(key, f"{len(raw)} bytes, at most {MAX_RECORD_BYTES}")
        try:
            document: Any = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise UsageUnreadable(key, f"not JSON ({_first_line(exc)})") from None
        if not isinstance(document, dict):
            raise UsageUnreadable(key, f"a JSON {type(document).__name__}, not an object of counts")
        for name, value in document.items():
            if name != LABWORKERS and not (
                name.startswith(TYPE_PREFIX) and len(name) > len(TYPE_PREFIX)
            ):
                raise UsageUnreadable(
                    key,
                    f"{shorten(name)} is not 'labworkers' or 'labworkers/<instance type>'",
                )
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UsageUnreadable(
                    key, f"{shorten(name)} is {shorten(repr(value))}, not a count (an integer ≥ 0)"
                )
        return cls(document)


def worker_delta(instance_type: str, sign: int = 1) -> dict[str, int]:
    """What one worker of `instance_type` adds (sign 1) or gives back (sign -1)."""
    return dict.fromkeys(keys_of_instance(instance_type), sign)


def move_delta(old_type: str, new_type: str) -> dict[str, int]:
    """A worker changing instance type: the total stays, one type key gives to the other."""
    if old_type == new_type:
        return {}
    _, old_key = keys_of_instance(old_type)
    _, new_key = keys_of_instance(new_type)
    return {old_key: -1, new_key: 1}


def count(instance_types: Iterable[str]) -> Usage:
    """The usage of workers with these instance types (one entry per worker)."""
    counts: dict[str, int] = {LABWORKERS: 0}
    for instance_type in instance_types:
        for key in keys_of_instance(instance_type):
            counts[key] = counts.get(key, 0) + 1
    return Usage(counts)


def differences(recorded: Usage, counted: Usage) -> Iterator[tuple[str, int, int]]:
    """(key, recorded, counted) for every key on which they disagree, in key order."""
    for key in sorted(set(recorded.counts) | set(counted.counts)):
        if recorded.get(key) != counted.get(key):
            yield key, recorded.get(key), counted.get(key)


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__

"""What the informer caches per LabWorker: the validated raw JSON plus its index values.

A pydantic model tree per cached worker would cost several KB and give the cyclic GC a
million containers to rescan; the raw bytes cost about their length. The value is validated
once when it arrives (an invalid one is reported and skipped, never cached) and decoded again
only when a worker actually reconciles it — a few microseconds next to an etcd round trip.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from controller.resources import LabWorker
from controller.resources.limits import InvalidStoredValue, decode_stored
from controller.runtime.informer import InvalidObjectError
from controller.storage import KeyValue


@dataclass(frozen=True, slots=True)
class LabWorkerRecord:
    revision: int
    raw: bytes
    phase: str
    lab_track: str
    labels: tuple[str, ...]
    """"key=value" strings, the label index's values."""

    def decode(self) -> LabWorker:
        worker = LabWorker.model_validate_json(self.raw)
        worker.metadata.resource_version = self.revision
        return worker


def decode_record(key: str, kv: KeyValue) -> LabWorkerRecord:
    """Validate one stored value; raise InvalidObjectError (reason first) to skip it.

    The rules (size, key, JSON depth, schema, key/name match) are controller.resources.limits',
    the same the repository enforces on every write, so nothing written through it is skipped.
    """
    try:
        worker = decode_stored(key, kv.value)
    except InvalidStoredValue as exc:
        raise InvalidObjectError(key, f"{exc.reason}: {exc.detail}") from None
    meta = worker.metadata
    # Interned: 100k workers share a handful of phases, tracks and labels; one copy each.
    return LabWorkerRecord(
        revision=kv.mod_revision,
        raw=kv.value,
        phase=sys.intern(worker.status.phase.value) if worker.status.phase else "",
        lab_track=sys.intern(worker.spec.lab_track),
        labels=tuple(sys.intern(f"{k}={v}") for k, v in sorted(meta.labels.items())),
    )


INDEXERS: dict[str, Callable[[LabWorkerRecord], list[str]]] = {
    "phase": lambda r: [r.phase] if r.phase else [],
    "labTrack": lambda r: [r.lab_track],
    "label": lambda r: list(r.labels),
}

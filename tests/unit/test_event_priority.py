"""Which informer events are users' changes (HIGH) and which can wait (LOW).

The objects are real cache Records decoded from stored JSON, so the test also pins what the
record keeps for this decision (generation, deletion, labels).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from controller.labworker.kind import LABWORKER
from controller.runtime.controller import event_priority
from controller.runtime.informer import EventKind, InformerEvent
from controller.runtime.record import Record, record_decoder
from controller.runtime.workqueue import Priority
from controller.storage import KeyValue

KEY = "default/w1"
decode = record_decoder(LABWORKER)


def record(
    revision: int,
    *,
    generation: int = 1,
    phase: str = "",
    labels: dict[str, str] | None = None,
    deleting: bool = False,
) -> Record[Any]:
    doc: dict[str, Any] = {
        "apiVersion": LABWORKER.api_version,
        "kind": "LabWorker",
        "metadata": {
            "name": "w1",
            "namespace": "default",
            "uid": "u1",
            "generation": generation,
            "labels": labels or {},
            "creationTimestamp": "2024-01-01T00:00:00Z",
        },
        "spec": {"labTrack": "t"},
        "status": {"phase": phase} if phase else {},
    }
    if deleting:
        doc["metadata"]["deletionTimestamp"] = "2024-01-02T00:00:00Z"
        doc["metadata"]["finalizers"] = ["labs.example.com/instance"]
    kv = KeyValue(f"/x/{KEY}", json.dumps(doc).encode(), 1, revision, 1)
    return decode(KEY, kv)


def modified(previous: Record[Any], current: Record[Any]) -> InformerEvent[Record[Any]]:
    return InformerEvent(EventKind.MODIFIED, KEY, current, current.revision, previous=previous)


def test_new_and_deleted_objects_are_users_changes() -> None:
    obj = record(2)

    assert event_priority(InformerEvent(EventKind.ADDED, KEY, obj, 2)) is Priority.HIGH
    assert event_priority(InformerEvent(EventKind.DELETED, KEY, obj, 3)) is Priority.HIGH


@pytest.mark.parametrize("kind", [EventKind.ADDED, EventKind.RESYNC])
def test_initial_list_and_resync_are_background(kind: EventKind) -> None:
    event = InformerEvent(kind, KEY, record(2), 2, background=True)

    assert event_priority(event) is Priority.LOW


def test_a_status_write_continues_at_the_priority_of_the_work_that_wrote_it() -> None:
    """The controller's own write echoing back: same generation, labels, no deletion."""
    assert event_priority(modified(record(2), record(3, phase="Ready"))) is None


@pytest.mark.parametrize(
    "change",
    [
        {"generation": 2},  # a spec edit
        {"deleting": True},  # labctl delete of an object with a finalizer
        {"labels": {"team": "a"}},  # labels select objects (pools)
    ],
    ids=["spec", "deletion", "labels"],
)
def test_a_users_write_is_high(change: dict[str, Any]) -> None:
    assert event_priority(modified(record(2), record(3, **change))) is Priority.HIGH


def test_an_object_that_cannot_tell_is_treated_as_a_users_change() -> None:
    event = InformerEvent(EventKind.MODIFIED, KEY, "new", 3, previous="old")

    assert event_priority(event) is Priority.HIGH

"""The Event model and kind: names, columns, field indexes, validation, recorder limits."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from controller.app import kind_registry
from controller.events import KINDS
from controller.events.kind import EVENT
from controller.events.metrics import (
    NOOP_EVENT_METRICS,
    EventMetrics,
    NoopEventMetrics,
    event_metrics_from,
)
from controller.events.model import MAX_MESSAGE_LENGTH, Event
from controller.events.recorder import shorten_message
from controller.resources import ObjectKey
from controller.resources.age import age


def document(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "lab.neuroglia.io/v1",
        "kind": "Event",
        "metadata": {"name": "w1.17a0b1c2d3e4f506", "namespace": "emea"},
        "involvedObject": {
            "apiVersion": "lab.neuroglia.io/v1",
            "kind": "LabWorker",
            "name": "w1",
            "namespace": "emea",
            "uid": "uid-1",
        },
        "reason": "Provisioning",
        "message": "instance i-1 requested",
        "type": "Normal",
        "count": 3,
        "firstTimestamp": "2024-05-01T12:00:00.000Z",
        "lastTimestamp": "2024-05-01T12:05:00.000Z",
        "reportingController": "lab-resource-controller",
        "reportingInstance": "host-1",
    }
    doc.update(overrides)
    return doc


def test_kind_names_and_segment() -> None:
    assert KINDS == (EVENT,)
    assert EVENT.names() >= {"events", "event", "ev", "events.lab.neuroglia.io"}
    assert EVENT.segment == "events"
    assert EVENT.etcd_key("/root", ObjectKey("emea", "w1.1")) == "/root/events/emea/w1.1"
    assert kind_registry().lookup("ev") is EVENT


def test_event_has_no_status() -> None:
    event = Event.from_dict(document())
    assert Event.status_field is None and event.status_value() is None
    assert set(event.user_fields()) >= {"involved_object", "reason", "message", "count"}


def test_round_trip_is_camel_case() -> None:
    event = Event.from_dict(document())
    stored = event.to_dict()
    assert {k: v for k, v in stored.items() if k != "metadata"} == {
        k: v for k, v in document().items() if k != "metadata"
    }
    assert stored["metadata"]["name"] == "w1.17a0b1c2d3e4f506"
    assert Event.from_json(event.to_storage_json()) == event


def test_unknown_fields_from_a_newer_controller_are_ignored() -> None:
    event = Event.from_dict(document(series={"count": 2}))
    assert event.count == 3


@pytest.mark.parametrize(
    "overrides",
    [
        {"type": "Error"},
        {"reason": ""},
        {"reason": "R" * 129},
        {"message": "m" * (MAX_MESSAGE_LENGTH + 1)},
        {"count": 0},
        {"lastTimestamp": "yesterday"},
        {"reportingController": ""},
    ],
)
def test_invalid_events_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Event.from_dict(document(**overrides))


def test_printer_columns_like_kubectl() -> None:
    event = Event.from_dict(document(lastTimestamp=_ago(seconds=630)))  # "10m" for a minute
    cells = {c.name: c.value(event) for c in EVENT.columns}
    assert cells == {
        "LAST SEEN": "10m",
        "TYPE": "Normal",
        "REASON": "Provisioning",
        "OBJECT": "labworker/w1",
        "MESSAGE": "instance i-1 requested",
        "COUNT": "3",
        "SOURCE": "lab-resource-controller, host-1",
    }
    assert [c.name for c in EVENT.columns if c.wide] == ["COUNT", "SOURCE"]


def test_field_indexes() -> None:
    event = Event.from_dict(document(type="Warning", reason="InstanceLost"))
    values = {name: get(event) for name, get in EVENT.field_indexes.items()}
    assert values == {
        "involvedObject.name": "w1",
        "involvedObject.uid": "uid-1",
        "reason": "InstanceLost",
        "type": "Warning",
    }
    no_uid = document()
    del no_uid["involvedObject"]["uid"]
    assert EVENT.field_indexes["involvedObject.uid"](Event.from_dict(no_uid)) == ""


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-1, "0s"),
        (0, "0s"),
        (59, "59s"),
        (60, "60s"),
        (3599, "59m"),
        (7200, "120m"),
        (90000, "25h"),
    ],
)
def test_last_seen_is_kubectls_age(seconds: int, shown: str) -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    stamp = datetime.fromtimestamp(now.timestamp() - seconds, UTC)
    assert age(stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"), now) == shown


def test_long_messages_are_shortened_to_fit() -> None:
    assert shorten_message("short") == "short"
    exact = "m" * MAX_MESSAGE_LENGTH
    assert shorten_message(exact) == exact
    long = shorten_message("m" * 5000)
    assert len(long) == MAX_MESSAGE_LENGTH and long.endswith("…")
    Event.from_dict(document(message=long))


class _Counting:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def event_recorded(self, type: str) -> None:
        self.calls.append(("recorded", type))

    def event_aggregated(self, type: str) -> None:
        self.calls.append(("aggregated", type))

    def event_dropped(self, reason: str) -> None:
        self.calls.append(("dropped", reason))

    def event_write_failed(self) -> None:
        self.calls.append(("write_failed", ""))


def test_metrics_are_used_only_when_implemented() -> None:
    counting = _Counting()
    assert isinstance(counting, EventMetrics)
    assert event_metrics_from(counting) is counting
    assert event_metrics_from(object()) is NOOP_EVENT_METRICS
    assert isinstance(NoopEventMetrics(), EventMetrics)


def _ago(seconds: int) -> str:
    moment = datetime.fromtimestamp(datetime.now(UTC).timestamp() - seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

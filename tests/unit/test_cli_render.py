"""What `labctl get` and `labctl describe` print for any kind, and how `apply` reads a
document by its kind: pure functions, a fixed `now`, no etcd."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

import controller.cli.labworker_page  # noqa: F401 - registers the LabWorker describe layout
from controller.app import kind_registry
from controller.cli.errors import CliError
from controller.cli.manifests import to_object
from controller.cli.models import has_replicas, phase_values
from controller.cli.printers import (
    describe,
    describe_generic,
    event_lines,
    table_rows,
)
from controller.events.kind import EVENT
from controller.events.model import Event
from controller.labworker.kind import LABWORKER
from controller.labworker.model import LabWorker
from controller.resources import Condition

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
REGISTRY = kind_registry()


def worker(
    name: str, namespace: str = "default", created: str = "2026-03-01T11:55:00Z"
) -> LabWorker:
    w = LabWorker.model_validate(
        {
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
            "spec": {"labTrack": "ccna"},
        }
    )
    return w


def event(reason: str, first: str, last: str, count: int = 1, **extra: Any) -> Event:
    return Event.model_validate(
        {
            "metadata": {"name": f"w1.{reason.lower()}"},
            "involvedObject": {
                "apiVersion": "lab.neuroglia.io/v1",
                "kind": "LabWorker",
                "name": "w1",
                "namespace": "default",
            },
            "reason": reason,
            "message": extra.pop("message", f"{reason} happened"),
            "type": extra.pop("type", "Normal"),
            "count": count,
            "firstTimestamp": first,
            "lastTimestamp": last,
            "reportingController": "labworker-controller",
            "reportingInstance": "replica-a",
        }
    )


# -- get -------------------------------------------------------------------------------------


def test_table_is_name_then_columns_then_age_then_wide_columns() -> None:
    rows = table_rows(LABWORKER, [worker("w1")], NOW)
    assert rows == [
        ["NAME", "PHASE", "TRACK", "DESIRED", "AGE"],
        ["w1", "<none>", "ccna", "Ready", "5m"],
    ]
    wide = table_rows(LABWORKER, [worker("w1", "emea")], NOW, wide=True, namespaces=True)
    narrow = [c.name for c in LABWORKER.columns if not c.wide]
    extra = [c.name for c in LABWORKER.columns if c.wide]
    assert wide[0] == ["NAMESPACE", "NAME", *narrow, "AGE", *extra]
    assert wide[1][:2] == ["emea", "w1"]
    qualified = table_rows(LABWORKER, [worker("w1")], NOW, qualify=True)
    assert qualified[1][0] == "labworker.lab.neuroglia.io/w1"


def test_every_registered_kind_prints_a_table_from_its_own_columns() -> None:
    for kind in REGISTRY:
        header = table_rows(kind, [], NOW, wide=True)[0]
        assert header[0] == "NAME" and "AGE" in header
        assert header[1:] == [
            *(c.name for c in kind.columns if not c.wide),
            "AGE",
            *(c.name for c in kind.columns if c.wide),
        ]


# -- describe --------------------------------------------------------------------------------


def test_events_section_is_kubectl_shaped_oldest_first() -> None:
    lines = event_lines(
        [
            event("Started", "2026-03-01T11:50:00Z", "2026-03-01T11:59:15Z", count=5),
            event(
                "Failed",
                "2026-03-01T09:00:00Z",
                "2026-03-01T09:00:00Z",
                type="Warning",
                message="  boot\nfailed  ",
            ),
        ],
        NOW,
    )
    assert lines[0] == "Events:"
    assert lines[1].split() == ["Type", "Reason", "Age", "From", "Message"]
    assert lines[2].split() == ["----", "------", "---", "----", "-------"]
    assert lines[3].split() == [
        "Warning",
        "Failed",
        "3h",
        "labworker-controller,",
        "replica-a",
        "boot",
        "failed",
    ]
    assert "45s (x5 over 10m)" in lines[4] and "Started happened" in lines[4]
    assert all(line.startswith("  ") for line in lines[1:])


def test_events_section_without_events_says_none() -> None:
    assert event_lines([], NOW) == ["Events:             <none>"]


def test_labworker_describe_keeps_its_layout_and_ends_with_events() -> None:
    w = worker("w1")
    w.metadata.uid = "u1"
    text = describe(
        LABWORKER, w, [event("Ready", "2026-03-01T11:58:00Z", "2026-03-01T11:58:00Z")], NOW
    )
    lines = text.splitlines()
    assert lines[0] == "Name:               w1"
    assert "  Lab Track:        ccna" in lines
    assert "Created:            2026-03-01T11:55:00Z (5m ago)" in lines
    events_at = lines.index("Events:")
    assert lines[events_at - 2 : events_at] == ["Conditions:", "  <none>"]
    assert lines[-1].split()[:3] == ["Normal", "Ready", "2m"]


def test_generic_describe_renders_spec_status_and_conditions_of_any_kind() -> None:
    w = worker("w1")
    w.spec.instance.tags["team"] = "blue"
    w.status.conditions = [
        Condition(
            type="Ready",
            status="True",
            reason="HostReady",
            message="all good",
            last_transition_time="2026-03-01T11:59:00Z",
        )
    ]
    lines = describe_generic(LABWORKER, w, NOW)
    assert "Kind:               LabWorker (lab.neuroglia.io/v1)" in lines
    spec = lines.index("Spec:")
    assert lines[spec + 1].split() == ["labTrack:", "ccna"]
    assert "    tags:" in lines and "      team: blue" in lines
    status = lines.index("Status:")
    assert "  Conditions:" in lines[status:]
    table = lines[lines.index("  Conditions:") + 1 :]
    assert table[0].split() == ["TYPE", "STATUS", "REASON", "LAST", "TRANSITION", "MESSAGE"]
    assert table[1].split() == ["Ready", "True", "HostReady", "2026-03-01T11:59:00Z", "all", "good"]


def test_generic_describe_of_a_kind_without_status_shows_its_fields() -> None:
    e = event("Started", "2026-03-01T11:50:00Z", "2026-03-01T11:59:15Z", count=5)
    lines = describe_generic(EVENT, e, NOW)
    assert "Involved Object:" in lines
    involved = lines[lines.index("Involved Object:") + 1 : lines.index("Involved Object:") + 6]
    assert ["name:", "w1"] in [line.split() for line in involved]
    assert "Reason:             Started" in lines
    assert "Reporting Controller: labworker-controller" in lines  # never glued to its label
    assert not any(line.startswith("Status") for line in lines)


# -- kind capabilities -------------------------------------------------------------------------


def test_phase_and_replicas_are_read_from_the_model() -> None:
    phases = phase_values(LABWORKER)
    assert phases is not None and {"Pending", "Ready", "Active", "Terminated"} <= phases
    assert phase_values(EVENT) is None
    assert not has_replicas(LABWORKER) and not has_replicas(EVENT)
    for kind in REGISTRY:
        if kind.kind == "LabWorkerPool":
            assert has_replicas(kind) and phase_values(kind) is None


# -- apply's documents -------------------------------------------------------------------------


def test_a_document_becomes_an_object_of_the_kind_it_names() -> None:
    kind, obj = to_object(
        REGISTRY,
        "m.yaml",
        {
            "apiVersion": "lab.neuroglia.io/v1",
            "kind": "LabWorker",
            "metadata": {"name": "w1"},
            "spec": {"labTrack": "ccna"},
            "status": {"phase": "Ready"},
        },
        "emea",
    )
    assert kind is LABWORKER and isinstance(obj, LabWorker)
    assert obj.metadata.namespace == "emea"  # apply -n, for a document without one
    assert obj.status.phase is None  # apply never writes status
    kind, obj = to_object(
        REGISTRY, "m.yaml", {"metadata": {"name": "w2"}, "spec": {"labTrack": "x"}}, None
    )
    assert kind is LABWORKER  # no kind: a LabWorker, as manifests before other kinds existed
    kind, _ = to_object(
        REGISTRY,
        "m.yaml",
        event("Ready", "2026-03-01T11:50:00Z", "2026-03-01T11:50:00Z").to_dict(),
        None,
    )
    assert kind is EVENT


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            {"kind": "Deployment", "metadata": {"name": "x"}},
            "kind 'Deployment' is not supported (known: ",
        ),
        (
            {"kind": "LabWorker", "metadata": {"name": "x"}, "spec": {"labTrack": "a", "bogus": 1}},
            "invalid LabWorker: spec.bogus: unknown field",
        ),
        ({"kind": "Event", "metadata": {"name": "x"}, "reason": "R"}, "invalid Event:"),
        (["a", "list"], "expected an object with apiVersion, kind and metadata, got list"),
    ],
)
def test_a_bad_document_is_refused_naming_its_origin(doc: Any, expected: str) -> None:
    with pytest.raises(CliError) as info:
        to_object(REGISTRY, "m.yaml", doc, None)
    assert str(info.value).startswith("m.yaml: ") and expected in str(info.value)

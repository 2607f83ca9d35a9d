"""The Event kind: where Events are stored, what `labctl get events` prints, what the cache
indexes (the field selectors `labctl get ev --field-selector involvedObject.name=…` uses)."""

from __future__ import annotations

from datetime import UTC, datetime

from controller.events.model import API_VERSION, KIND, Event
from controller.resources import Kind, PrinterColumn, parse_timestamp


def age(timestamp: str, now: datetime | None = None) -> str:
    """How long ago, kubectl-style: `45s`, `12m`, `3h`, `2d`."""
    moment = now or datetime.now(UTC)
    seconds = int((moment - parse_timestamp(timestamp)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def involved(event: Event) -> str:
    """kubectl's OBJECT column: `kind/name`, the kind lower-case."""
    return f"{event.involved_object.kind.lower()}/{event.involved_object.name}"


EVENT: Kind[Event] = Kind(
    api_version=API_VERSION,
    kind=KIND,
    plural="events",
    segment="events",
    model=Event,
    short_names=("ev",),
    schema_file="event.schema.json",
    columns=(
        PrinterColumn("LAST SEEN", lambda e: age(e.last_timestamp)),
        PrinterColumn("TYPE", lambda e: e.type),
        PrinterColumn("REASON", lambda e: e.reason),
        PrinterColumn("OBJECT", involved),
        PrinterColumn("MESSAGE", lambda e: e.message),
        PrinterColumn("COUNT", lambda e: str(e.count), wide=True),
        PrinterColumn(
            "SOURCE", lambda e: f"{e.reporting_controller}, {e.reporting_instance}", wide=True
        ),
    ),
    field_indexes={
        "involvedObject.name": lambda e: e.involved_object.name,
        "involvedObject.uid": lambda e: e.involved_object.uid or "",
        "reason": lambda e: e.reason,
        "type": lambda e: e.type,
    },
)

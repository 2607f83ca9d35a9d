"""The Event kind: where Events are stored, what `labctl get events` prints, what the cache
indexes (the field selectors `labctl get ev --field-selector involvedObject.name=…` uses)."""

from __future__ import annotations

from controller.events.model import API_VERSION, KIND, Event
from controller.resources import Kind, PrinterColumn
from controller.resources.age import age


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

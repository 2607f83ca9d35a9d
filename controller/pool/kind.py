"""The LabWorkerPool kind: where pools are stored, what `labctl` calls and prints."""

from __future__ import annotations

from controller.pool.model import API_VERSION, KIND, LabWorkerPool
from controller.resources import Kind, PrinterColumn

POOL: Kind[LabWorkerPool] = Kind(
    api_version=API_VERSION,
    kind=KIND,
    plural="labworkerpools",
    segment="lab-worker-pools",
    model=LabWorkerPool,
    short_names=("lwp", "pool"),
    schema_file="labworkerpool.schema.json",
    columns=(
        PrinterColumn("DESIRED", lambda p: str(p.spec.replicas)),
        PrinterColumn("CURRENT", lambda p: str(p.status.replicas)),
        PrinterColumn("READY", lambda p: str(p.status.ready_replicas)),
        PrinterColumn("ACTIVE", lambda p: str(p.status.active_replicas)),
        PrinterColumn("UP-TO-DATE", lambda p: str(p.status.updated_replicas)),
        PrinterColumn("RETIRING", lambda p: str(p.status.retiring_replicas), wide=True),
        PrinterColumn("TRACK", lambda p: p.spec.template.spec.lab_track, wide=True),
        PrinterColumn("SELECTOR", lambda p: str(p.spec.label_selector()), wide=True),
    ),
)

"""The LabWorker kind: where it is stored, what `labctl` calls and prints, what its cache
indexes. Everything the runtime and the CLI know about LabWorkers comes from here."""

from __future__ import annotations

from controller.labworker.model import API_VERSION, KIND, LabWorker
from controller.resources import Kind, PrinterColumn


def _phase(w: LabWorker) -> str:
    return w.status.phase.value if w.status.phase else "<none>"


LABWORKER: Kind[LabWorker] = Kind(
    api_version=API_VERSION,
    kind=KIND,
    plural="labworkers",
    segment="lab-workers",
    model=LabWorker,
    short_names=("lw",),
    schema_file="labworker.schema.json",
    columns=(
        PrinterColumn("PHASE", _phase),
        PrinterColumn("TRACK", lambda w: w.spec.lab_track),
        PrinterColumn("DESIRED", lambda w: w.spec.desired_phase.value),
        PrinterColumn("INSTANCE", lambda w: w.status.instance_id or "<none>", wide=True),
        PrinterColumn("ADDRESS", lambda w: w.status.address or "<none>", wide=True),
        PrinterColumn("LABS", lambda w: str(w.status.hosted_labs), wide=True),
        PrinterColumn("GEN", lambda w: str(w.metadata.generation), wide=True),
        PrinterColumn("OBSERVED", lambda w: str(w.status.observed_generation), wide=True),
    ),
    field_indexes={
        "phase": lambda w: w.status.phase.value if w.status.phase else "",
        "labTrack": lambda w: w.spec.lab_track,
    },
)

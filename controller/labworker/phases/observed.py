"""What one round of provider calls found: the record every phase's observe step fills in.

It sits below both the phase modules (which produce and read it) and
`controller/labworker/observation.py` (which dispatches to the steps and re-exports it), so
neither has to import the other's side and no import cycle is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.labworker.model import LabWorker
from controller.labworker.phase import Phase
from controller.labworker.provider import HostHealth, Instance


@dataclass(frozen=True, slots=True)
class Observation:
    """What the provider said, and which version of the worker it was asked for."""

    phase: Phase | None
    generation: int
    deleting: bool
    instance: Instance | None = None
    instance_known: bool = False
    """True when the provider was asked about the instance (so None means there is none)."""
    health: HostHealth | None = None
    license_granted: bool | None = None
    """None: licensing was not attempted in this round."""
    license_error: str | None = None
    """Why licensing failed before reaching the host (the license secret is missing)."""
    fatal_error: str | None = None
    transient_error: str | None = None

    @classmethod
    def blank(cls, worker: LabWorker) -> Observation:
        """No provider calls: for phases decided from the object alone."""
        return cls(
            phase=worker.status.phase,
            generation=worker.metadata.generation,
            deleting=worker.metadata.deletion_timestamp is not None,
        )

    def made_for(self, worker: LabWorker) -> bool:
        """False when `worker` moved on (phase, spec, deletion) since this was observed."""
        return (
            self.phase == worker.status.phase
            and self.generation == worker.metadata.generation
            and self.deleting == (worker.metadata.deletion_timestamp is not None)
        )

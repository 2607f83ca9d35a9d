"""Step (b) of a reconcile: ask the provider what the current phase needs to know.

This is the only way into side effects on the provider (provision, start, stop, terminate,
license). Each is idempotent and safe to repeat after a crash, because the phase that calls
it is only left once the provider confirms the effect; so the calls live with the phase
that waits for them, rather than with the transition that enters it: each phase's observe
step is in its module under `controller/labworker/phases/`, and `observe` picks it from the
phase table (`phases/table.py`), the same table `decide` dispatches through.

Provider errors are captured into the observation rather than raised: `decide` knows
whether a fatal error means Failed and whether a transient one still fits the phase's
time budget.

`Observation` itself is defined in `phases/observed.py`, below both this module and the phase
modules (which fill it in), so that none of them has to import the other; it is re-exported
here, its public home.
"""

from __future__ import annotations

import dataclasses

from controller.labworker.model import LabWorker
from controller.labworker.phase import Phase
from controller.labworker.phases.observed import Observation
from controller.labworker.phases.table import Step, handler_for
from controller.labworker.provider import (
    AnnotationAware,
    LabProvider,
    ProviderError,
    ProviderFatalError,
)

__all__ = ["Observation", "observe"]


def observe(provider: LabProvider, worker: LabWorker) -> Observation:
    blank = Observation.blank(worker)
    step = _step_for(worker)
    if step is None:
        return blank
    uid = worker.metadata.uid
    if not uid:
        return dataclasses.replace(
            blank,
            fatal_error="metadata.uid is missing, so the provider has no client token for it",
        )
    if isinstance(provider, AnnotationAware):
        provider.configure(uid, worker.metadata.annotations)
    try:
        return step(provider, uid, worker, blank)
    except ProviderFatalError as exc:
        return dataclasses.replace(blank, fatal_error=str(exc) or type(exc).__name__)
    except ProviderError as exc:
        return dataclasses.replace(blank, transient_error=str(exc) or type(exc).__name__)


def _step_for(worker: LabWorker) -> Step | None:
    phase = worker.status.phase
    if worker.metadata.deletion_timestamp is not None and phase is not Phase.TERMINATING:
        # A deleted worker is taken to Terminating (or loses its finalizer) from the object
        # alone; only Terminating's own step, which removes the instance, still runs.
        return None
    handler = handler_for(phase)
    return None if handler is None else handler.step_for(worker)

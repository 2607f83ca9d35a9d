"""Failed: wait for a spec change (retry from Provisioning) or for the way out (Terminating).

Failed asks the provider nothing and has no timeout: it is where a provider error or an
exceeded budget lands, and it holds until a person acts. A new generation is checked with
Pending's `spec_problems` before it is provisioned again; a teardown that failed is retried
only after `Intervals.teardown_retry`, so a stuck teardown does not cause a write storm.
"""

from __future__ import annotations

from controller.labworker import reasons
from controller.labworker.phase import DesiredPhase
from controller.labworker.phases.draft import Draft
from controller.labworker.phases.pending import spec_problems
from controller.labworker.phases.provisioning import enter_provisioning
from controller.labworker.policy import PhaseTimeouts
from controller.resources import find_condition


def decide_failed(d: Draft) -> None:
    new_generation = d.generation > d.old.observed_generation
    if d.deleting or d.desired is DesiredPhase.TERMINATED:
        why = "deletionTimestamp is set" if d.deleting else "desiredPhase is Terminated"
        provisioned = find_condition(d.old.conditions, reasons.PROVISIONED)
        teardown_failed = provisioned is not None and provisioned.reason == reasons.DEPROVISIONING
        if teardown_failed and not new_generation:
            remaining = d.intervals.teardown_retry - d.elapsed_in_phase()
            if remaining > 0:
                d.stay(
                    f"{why}, but the last teardown failed; trying again in {remaining:.0f}s "
                    "(or at once if the spec changes)",
                    remaining,
                )
                return
        d.enter_terminating(why)
        return
    if not new_generation:
        d.stay("failed; waiting for a spec change or deletion", None)
        return
    problems = spec_problems(d.worker)
    if problems:
        message = "; ".join(problems)
        d.status.error_message = message
        d.condition(reasons.READY, "False", reasons.INVALID_SPEC, message)
        d.stay(f"the new spec is still invalid: {message}", None)
        return
    enter_provisioning(d, f"spec changed (generation {d.generation})")


def failed_timeout(timeouts: PhaseTimeouts) -> float | None:
    """None: Failed holds until the spec changes or the worker is deleted."""
    return None

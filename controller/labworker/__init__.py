"""LabWorker reconciliation: the provider interface, the `sim` provider, and the reconciler."""

from controller.labworker import reasons
from controller.labworker.decide import Decision, IllegalTransition, decide, spec_problems
from controller.labworker.observation import Observation, observe
from controller.labworker.policy import (
    DEFAULT_INTERVALS,
    DEFAULT_TIMEOUTS,
    Intervals,
    PhaseTimeouts,
)
from controller.labworker.provider import (
    AnnotationAware,
    HostHealth,
    Instance,
    InstanceState,
    LabProvider,
    ProviderError,
    ProviderFatalError,
)
from controller.labworker.reconciler import LabWorkerReconciler, utc_now
from controller.labworker.sim import (
    DEFAULT_STEP_DELAY,
    FAIL_ANNOTATION,
    HOSTED_LABS_ANNOTATION,
    NO_LICENSE_ANNOTATION,
    SimProvider,
)

__all__ = [
    "DEFAULT_INTERVALS",
    "DEFAULT_STEP_DELAY",
    "DEFAULT_TIMEOUTS",
    "FAIL_ANNOTATION",
    "HOSTED_LABS_ANNOTATION",
    "NO_LICENSE_ANNOTATION",
    "AnnotationAware",
    "Decision",
    "HostHealth",
    "IllegalTransition",
    "Instance",
    "InstanceState",
    "Intervals",
    "LabProvider",
    "LabWorkerReconciler",
    "Observation",
    "PhaseTimeouts",
    "ProviderError",
    "ProviderFatalError",
    "SimProvider",
    "decide",
    "observe",
    "reasons",
    "spec_problems",
    "utc_now",
]

"""Condition types and reasons the reconciler writes (CamelCase, Kubernetes style).

They are API: `labctl wait --for=condition=Ready`, dashboards and alerts match on them.
"""

from __future__ import annotations

from typing import Final

# Condition types
PROVISIONED: Final = "Provisioned"
HOST_READY: Final = "HostReady"
LICENSED: Final = "Licensed"
READY: Final = "Ready"

# Lifecycle reasons (Ready=False unless noted)
PENDING: Final = "Pending"
PROVISIONING: Final = "Provisioning"
STARTING: Final = "Starting"
HOST_READY_REASON: Final = "HostReady"  # Ready=True
DRAINING: Final = "Draining"
STOPPING: Final = "Stopping"
STOPPED: Final = "Stopped"
TERMINATING: Final = "Terminating"
TERMINATED: Final = "Terminated"

# Provisioned
INSTANCE_RUNNING: Final = "InstanceRunning"
INSTANCE_STOPPED: Final = "InstanceStopped"
DEPROVISIONING: Final = "Deprovisioning"
"""Also the memory that teardown had begun if the worker then fails (see Intervals.teardown_retry)."""
DEPROVISIONED: Final = "Deprovisioned"

# HostReady
HOST_STARTING: Final = "HostStarting"
HOST_HEALTHY: Final = "HostHealthy"
HOST_UNHEALTHY: Final = "HostUnhealthy"
INSTANCE_NOT_RUNNING: Final = "InstanceNotRunning"

# Licensed
LICENSE_APPLIED: Final = "LicenseApplied"
NO_LICENSE_AVAILABLE: Final = "NoLicenseAvailable"
LICENSE_SECRET_MISSING: Final = "LicenseSecretMissing"
NOT_LICENSED: Final = "NotLicensed"  # autoLicense off and the host has no license

# Failures (Ready=False, phase Failed)
INVALID_SPEC: Final = "InvalidSpec"
PROVIDER_ERROR: Final = "ProviderError"
PHASE_TIMEOUT: Final = "PhaseTimeout"
INSTANCE_LOST: Final = "InstanceLost"
INSTANCE_TERMINATED: Final = "InstanceTerminated"

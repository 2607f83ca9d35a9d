"""The contract between the reconciler and whatever runs the hosts (a cloud, the simulator).

Calls are synchronous and made from reconcile worker threads. Every call is keyed by the
worker's uid, which doubles as the cloud's client token: a controller killed between a
provision call and its status write calls provision again after restart and must get the
same instance back, never a second one.

Errors are split by what the reconciler should do about them: `ProviderError` means "try
again later" (the manager backs off), `ProviderFatalError` means "retrying cannot fix this"
(the worker goes Failed with the message, and stays there until someone changes it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from controller.labworker.model import InstanceSpec
from controller.resources import DEFAULT_NAMESPACE


class InstanceState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    TERMINATING = "terminating"
    TERMINATED = "terminated"


GONE_STATES = frozenset({InstanceState.TERMINATED})
"""An instance in these states no longer exists for billing or for labs."""


@dataclass(frozen=True, slots=True)
class Instance:
    instance_id: str
    state: InstanceState
    address: str | None = None
    ready_in: float | None = None
    """Provider's estimate (seconds) of when the current state change completes, if known;
    lets the reconciler look again exactly then instead of polling."""


@dataclass(frozen=True, slots=True)
class HostHealth:
    ready: bool
    version: str | None
    licensed: bool
    hosted_labs: int
    ready_in: float | None = None
    """When not ready: the provider's estimate (seconds) until it is, if known."""


class ProviderError(Exception):
    """Transient: the call may succeed later (throttling, timeouts, eventual consistency)."""


class ProviderFatalError(Exception):
    """Unrecoverable for this worker (quota, bad image, instance lost): retrying won't help."""


class LicenseSecretMissing(ProviderError):
    """`license`: the secret the worker names is not there (yet). Transient: creating or
    mounting the secret fixes it without a spec change; the worker shows Licensed=False with
    reason LicenseSecretMissing meanwhile."""


@runtime_checkable
class LabProvider(Protocol):
    """A place that runs lab hosts. Every method is idempotent for a given uid."""

    def provision(
        self, uid: str, name: str, spec: InstanceSpec, *, namespace: str = DEFAULT_NAMESPACE
    ) -> Instance:
        """Create the worker's instance, or return the one already created for `uid`."""
        ...

    def describe(self, uid: str) -> Instance | None:
        """The worker's instance as of now; None if none was ever created."""
        ...

    def start(self, uid: str) -> None:
        """Start a stopped instance; a running or starting one is left alone."""
        ...

    def stop(self, uid: str) -> None:
        """Stop a running instance; a stopped or stopping one is left alone."""
        ...

    def terminate(self, uid: str) -> None:
        """Terminate the instance; no instance, or one already terminating, is fine."""
        ...

    def host_health(self, uid: str) -> HostHealth:
        """What the lab software on the host reports (not ready when the instance isn't up)."""
        ...

    def license(self, uid: str, secret_ref: str | None) -> bool:
        """Apply a license to the host; False when no license is available."""
        ...


@runtime_checkable
class AnnotationAware(Protocol):
    """Optional: providers that take per-worker settings from the worker's annotations.

    The reconciler hands them over before every round of calls for that worker, so they
    follow annotation edits and survive controller restarts without being persisted.
    """

    def configure(self, uid: str, annotations: Mapping[str, str]) -> None: ...

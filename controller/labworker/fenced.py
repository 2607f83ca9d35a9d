"""A provider wrapper that makes side effects only while this replica provably owns the work.

Reads (`describe`, `host_health`) pass through: a stale read is harmless, since any decision
taken from it is written back through a fenced etcd transaction. Calls that change the world
(`provision`, `start`, `stop`, `terminate`, `license`) first ask the `OwnershipGuard` and are
refused with `NotOwner` — before anything leaves the process — when ownership is not certain.
`NotOwner` is not a `ProviderError`: it escapes the observation step, so no status is written
from a call that never happened. See controller.runtime.fencing and docs/architecture.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from controller.labworker.model import InstanceSpec
from controller.labworker.provider import HostHealth, Instance, LabProvider
from controller.resources import DEFAULT_NAMESPACE
from controller.runtime.controller import NOOP_RECONCILE_METRICS, ReconcileMetrics
from controller.runtime.fencing import NotOwner, OwnershipGuard

log = logging.getLogger("controller.labworker.fenced")


class FencedProvider:
    def __init__(
        self,
        inner: LabProvider,
        guard: OwnershipGuard,
        *,
        metrics: ReconcileMetrics = NOOP_RECONCILE_METRICS,
        controller: str = "labworker",
    ) -> None:
        """Every refused call is counted as `metrics.provider_call_refused(controller, call)`."""
        self.inner = inner
        self.guard = guard
        self.metrics = metrics
        self.controller = controller

    def _allow(self, call: str, uid: str) -> None:
        try:
            self.guard.check(f"provider {call} for uid {uid}")
        except NotOwner as exc:
            log.warning("%s; the call was not made", exc)
            self.metrics.provider_call_refused(self.controller, call)
            raise

    def provision(
        self, uid: str, name: str, spec: InstanceSpec, *, namespace: str = DEFAULT_NAMESPACE
    ) -> Instance:
        self._allow("provision", uid)
        return self.inner.provision(uid, name, spec, namespace=namespace)

    def describe(self, uid: str) -> Instance | None:
        return self.inner.describe(uid)

    def start(self, uid: str) -> None:
        self._allow("start", uid)
        self.inner.start(uid)

    def stop(self, uid: str) -> None:
        self._allow("stop", uid)
        self.inner.stop(uid)

    def terminate(self, uid: str) -> None:
        self._allow("terminate", uid)
        self.inner.terminate(uid)

    def host_health(self, uid: str) -> HostHealth:
        return self.inner.host_health(uid)

    def license(self, uid: str, secret_ref: str | None) -> bool:
        self._allow("license", uid)
        return self.inner.license(uid, secret_ref)

    def configure(self, uid: str, annotations: Mapping[str, str]) -> None:
        configure: Any = getattr(self.inner, "configure", None)
        if configure is not None:
            configure(uid, annotations)

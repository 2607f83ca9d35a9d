"""A provider wrapper that puts every provider call in its own client span.

Kept outside the providers so that a real cloud provider gets the same spans for free.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from controller.labworker.model import InstanceSpec
from controller.labworker.provider import HostHealth, Instance, LabProvider
from controller.resources import DEFAULT_NAMESPACE

tracer = trace.get_tracer("controller.labworker.provider")

R = TypeVar("R")


class TracedProvider:
    def __init__(self, inner: LabProvider, name: str) -> None:
        self.inner = inner
        self.name = name

    def _call(self, op: str, uid: str, fn: Callable[[], R]) -> R:
        with tracer.start_as_current_span(
            f"provider {op}",
            kind=SpanKind.CLIENT,
            attributes={"labctl.provider": self.name, "labctl.worker.uid": uid},
        ) as span:
            try:
                return fn()
            except Exception as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise

    def provision(
        self, uid: str, name: str, spec: InstanceSpec, *, namespace: str = DEFAULT_NAMESPACE
    ) -> Instance:
        return self._call(
            "provision", uid, lambda: self.inner.provision(uid, name, spec, namespace=namespace)
        )

    def describe(self, uid: str) -> Instance | None:
        return self._call("describe", uid, lambda: self.inner.describe(uid))

    def start(self, uid: str) -> None:
        self._call("start", uid, lambda: self.inner.start(uid))

    def stop(self, uid: str) -> None:
        self._call("stop", uid, lambda: self.inner.stop(uid))

    def terminate(self, uid: str) -> None:
        self._call("terminate", uid, lambda: self.inner.terminate(uid))

    def host_health(self, uid: str) -> HostHealth:
        return self._call("host_health", uid, lambda: self.inner.host_health(uid))

    def license(self, uid: str, secret_ref: str | None) -> bool:
        return self._call("license", uid, lambda: self.inner.license(uid, secret_ref))

    def configure(self, uid: str, annotations: Mapping[str, str]) -> None:
        """Annotations steer the sim's fault injection; no span (no remote call)."""
        configure: Any = getattr(self.inner, "configure", None)
        if configure is not None:
            configure(uid, annotations)

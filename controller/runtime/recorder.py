"""Recorder: how a reconciler reports what happened to an object (client-go's EventRecorder).

The runtime only knows this protocol; the events package stores Kubernetes-style Events
behind it (aggregated, rate-limited, on an etcd lease). Recording never fails a reconcile
and never blocks one: an implementation queues and writes in the background.
"""

from __future__ import annotations

from typing import Literal, Protocol

from controller.resources import Resource

EventType = Literal["Normal", "Warning"]


class Recorder(Protocol):
    def event(self, obj: Resource, type: EventType, reason: str, message: str) -> None:
        """Record that `reason` happened to `obj`; `message` says it for an operator."""
        ...


class NoopRecorder:
    def event(self, obj: Resource, type: EventType, reason: str, message: str) -> None:
        return None


NOOP_RECORDER: Recorder = NoopRecorder()

"""Runnable: anything the Manager starts and stops in order (controller-runtime's Runnable).

Informers, controllers, HTTP servers, the OTLP exporter, the heartbeat, write health, an
event recorder — each is a Runnable. `needs_leader` says whether it may only run on the
replica that owns the work (controllers, singletons such as quota bookkeeping) or on every
replica (informers keep a standby's cache warm; servers answer probes everywhere).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class Runnable(Protocol):
    name: str
    needs_leader: bool

    def start(self) -> None:
        """Start in the background and return."""
        ...

    def stop(self, timeout: float) -> bool:
        """Stop within `timeout` seconds; False if work was still running when it ran out."""
        ...


@dataclass
class RunnableFunc:
    """Adapts a start/stop pair (a server, an exporter) to the Runnable protocol."""

    name: str
    on_start: Callable[[], object]
    on_stop: Callable[[], object]
    needs_leader: bool = False

    def start(self) -> None:
        self.on_start()

    def stop(self, timeout: float) -> bool:
        self.on_stop()
        return True

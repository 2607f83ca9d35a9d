"""Wires the event recorder into a Manager: the recorder every later kind's reconciler uses."""

from __future__ import annotations

from controller.config import Settings
from controller.events.kind import EVENT
from controller.events.metrics import event_metrics_from
from controller.events.recorder import REPORTING_CONTROLLER, EventRecorder
from controller.runtime.manager import Manager


def setup_events(manager: Manager, settings: Settings) -> EventRecorder:
    """Build the recorder, make it `manager.recorder` and run it on every replica.

    Its writes are deliberately unfenced (the repository fences only on request): what a
    deposed leader saw still happened, and an Event decides nothing."""
    recorder = EventRecorder(
        manager.repository(EVENT),
        reporting_controller=REPORTING_CONTROLLER,
        reporting_instance=manager.identity,
        event_ttl=settings.events.ttl,
        metrics=event_metrics_from(manager.options.reconcile_metrics),
    )
    manager.recorder = recorder
    manager.add(recorder)
    return recorder

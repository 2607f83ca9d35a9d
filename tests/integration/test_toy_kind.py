"""A kind defined only here runs on the controller's own Manager, beside the LabWorkers.

This is the runtime's genericity claim made executable: nothing in controller/runtime/ (or
anywhere in controller/) knows `Widget`. It gets its informer, repository, controllers and
owner mapping from the same Manager `labctl run` builds, and the LabWorker controller keeps
working next to it.
"""

from __future__ import annotations

import threading
from typing import Literal

from pydantic import Field

from controller.app import App
from controller.labworker.kind import LABWORKER
from controller.labworker.model import LabWorker
from controller.resources import Kind, ObjectKey, PrinterColumn, Resource
from controller.resources.meta import CamelModel, ObjectMeta
from controller.runtime.result import Result
from tests.etcdproc import wait_until


class WidgetSpec(CamelModel):
    size: int = Field(ge=0)


class WidgetStatus(CamelModel):
    observed_size: int = 0
    parts: int = 0


class Widget(Resource):
    api_version: Literal["toys.example.com/v1"] = "toys.example.com/v1"
    kind: Literal["Widget"] = "Widget"
    metadata: ObjectMeta
    spec: WidgetSpec
    status: WidgetStatus = Field(default_factory=WidgetStatus)


class Part(Resource):
    """Owned by a Widget; no status at all."""

    status_field = None
    api_version: Literal["toys.example.com/v1"] = "toys.example.com/v1"
    kind: Literal["Part"] = "Part"
    metadata: ObjectMeta


WIDGET: Kind[Widget] = Kind(
    api_version="toys.example.com/v1",
    kind="Widget",
    plural="widgets",
    segment="widgets",
    model=Widget,
    short_names=("wd",),
    columns=(PrinterColumn("SIZE", lambda w: str(w.spec.size)),),
    field_indexes={"size": lambda w: str(w.spec.size)},
)
PART: Kind[Part] = Kind(
    api_version="toys.example.com/v1", kind="Part", plural="parts", segment="parts", model=Part
)


def test_a_kind_from_a_test_module_runs_beside_labworkers(app: App) -> None:
    manager = app.manager
    widgets = manager.repository(WIDGET)
    parts = manager.repository(PART)
    part_informer = manager.informer(PART)
    reconciled: list[ObjectKey] = []

    def reconcile_widget(key: ObjectKey) -> Result:
        reconciled.append(key)
        widget = widgets.get_by_key(key)
        if widget is None:
            return Result.done()
        owned = part_informer.cache.by_index("owner", widget.metadata.uid or "")
        if not owned:
            part = Part.model_validate(
                {
                    "metadata": {
                        "name": f"{key.name}-part",
                        "namespace": key.namespace,
                        "ownerReferences": [WIDGET.owner_ref(widget)],
                    }
                }
            )
            parts.create(part, fenced=True)
            return Result.done()  # the Part's event brings this widget back (owns)

        def observe(w: Widget) -> None:
            w.status.observed_size = w.spec.size
            w.status.parts = len(owned)

        widgets.update_status(key.namespace, key.name, observe)
        return Result.done()

    manager.controller("widget").for_(WIDGET).owns(PART).complete(reconcile_widget)
    # A second controller on the same kinds shares the informers: one list/watch per kind.
    seen_by_auditor: list[ObjectKey] = []
    manager.controller("widget-auditor").for_(WIDGET).complete(
        lambda key: seen_by_auditor.append(key) or Result.done()
    )
    assert [i.name for i in manager.informers].count("widgets") == 1

    runner = threading.Thread(target=manager.run, daemon=True)
    runner.start()
    assert manager.started.wait(30)
    widgets.create(Widget.model_validate({"metadata": {"name": "w1"}, "spec": {"size": 3}}))
    labworkers = manager.repository(LABWORKER)
    labworkers.create(
        LabWorker.model_validate({"metadata": {"name": "lw1"}, "spec": {"labTrack": "t"}})
    )

    def converged() -> bool:
        w = widgets.get("default", "w1")
        return w is not None and w.status.observed_size == 3 and w.status.parts == 1

    wait_until(converged, timeout=30, what="the widget controller to observe its part")
    wait_until(
        lambda: (
            (lw := labworkers.get("default", "lw1")) is not None
            and lw.status.phase is not None
            and lw.status.phase.value == "Ready"
        ),
        timeout=60,
        what="the LabWorker beside it to become Ready",
    )
    assert ObjectKey("default", "w1") in seen_by_auditor
    assert manager.kinds.lookup("wd") is WIDGET
    # A spec change bumps generation and is observed; the status write never touched spec.
    widgets.update_spec("default", "w1", lambda w: setattr(w.spec, "size", 5))
    wait_until(
        lambda: (w := widgets.get("default", "w1")) is not None and w.status.observed_size == 5,
        timeout=30,
        what="the new size to be observed",
    )
    final = widgets.get("default", "w1")
    assert final is not None and final.metadata.generation == 2
    manager.stop()
    runner.join(30)
    assert not runner.is_alive()

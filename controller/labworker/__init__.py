"""The LabWorker kind: its model and phase table, the provider protocol and plug-ins, the
phase logic and the reconciler. `KINDS` and `setup` are what the composition root uses;
importing the package stays light (the model), the controller is built only by `setup`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from controller.labworker.kind import LABWORKER

if TYPE_CHECKING:
    from controller.config import Settings
    from controller.runtime.manager import Manager

KINDS: tuple[Any, ...] = (LABWORKER,)


def setup(manager: Manager, settings: Settings) -> None:
    from controller.labworker.wiring import setup_labworkers

    setup_labworkers(manager, settings)

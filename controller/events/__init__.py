"""The Event kind and the EventRecorder: what happened to an object, for an operator.

`KINDS` and `setup` are what the composition root uses; importing the package stays light
(the model and kind); the recorder is built only by `setup`, which installs it as
`manager.recorder` — so this package must be set up before the kinds whose reconcilers
record events (controller.app lists it first).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from controller.events.kind import EVENT

if TYPE_CHECKING:
    from controller.config import Settings
    from controller.runtime.manager import Manager

KINDS: tuple[Any, ...] = (EVENT,)


def setup(manager: Manager, settings: Settings) -> None:
    # The module is not named `setup`: importing controller.events.setup would replace this
    # function with the module on the package, and a second call would fail.
    from controller.events.wiring import setup_events

    setup_events(manager, settings)

"""The LabWorkerPool kind: N interchangeable LabWorkers from one template, scaled gracefully
and rolled one by one; deleting a pool deletes its workers (controller.runtime.gc).

`KINDS` and `setup` are what the composition root uses; importing the package stays light
(the model and kind), the controller is built only by `setup`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from controller.pool.kind import POOL

if TYPE_CHECKING:
    from controller.config import Settings
    from controller.runtime.manager import Manager

KINDS: tuple[Any, ...] = (POOL,)


def setup(manager: Manager, settings: Settings) -> None:
    from controller.pool.wiring import setup_pools

    setup_pools(manager, settings)

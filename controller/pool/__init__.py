"""Placeholder: filled in by the pool kind's package."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controller.config import Settings
    from controller.runtime.manager import Manager

KINDS: tuple[Any, ...] = ()


def setup(manager: Manager, settings: Settings) -> None:
    return None

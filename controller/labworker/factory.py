"""Pick a provider by name (LAB_PROVIDER). Real providers register here as they arrive."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from controller.labworker.provider import LabProvider
from controller.labworker.sim import SimProvider

_FACTORIES: Final[dict[str, Callable[..., LabProvider]]] = {
    "sim": SimProvider,
}

PROVIDER_NAMES: Final = tuple(sorted(_FACTORIES))


class UnknownProvider(ValueError):
    pass


def make_provider(name: str, **settings: Any) -> LabProvider:
    """Build the provider called `name` with its own keyword settings."""
    factory = _FACTORIES.get(name.strip().lower())
    if factory is None:
        raise UnknownProvider(
            f"unknown lab provider {name!r}: LAB_PROVIDER must be one of "
            f"{', '.join(PROVIDER_NAMES)}"
        )
    return factory(**settings)

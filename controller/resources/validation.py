"""pydantic validation errors as an operator reads them: `field.path: problem`, camelCase."""

from __future__ import annotations

from pydantic import ValidationError

from controller.resources.names import shorten


def render_location(location: tuple[int | str, ...]) -> str:
    """`metadata.annotations['example.com/note']`; a huge key is shortened, not copied."""
    rendered = ""
    for part in location:
        if isinstance(part, int):
            rendered += f"[{part}]"
        elif part.isidentifier() and len(part) <= 80:
            rendered += f".{part}" if rendered else part
        else:  # label keys like "example.com/tier" would be ambiguous after a dot
            rendered += f"[{shorten(part)}]"
    return rendered or "(root)"


def validation_errors(exc: ValidationError) -> list[str]:
    """One 'field.path: problem' line per error, in camelCase as written in manifests."""
    unknown = f"unknown field (not part of the {exc.title} schema)"
    return [
        f"{render_location(error['loc'])}: "
        + (unknown if error["type"] == "extra_forbidden" else error["msg"])
        for error in exc.errors(include_url=False)
    ]

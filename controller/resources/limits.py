"""What a value stored in etcd must be: one definition for its readers and writers.

The informer skips (and reports) a value that breaks one of these rules, so the repository
refuses to write one and reports one it reads. Both go through `decode_stored`, so nothing
`labctl apply` creates can be ignored by the controller forever, and `labctl get` flags
exactly the objects the controller skips.

The rules, each with a machine word (the `reason`, also a metric label):

- too-large: at most MAX_VALUE_BYTES of JSON. A LabWorker is well under 4 KB; anything this
  large is garbage or an attack on memory. This bounds annotations too: there is no separate
  annotation limit, but a write refused for size names its largest field.
- bad-key: stored under `<namespace>/<name>` (relative to the prefix).
- invalid-json: UTF-8 JSON no deeper than pydantic-core's parser accepts (about 200 levels; a
  LabWorker needs 5). `json.loads` would raise RecursionError on a 50,000-deep value.
- invalid-object: a valid LabWorker: names, namespaces, label keys and values, annotation keys
  and finalizers follow controller.resources.names.
- key-mismatch: its metadata names the key it is stored under, so a value copied to another
  key with etcdctl is not mistaken for (or deleted as) the object it claims to be.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

from pydantic import ValidationError

from controller.resources.object import Resource
from controller.resources.validation import render_location, validation_errors

T = TypeVar("T", bound=Resource)

MAX_VALUE_BYTES = 256 * 1024


class InvalidStoredValue(ValueError):
    """A stored (or about to be stored) value breaks a rule; `reason` says which."""

    def __init__(self, key: str, reason: str, detail: str) -> None:
        super().__init__(f"{key}: {reason}: {detail}")
        self.key = key
        self.reason = reason
        self.detail = detail


def decode_stored(key: str, raw: bytes, model: type[T]) -> T:
    """Validate the raw value stored under `key` (`<namespace>/<name>`) and decode it.

    Raises InvalidStoredValue. Checks cheapest first: a huge value is never parsed.
    """
    if len(raw) > MAX_VALUE_BYTES:
        raise InvalidStoredValue(
            key, "too-large", f"value is {len(raw)} bytes (at most {MAX_VALUE_BYTES})"
        )
    _, sep, name = key.partition("/")
    if not sep or "/" in name:
        raise InvalidStoredValue(key, "bad-key", "expected <namespace>/<name> under the prefix")
    try:
        worker = model.model_validate_json(raw)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            if error["type"] == "json_invalid":
                problem = (error.get("ctx") or {}).get("error", "")
                raise InvalidStoredValue(
                    key, "invalid-json", f"value is not valid JSON: {problem}".rstrip(": ")
                ) from None
        raise InvalidStoredValue(
            key, "invalid-object", "; ".join(validation_errors(exc)[:5])
        ) from None
    check_identity(key, worker)
    return worker


def check_identity(key: str, worker: Resource) -> None:
    """key-mismatch: the value must name the key it is stored under."""
    if worker.metadata.namespaced_name != key:
        raise InvalidStoredValue(
            key, "key-mismatch", f"key says {key}, metadata says {worker.metadata.namespaced_name}"
        )


def oversize_detail(document: dict[str, Any], size: int) -> str:
    """Why a document of `size` bytes cannot be stored, naming its largest field."""
    location, largest = max(_entry_sizes(document), key=lambda item: item[1], default=((), 0))
    return (
        f"the object would be {size} bytes, over the limit of {MAX_VALUE_BYTES} bytes "
        f"({MAX_VALUE_BYTES // 1024} KiB) per object; its largest field is "
        f"{render_location(location)} ({largest} bytes)"
    )


def unencodable_field(document: dict[str, Any]) -> str:
    """The first field whose key or value is not valid Unicode (a lone surrogate such as
    '\\ud800', which YAML escapes can produce), so it cannot be written as UTF-8 JSON."""
    for location, key, value in _entries(document):
        for text in (key, value):
            if isinstance(text, str) and not _encodable(text):
                return render_location(location)
    return "(unknown field)"


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _entry_sizes(document: dict[str, Any]) -> Iterator[tuple[tuple[int | str, ...], int]]:
    """String values only: keys are bounded by the name rules (at most 317 characters)."""
    for location, _key, value in _entries(document):
        if isinstance(value, str):
            yield location, len(value.encode("utf-8", "replace"))


def _entries(
    document: dict[str, Any],
) -> Iterator[tuple[tuple[int | str, ...], str | None, Any]]:
    """(location, key or None for list items, value) of every entry; iterative, so any depth
    is harmless."""
    stack: list[tuple[tuple[int | str, ...], Any]] = [((), document)]
    while stack:
        location, container = stack.pop()
        if isinstance(container, dict):
            items: Iterator[tuple[Any, Any]] = iter(container.items())
        elif isinstance(container, list):
            items = iter(enumerate(container))
        else:
            continue
        for k, v in items:
            child = (*location, k if isinstance(k, int | str) else str(k))
            yield child, k if isinstance(k, str) else None, v
            if isinstance(v, dict | list):
                stack.append((child, v))

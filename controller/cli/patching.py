"""The two patch formats `labctl patch --type` takes, as pure functions of documents.

- merge: JSON Merge Patch (RFC 7386) — objects merge key by key, `null` removes a key,
  anything else (lists too) replaces.
- json: JSON Patch (RFC 6902) — a list of add, remove, replace, move, copy and test
  operations addressed by JSON Pointers (RFC 6901).

Both return a new document and never change their input; a patch that cannot apply raises
PatchError with a sentence naming the operation and the path.
"""

from __future__ import annotations

import copy
from typing import Any


class PatchError(ValueError):
    pass


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def merge_patch_between(original: Any, edited: Any) -> Any:
    """The merge patch that turns `original` into `edited` (what `edit` re-applies to the
    fresh object after a conflict)."""
    if not isinstance(original, dict) or not isinstance(edited, dict):
        return copy.deepcopy(edited)
    patch: dict[str, Any] = {}
    for key in original.keys() - edited.keys():
        patch[key] = None
    for key, value in edited.items():
        if key not in original:
            patch[key] = copy.deepcopy(value)
        elif original[key] != value:
            patch[key] = merge_patch_between(original[key], value)
    return patch


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise PatchError(f"path {path!r} is not a JSON Pointer (e.g. /spec/replicas)")
    if path == "":
        return []
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _index(container: list[Any], token: str, path: str, *, append: bool) -> int:
    if append and token == "-":
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise PatchError(f"{path}: {token!r} is not an array index")
    index = int(token)
    if index > len(container) or (index == len(container) and not append):
        raise PatchError(f"{path}: index {index} is out of range")
    return index


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, path, append=False)]
        else:
            raise PatchError(f"{path}: {token!r} does not exist")
    return node


def _get(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, path, append=False)]
    raise PatchError(f"{path} does not exist")


def _remove(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, path, append=False))
    raise PatchError(f"{path} does not exist")


def _add(doc: Any, path: str, value: Any, *, replace: bool = False) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise PatchError(f"{path} does not exist (replace needs an existing value)")
        parent[last] = value
    elif isinstance(parent, list):
        index = _index(parent, last, path, append=not replace)
        if replace:
            parent[index] = value
        else:
            parent.insert(index, value)
    else:
        raise PatchError(f"{path}: the parent is not an object or an array")
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise PatchError('a JSON patch is a list of operations ([{"op": ..., "path": ...}])')
    doc = copy.deepcopy(target)
    for number, op in enumerate(operations, 1):
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"operation {number}: needs op and path")
        name, path = op["op"], op["path"]
        where = f"operation {number} ({name} {path})"
        try:
            if name in ("add", "replace", "test") and "value" not in op:
                raise PatchError("needs a value")
            if name == "add":
                doc = _add(doc, path, copy.deepcopy(op["value"]))
            elif name == "remove":
                _remove(doc, path)
            elif name == "replace":
                _get(doc, path)
                doc = _add(doc, path, copy.deepcopy(op["value"]), replace=True)
            elif name in ("move", "copy"):
                source = op.get("from")
                if not isinstance(source, str):
                    raise PatchError("needs from")
                if name == "move" and path.startswith(source + "/"):
                    raise PatchError("cannot move a value into itself")
                value = _remove(doc, source) if name == "move" else copy.deepcopy(_get(doc, source))
                doc = _add(doc, path, value)
            elif name == "test":
                if _get(doc, path) != op["value"]:
                    raise PatchError("the value differs: the patch was not applied")
            else:
                raise PatchError("unknown op (add, remove, replace, move, copy or test)")
        except PatchError as exc:
            raise PatchError(f"{where}: {exc}") from None
    return doc

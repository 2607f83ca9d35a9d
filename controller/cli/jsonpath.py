"""kubectl's JSONPath templates, the part its users type: `-o jsonpath=`, `custom-columns`,
`--sort-by`.

Supported: `{.a.b}`, `{.items[*].metadata.name}`, `[n]` (negative too), `[*]`, `.*`,
`['key.with.dots']`, `{range EXPR}…{end}`, and literals `{"\\n"}`; the leading `.`, `$` or
`@` is optional. A missing key yields nothing (kubectl's default,
--allow-missing-template-keys). Filters (`[?()]`) and slices are refused with a clear error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from controller.cli.errors import UsageError
from controller.resources.names import shorten

_STEP = re.compile(
    r"""\.\.|\.(?P<field>[A-Za-z0-9_\-]+|\*)|\[(?P<index>-?\d+|\*)\]|\[(?P<q>['"])(?P<key>.*?)(?P=q)\]"""
)


@dataclass(frozen=True)
class Path:
    """One compiled path: its steps (a key, an index, or `*`)."""

    text: str
    steps: tuple[str | int, ...]

    def values(self, node: Any) -> list[Any]:
        current = [node]
        for step in self.steps:
            following: list[Any] = []
            for value in current:
                following.extend(_step(value, step))
            current = following
        return current


def _step(value: Any, step: str | int) -> Iterator[Any]:
    if step == "*":
        if isinstance(value, dict):
            yield from value.values()
        elif isinstance(value, list):
            yield from value
    elif isinstance(step, int):
        if isinstance(value, list) and -len(value) <= step < len(value):
            yield value[step]
    elif isinstance(value, dict) and step in value:
        yield value[step]


def compile_path(text: str) -> Path:
    """`.metadata.name`, `{.metadata.name}` or `metadata.name`. Raises UsageError."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1].strip()
    if body[:1] in ("$", "@"):
        body = body[1:]
    if body and not body.startswith((".", "[")):
        body = "." + body
    steps: list[str | int] = []
    pos = 0
    while pos < len(body):
        match = _STEP.match(body, pos)
        if match is None or match.group(0) == "..":
            raise UsageError(
                f"JSONPath {shorten(text)}: cannot read {shorten(body[pos:])} "
                "(supported: .field, [n], [*], .*, ['key'], range/end; not filters or '..')"
            )
        if match.group("field") is not None:
            steps.append(match.group("field"))
        elif match.group("index") is not None:
            index = match.group("index")
            steps.append("*" if index == "*" else int(index))
        else:
            steps.append(match.group("key"))
        pos = match.end()
    return Path(text, tuple(steps))


def text_of(value: Any) -> str:
    """A value as kubectl's JSONPath prints it: scalars bare, objects and lists as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


# -- templates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Literal:
    text: str


@dataclass(frozen=True)
class _Value:
    path: Path


@dataclass(frozen=True)
class _Range:
    path: Path
    body: tuple[Any, ...]


def _tokens(template: str) -> Iterator[str | tuple[str]]:
    """Literal text as str, `{…}` blocks as 1-tuples."""
    pos = 0
    while pos < len(template):
        start = template.find("{", pos)
        if start < 0:
            yield template[pos:]
            return
        if start > pos:
            yield template[pos:start]
        end, depth, quote = start + 1, 1, ""
        while end < len(template) and depth:
            ch = template[end]
            if quote:
                if ch == "\\":
                    end += 1
                elif ch == quote:
                    quote = ""
            elif ch in "'\"":
                quote = ch
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            end += 1
        if depth:
            raise UsageError(f"JSONPath template {shorten(template)}: unclosed '{{'")
        yield (template[start + 1 : end - 1].strip(),)
        pos = end


def compile_template(template: str) -> tuple[Any, ...]:
    stack: list[list[Any]] = [[]]
    ranges: list[Path] = []
    for token in _tokens(template):
        if isinstance(token, str):
            stack[-1].append(_Literal(token))
            continue
        (block,) = token
        if block.startswith("range "):
            ranges.append(compile_path(block[len("range ") :]))
            stack.append([])
        elif block == "end":
            if not ranges:
                raise UsageError(f"JSONPath template {shorten(template)}: {{end}} without range")
            body = stack.pop()
            stack[-1].append(_Range(ranges.pop(), tuple(body)))
        elif block[:1] in ("'", '"'):
            try:
                stack[-1].append(_Literal(json.loads('"' + block[1:-1].replace('"', '\\"') + '"')))
            except json.JSONDecodeError:
                raise UsageError(f"JSONPath literal {shorten(block)} is malformed") from None
        else:
            stack[-1].append(_Value(compile_path(block)))
    if ranges:
        raise UsageError(f"JSONPath template {shorten(template)}: range without {{end}}")
    return tuple(stack[0])


def render(template: tuple[Any, ...], node: Any) -> str:
    out: list[str] = []
    for part in template:
        if isinstance(part, _Literal):
            out.append(part.text)
        elif isinstance(part, _Value):
            out.append(" ".join(text_of(v) for v in part.path.values(node)))
        else:
            for item in part.path.values(node):
                out.append(render(part.body, item))
    return "".join(out)

"""What `labctl apply` reads: manifests from files, directories or stdin, made into objects.

Input is hostile until proven otherwise: a log file, a disk image, a YAML bomb or a
50,000-deep document given to `apply` must end in one `error:` line, never a traceback, a
hang or gigabytes of memory. So reading is bounded (MAX_MANIFEST_BYTES, MAX_MANIFEST_DEPTH,
MAX_MANIFEST_NODES) before any document is built, and each document is then validated as
the model of the kind it names and checked exactly as the repository will check it when it
is written — so a batch with one bad document writes nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

import yaml
from pydantic import ValidationError

from controller.cli.errors import CliError
from controller.resources import Kind, KindRegistry, Resource, validation_errors
from controller.resources.names import shorten
from controller.runtime.repository import Repository, WriteRefused

DEFAULT_KIND = "LabWorker"
"""The kind of a document that names none: manifests written for the single-kind labctl
(before pools, quotas and events) carry no `kind` and still apply as they did."""

MAX_MANIFEST_BYTES = 16 * 1024 * 1024
"""The most `apply` reads from one file or stdin. 10,000 workers are about 4 MiB of JSON; a
larger input is a mistake (a log, a disk image) and would take minutes to parse."""
MAX_MANIFEST_DEPTH = 100
"""Nesting a manifest may have; a LabWorker needs 6 (8 inside a List). PyYAML's composer
recurses once per level, so a 50,000-deep document would raise RecursionError."""
MAX_MANIFEST_NODES = 1_000_000
"""Nodes a document may expand to through YAML aliases: a 'billion laughs' document is a
few hundred bytes whose aliases expand to 10^9 nodes for whatever walks the result."""


class _ManifestLoader(yaml.SafeLoader):
    """yaml.SafeLoader that enforces MAX_MANIFEST_DEPTH and MAX_MANIFEST_NODES."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self._depth >= MAX_MANIFEST_DEPTH:
            mark = self.get_mark()
            raise _TooComplex(
                f"nested more than {MAX_MANIFEST_DEPTH} levels deep (at line {mark.line + 1})"
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> yaml.Node | None:
        node = super().compose_document()
        if node is not None:
            _check_expansion(node)
        return node


class _TooComplex(yaml.YAMLError):
    pass


def _check_expansion(root: yaml.Node) -> None:
    """Count the nodes and depth `root` has with every alias expanded, without expanding
    them: an alias is the very node it names, so sizes are summed once per node."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, expanded depth)
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        if children_done:
            count = 1 + sum(sizes[id(c)][0] for c in children)
            depth = 1 + max((sizes[id(c)][1] for c in children), default=0)
            if count > MAX_MANIFEST_NODES:
                raise _TooComplex(
                    f"its aliases expand it to more than {MAX_MANIFEST_NODES} nodes "
                    "(a 'billion laughs' document?)"
                )
            if depth > MAX_MANIFEST_DEPTH:
                raise _TooComplex(f"its aliases nest it more than {MAX_MANIFEST_DEPTH} levels deep")
            sizes[id(node)] = (count, depth)
            open_nodes.discard(id(node))
        elif id(node) in open_nodes:
            mark = node.start_mark
            raise _TooComplex(f"an alias at line {mark.line + 1} refers to a node that contains it")
        elif id(node) not in sizes:
            open_nodes.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's messages span lines and quote the input; this is one line."""
    if isinstance(exc, yaml.MarkedYAMLError):
        what = exc.problem or exc.context or "syntax error"
        mark = exc.problem_mark or exc.context_mark
        return f"{what} (line {mark.line + 1}, column {mark.column + 1})" if mark else what
    if isinstance(exc, yaml.reader.ReaderError) and isinstance(exc.character, int):
        return (
            f"unacceptable character #x{exc.character:04x} at position {exc.position}: {exc.reason}"
        )
    return " ".join(str(exc).split())


def _read_text(origin: str, stream: BinaryIO) -> str:
    """At most MAX_MANIFEST_BYTES of UTF-8 text; never reads more (/dev/zero is a file too)."""
    try:
        data = stream.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise CliError(f"{origin}: cannot read it: {exc.strerror or exc}") from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise CliError(
            f"{origin}: larger than {MAX_MANIFEST_BYTES // (1024 * 1024)} MiB, the most "
            "`labctl apply` reads from one file; split it into several files"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CliError(
            f"{origin}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "manifests are YAML or JSON"
        ) from None


def read_documents(source: str) -> Iterator[tuple[str, Any]]:
    """(origin, document) for every YAML/JSON document in a file, a directory, or stdin."""
    if source == "-":
        yield from _parse_stream("<stdin>", _read_text("<stdin>", sys.stdin.buffer))
        return
    path = Path(source)
    if path.is_dir():
        files = sorted(
            p for p in path.iterdir() if p.suffix in {".yaml", ".yml", ".json"} and p.is_file()
        )
        if not files:
            raise CliError(f"{source}: no .yaml, .yml or .json files in this directory")
    elif path.exists():
        files = [path]
    else:
        raise CliError(f"{source}: no such file or directory")
    for f in files:
        try:
            with f.open("rb") as stream:
                text = _read_text(str(f), stream)
        except OSError as exc:
            raise CliError(f"{f}: cannot read it: {exc.strerror or exc}") from None
        yield from _parse_stream(str(f), text)


def _parse_stream(origin: str, text: str) -> Iterator[tuple[str, Any]]:
    try:
        docs = list(yaml.load_all(text, Loader=_ManifestLoader))
    except yaml.YAMLError as exc:
        raise CliError(f"{origin}: not valid YAML/JSON: {_yaml_problem(exc)}") from None
    except RecursionError:  # a recursive merge key chain; the loader bounds everything else
        raise CliError(f"{origin}: not valid YAML/JSON: nested too deeply") from None
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        where = origin if len(docs) == 1 else f"{origin} (document {i + 1})"
        if (
            isinstance(doc, dict)
            and doc.get("kind") == "List"
            and isinstance(doc.get("items"), list)
        ):
            for j, item in enumerate(doc["items"]):
                yield f"{where} item {j + 1}", item
        else:
            yield where, doc


def to_object(
    registry: KindRegistry, origin: str, doc: Any, namespace: str | None
) -> tuple[Kind[Any], Resource]:
    """The document as an object of the kind it names, ready for `Repository.apply`.

    `status` is dropped (apply never writes what controllers own); a document without a
    namespace gets `namespace` (`apply -n`). Raises CliError naming the origin and every
    invalid field, or the limit a value would break in etcd."""
    if not isinstance(doc, dict):
        raise CliError(
            f"{origin}: expected an object with apiVersion, kind and metadata, "
            f"got {type(doc).__name__}"
        )
    name = doc.get("kind", DEFAULT_KIND)
    kind = registry.by_kind(name) if isinstance(name, str) else None
    if kind is None:
        known = ", ".join(sorted(k.kind for k in registry))
        raise CliError(f"{origin}: kind {shorten(str(name))} is not supported (known: {known})")
    status = _status_key(kind)
    if status is not None and status in doc:
        doc = {k: v for k, v in doc.items() if k != status}
    meta = doc.get("metadata")
    if namespace and isinstance(meta, dict) and not meta.get("namespace"):
        doc = {**doc, "metadata": {**meta, "namespace": namespace}}
    try:
        obj = kind.model.model_validate(doc)
    except ValidationError as exc:
        errors = validation_errors(exc)
        if len(errors) == 1:
            raise CliError(f"{origin}: invalid {kind.kind}: {errors[0]}") from None
        lines = "\n".join(f"  {line}" for line in errors)
        raise CliError(f"{origin}: invalid {kind.kind}:\n{lines}") from None
    try:
        # The repository checks again when it writes; checking here too means a batch with
        # one unstorable object writes nothing, as with any other invalid document. The check
        # is pure (it encodes and decodes), so it needs no connection.
        Repository(cast(Any, None), kind, "").storable(obj.metadata.namespaced_name, obj)
    except WriteRefused as exc:
        raise CliError(f"{origin}: cannot be stored: {exc.detail}") from None
    return kind, obj


def _status_key(kind: Kind[Any]) -> str | None:
    """The manifest key of the field controllers own (`status`), if the kind has one."""
    field = kind.model.status_field
    if field is None:
        return None
    info = kind.model.model_fields.get(field)
    alias: str | None = info.alias if info is not None else None
    return alias or field

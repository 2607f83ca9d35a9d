"""`labctl`: run the controller, and kubectl-style verbs for LabWorkers stored in etcd.

Exit codes a shell user can rely on: 0 success, 1 the operation failed (not found, invalid
or unreadable manifest, an object invalid in etcd, timeout, etcd unreachable), 2 bad usage.
Errors go to stderr as one `error: ...` line, never a traceback, whatever the input. A
listing (`get` without a name, `wait --all`) skips objects that are invalid in etcd, exactly
as the controller does, with one `warning: ...` line per key, and still exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, TextIO

import yaml
from pydantic import ValidationError

from controller import config
from controller.labworker.model import LabWorker
from controller.labworker.phase import Phase
from controller.labworker.repository import LabWorkerRepository
from controller.observability import configure_logging
from controller.resources import parse_timestamp, validation_errors
from controller.resources.names import shorten
from controller.resources.selector import SelectorError
from controller.runtime.repository import InvalidObject, WriteRefused
from controller.storage import StorageError

RESOURCE_NAMES = {"labworker", "labworkers", "lw", "labworker.lab.neuroglia.io"}
GROUP = "labworker.lab.neuroglia.io"


class CliError(Exception):
    """An operation failed in a way the user should read; exit code 1."""


_warned: set[str] = set()


def _warn_invalid(err: InvalidObject) -> None:
    """A listing skips an invalid object and says so once per key (wait polls the list)."""
    if err.key not in _warned:
        _warned.add(err.key)
        print(f"warning: {err}; skipped (the controller ignores it too)", file=sys.stderr)


# -- connection ----------------------------------------------------------------------------

_CLIENT_SETTINGS = [s for s in config.SETTINGS if s.env.startswith("ETCD_")]


def _add_connection_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("etcd connection (each also an environment variable)")
    for s in _CLIENT_SETTINGS:
        group.add_argument(s.flag, dest=s.attr, default=None, help=f"{s.help}; env {s.env}")


def _repository(args: argparse.Namespace) -> LabWorkerRepository:
    settings = config.load(args)
    return LabWorkerRepository.for_prefix(config.etcd_client(settings), settings.etcd_prefix)


# -- apply -----------------------------------------------------------------------------------

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


def _read_documents(source: str) -> Iterator[tuple[str, Any]]:
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


def _validate_manifest(origin: str, doc: Any, namespace: str | None) -> LabWorker:
    if not isinstance(doc, dict):
        raise CliError(f"{origin}: expected a LabWorker object, got {type(doc).__name__}")
    if doc.get("kind", "LabWorker") != "LabWorker":
        raise CliError(
            f"{origin}: kind {shorten(str(doc.get('kind')))} is not supported (only LabWorker)"
        )
    if "status" in doc:
        doc = {k: v for k, v in doc.items() if k != "status"}  # apply never writes status
    meta = doc.get("metadata")
    if namespace and isinstance(meta, dict) and not meta.get("namespace"):
        doc = {**doc, "metadata": {**meta, "namespace": namespace}}
    try:
        worker = LabWorker.model_validate(doc)
    except ValidationError as exc:
        errors = validation_errors(exc)
        if len(errors) == 1:
            raise CliError(f"{origin}: invalid LabWorker: {errors[0]}") from None
        lines = "\n".join(f"  {line}" for line in errors)
        raise CliError(f"{origin}: invalid LabWorker:\n{lines}") from None
    try:
        # The repository checks again when it writes; checking here too means a batch with
        # one unstorable object writes nothing, as with any other invalid document.
        LabWorkerRepository.for_prefix(None).storable(worker.metadata.namespaced_name, worker)  # type: ignore[arg-type]
    except WriteRefused as exc:
        raise CliError(f"{origin}: cannot be stored: {exc.detail}") from None
    return worker


def _nothing_applied(problems: list[str]) -> str:
    if len(problems) == 1:
        return f"nothing applied: {problems[0]}"
    indented = ("\n".join("  " + line for line in p.splitlines()) for p in problems)
    return f"nothing applied: {len(problems)} problems:\n" + "\n".join(indented)


def cmd_apply(args: argparse.Namespace) -> int:
    workers: list[LabWorker] = []
    problems: list[str] = []
    for source in args.filename:
        try:
            for origin, doc in _read_documents(source):
                try:
                    workers.append(_validate_manifest(origin, doc, args.namespace))
                except CliError as exc:
                    problems.append(str(exc))
        except CliError as exc:
            problems.append(str(exc))
    if problems:
        # Nothing is written unless every document is valid.
        raise CliError(_nothing_applied(problems))
    if not workers:
        raise CliError(f"no LabWorker documents in {', '.join(args.filename)}")
    repo = _repository(args)
    for worker in workers:
        meta = worker.metadata
        existing = repo.get(meta.namespace, meta.name)
        if existing is None:
            repo.create(worker)
            print(f"{GROUP}/{meta.name} created")
            continue

        def replace(current: LabWorker, desired: LabWorker = worker) -> LabWorker:
            draft = current.model_copy(deep=True)
            draft.spec = desired.spec.model_copy(deep=True)
            draft.metadata.labels = dict(desired.metadata.labels)
            draft.metadata.annotations = dict(desired.metadata.annotations)
            return draft

        result = repo.update_spec(
            meta.namespace,
            meta.name,
            replace,
        )
        print(f"{GROUP}/{meta.name} {'configured' if result.written else 'unchanged'}")
    return 0


# -- get / describe ----------------------------------------------------------------------------


def _age(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    seconds = int((datetime.now(UTC) - parse_timestamp(timestamp)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write(
            "   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n"
        )


def _print_workers(workers: list[LabWorker], args: argparse.Namespace, single: bool) -> None:
    if args.output in ("json", "yaml"):
        docs = [w.to_dict() for w in workers]
        payload: Any = docs[0] if single else {"apiVersion": "v1", "kind": "List", "items": docs}
        if args.output == "json":
            print(json.dumps(payload, indent=2))
        else:
            print(yaml.safe_dump(payload, sort_keys=False), end="")
        return
    if not workers:
        where = (
            "any namespace" if args.all_namespaces else f"namespace {args.namespace or 'default'}"
        )
        print(f"No resources found in {where}.", file=sys.stderr)
        return
    header = ["NAME", "PHASE", "TRACK", "DESIRED", "AGE"]
    if args.output == "wide":
        header += ["INSTANCE", "ADDRESS", "LABS", "GEN", "OBSERVED"]
    if args.all_namespaces:
        header = ["NAMESPACE", *header]
    rows = [header]
    for w in workers:
        st = w.status
        row = [
            w.metadata.name,
            str(st.phase.value) if st.phase else "<none>",
            w.spec.lab_track,
            str(w.spec.desired_phase.value),
            _age(w.metadata.creation_timestamp),
        ]
        if args.output == "wide":
            row += [
                st.instance_id or "<none>",
                st.address or "<none>",
                str(st.hosted_labs),
                str(w.metadata.generation),
                str(st.observed_generation),
            ]
        if args.all_namespaces:
            row = [w.metadata.namespace, *row]
        rows.append(row)
    _table(rows, sys.stdout)


def _check_resource(resource: str) -> None:
    if resource.lower() not in RESOURCE_NAMES:
        raise CliError(f'the server doesn\'t have a resource type "{resource}" (try labworkers)')


def cmd_get(args: argparse.Namespace) -> int:
    _check_resource(args.resource)
    repo = _repository(args)
    namespace = None if args.all_namespaces else (args.namespace or "default")
    if args.name:
        worker = repo.get(namespace or "default", args.name)
        if worker is None:
            raise CliError(f'labworkers "{args.name}" not found in namespace {namespace}')
        _print_workers([worker], args, single=True)
        return 0
    try:
        workers = repo.list(namespace, args.selector, on_invalid=_warn_invalid)
    except SelectorError as exc:
        raise CliError(f"invalid selector {args.selector!r}: {exc}") from None
    _print_workers(workers, args, single=False)
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    _check_resource(args.resource)
    repo = _repository(args)
    namespace = args.namespace or "default"
    worker = repo.get(namespace, args.name)
    if worker is None:
        raise CliError(f'labworkers "{args.name}" not found in namespace {namespace}')
    m, spec, st = worker.metadata, worker.spec, worker.status
    lines = [
        f"Name:               {m.name}",
        f"Namespace:          {m.namespace}",
        f"UID:                {m.uid}",
        f"Labels:             {', '.join(f'{k}={v}' for k, v in sorted(m.labels.items())) or '<none>'}",
        f"Annotations:        {', '.join(f'{k}={v}' for k, v in sorted(m.annotations.items())) or '<none>'}",
        f"Created:            {m.creation_timestamp} ({_age(m.creation_timestamp)} ago)",
        f"Generation:         {m.generation}",
        f"Resource Version:   {m.resource_version}",
        f"Finalizers:         {', '.join(m.finalizers) or '<none>'}",
    ]
    if m.deletion_timestamp:
        lines.append(f"Deletion Requested: {m.deletion_timestamp}")
    lines += [
        "Spec:",
        f"  Lab Track:        {spec.lab_track}",
        f"  Desired Phase:    {spec.desired_phase.value}",
        f"  Instance:         type={spec.instance.type} image={spec.instance.image or '<default>'} "
        f"volume={spec.instance.volume_size_gb}GB",
        f"  Host:             autoLicense={spec.host.auto_license} "
        f"maxConcurrentLabs={spec.host.max_concurrent_labs}",
        "Status:",
        f"  Phase:            {st.phase.value if st.phase else '<none>'}",
        f"  Observed Gen:     {st.observed_generation}",
        f"  Instance:         {st.instance_id or '<none>'}",
        f"  Address:          {st.address or '<none>'}",
        f"  Host Version:     {st.host_version or '<none>'}",
        f"  Licensed:         {st.licensed}",
        f"  Hosted Labs:      {st.hosted_labs}",
    ]
    if st.error_message:
        lines.append(f"  Last Error:       {st.error_message} (errors: {st.error_count})")
    lines.append("Conditions:")
    if st.conditions:
        rows = [["  TYPE", "STATUS", "REASON", "LAST TRANSITION", "MESSAGE"]]
        rows += [
            [
                f"  {c.type}",
                str(c.status),
                c.reason or "",
                c.last_transition_time or "",
                c.message or "",
            ]
            for c in st.conditions
        ]
        for line in _format_rows(rows):
            lines.append(line)
    else:
        lines.append("  <none>")
    print("\n".join(lines))
    return 0


def _format_rows(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


# -- delete / wait -------------------------------------------------------------------------------


def cmd_delete(args: argparse.Namespace) -> int:
    _check_resource(args.resource)
    repo = _repository(args)
    namespace = args.namespace or "default"
    failed = False
    for name in args.names:
        try:
            if repo.get(namespace, name) is None:
                print(
                    f'error: labworkers "{name}" not found in namespace {namespace}',
                    file=sys.stderr,
                )
                failed = True
                continue
            repo.mark_for_deletion(namespace, name)
        except InvalidObject as exc:
            # The key may hold a copy of another object: deleting "it" by name could delete
            # the wrong thing, and the controller would never finalize it anyway.
            print(
                f"error: {exc}; not deleted: fix the value, or remove the key with etcdctl",
                file=sys.stderr,
            )
            failed = True
            continue
        print(f'{GROUP} "{name}" deleted')
    return 1 if failed else 0


def _parse_duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * units[suffix]
    return float(text)


def cmd_wait(args: argparse.Namespace) -> int:
    condition = args.condition
    if condition == "delete":
        want_phase = None
    elif condition.startswith("phase="):
        want_phase = condition.split("=", 1)[1]
        valid = {p.value for p in Phase}
        if want_phase not in valid:
            raise CliError(
                f"--for=phase={want_phase}: not a phase (one of {', '.join(sorted(valid))})"
            )
    else:
        raise CliError(f"--for={condition}: expected phase=<Phase> or delete")
    targets: list[str] = []
    if args.all:
        if args.target:
            _check_resource(args.target[0].split("/")[0])
    else:
        if not args.target:
            raise CliError("wait needs labworker/NAME (or --all)")
        for t in args.target:
            resource, _, name = t.partition("/")
            _check_resource(resource)
            if not name:
                raise CliError(f"{t}: expected labworker/NAME")
            targets.append(name)
    repo = _repository(args)
    namespace = args.namespace or "default"
    deadline = time.monotonic() + _parse_duration(args.timeout)
    while True:
        pending = _pending(repo, namespace, targets, want_phase, args.all)
        if not pending:
            for name in targets or ["all"]:
                print(f"{GROUP}/{name} condition met")
            return 0
        if time.monotonic() >= deadline:
            raise CliError(
                f"timed out waiting for the condition on {len(pending)} labworker(s): "
                + ", ".join(pending[:10])
            )
        time.sleep(0.25)


def _pending(
    repo: LabWorkerRepository,
    namespace: str,
    names: list[str],
    want_phase: str | None,
    every: bool,
) -> list[str]:
    if every:
        workers = repo.list(namespace, on_invalid=_warn_invalid)
        if want_phase is None:
            return [f"{w.metadata.name} (exists)" for w in workers]
        return [
            f"{w.metadata.name} ({w.status.phase.value if w.status.phase else 'none'})"
            for w in workers
            if w.status.phase != want_phase
        ]
    out = []
    for name in names:
        w = repo.get(namespace, name)
        if want_phase is None:
            if w is not None:
                out.append(f"{name} (exists)")
        elif w is None or w.status.phase != want_phase:
            out.append(f"{name} ({w.status.phase.value if w and w.status.phase else 'absent'})")
    return out


# -- run ----------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from controller.app import run_controller

    return run_controller(config.load(args))


# -- providers ----------------------------------------------------------------------------------


def cmd_providers(args: argparse.Namespace) -> int:
    """Installed provider plug-ins and their settings as this environment resolves them;
    a secret's value is never shown, only whether it is set."""
    import os

    from controller.labworker import plugins

    installed = plugins.installed()
    if not installed:
        raise CliError(
            f"no provider plug-ins installed (entry point group {plugins.ENTRY_POINT_GROUP})"
        )
    selected = (os.environ.get("LAB_PROVIDER") or "sim").strip().lower()
    for index, (name, plugin) in enumerate(sorted(installed.items())):
        mark = "   (selected: LAB_PROVIDER)" if name == selected else ""
        print(("\n" if index else "") + f"{name}: {plugin.summary}{mark}")
        rows = [["  SETTING", "DEFAULT", "CURRENT", "HELP"]]
        for setting in plugin.settings:
            value = os.environ.get(setting.env) or None
            if setting.secret:
                current = "(set)" if value else "(unset)"
            else:
                current = value if value is not None else "-"
            rows.append(["  " + setting.env, setting.default or "-", current, setting.help])
        _table(rows, sys.stdout)
    return 0


# -- parser -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labctl", description="Lab Resource Controller: LabWorkers stored in etcd."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the controller (settings: flags or environment)")
    config.add_arguments(run)
    run.set_defaults(func=cmd_run)

    apply = sub.add_parser("apply", help="create or update LabWorkers from manifests")
    apply.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        help="file, directory, or - for stdin (repeatable)",
    )
    apply.add_argument("-n", "--namespace", help="namespace for manifests without one")
    _add_connection_args(apply)
    apply.set_defaults(func=cmd_apply)

    get = sub.add_parser("get", help="list LabWorkers or show one")
    get.add_argument("resource", help="labworkers")
    get.add_argument("name", nargs="?")
    get.add_argument("-n", "--namespace")
    get.add_argument("-A", "--all-namespaces", action="store_true")
    get.add_argument("-l", "--selector", help="label selector, e.g. tier=gold,region in (eu)")
    get.add_argument("-o", "--output", choices=["wide", "json", "yaml"])
    _add_connection_args(get)
    get.set_defaults(func=cmd_get)

    describe = sub.add_parser("describe", help="show one LabWorker in detail")
    describe.add_argument("resource")
    describe.add_argument("name")
    describe.add_argument("-n", "--namespace")
    _add_connection_args(describe)
    describe.set_defaults(func=cmd_describe)

    delete = sub.add_parser("delete", help="delete LabWorkers (the controller tears them down)")
    delete.add_argument("resource")
    delete.add_argument("names", nargs="+")
    delete.add_argument("-n", "--namespace")
    _add_connection_args(delete)
    delete.set_defaults(func=cmd_delete)

    wait = sub.add_parser("wait", help="wait for LabWorkers to reach a phase or be deleted")
    wait.add_argument("target", nargs="*", help="labworker/NAME ...")
    wait.add_argument("--for", dest="condition", required=True, help="phase=Ready | delete")
    wait.add_argument("--timeout", default="30s", help="e.g. 60s, 5m (default 30s)")
    wait.add_argument("--all", action="store_true", help="every LabWorker in the namespace")
    wait.add_argument("-n", "--namespace")
    _add_connection_args(wait)
    wait.set_defaults(func=cmd_wait)

    providers = sub.add_parser(
        "providers", help="list the installed provider plug-ins and their settings"
    )
    providers.set_defaults(func=cmd_providers)
    return parser


def main(argv: Sequence[str] | None = None) -> NoReturn:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "run":
        # kubectl-style verbs speak through their exit code and `error:` lines only.
        configure_logging("ERROR", "console", stream=sys.stderr)
    try:
        code = args.func(args)
    except (CliError, config.ConfigError, WriteRefused) as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    except InvalidObject as exc:
        print(f"error: {exc}; the controller ignores it until it is fixed", file=sys.stderr)
        code = 1
    except StorageError as exc:
        print(f"error: etcd: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:  # `labctl get ... | head`: the reader is gone; so is the output
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    except Exception as exc:  # the promise is an `error:` line, never a traceback
        print(
            f"error: unexpected {type(exc).__name__}: {shorten(str(exc), 200)} "
            "(a bug in labctl; please report it)",
            file=sys.stderr,
        )
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()

"""Reading the Dockerfile and its build context the way Docker does, for tests.

There is no Docker engine where the tests run, so the image is kept honest two ways: the
static test checks the instructions, and the e2e test replays the builder stage's commands
in a temporary directory. Both must read the file identically, hence this one parser.
Covers what the project's Dockerfile uses (stages, line continuations, comments, exec and
shell forms, ``--flag=value`` options, .dockerignore with ``!`` exceptions); heredocs and
a custom ``# escape=`` directive are refused rather than misread.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


class DockerfileError(ValueError):
    """The Dockerfile uses syntax this reader does not understand."""


@dataclass(frozen=True)
class Instruction:
    keyword: str
    """Upper-cased instruction name: ``RUN``, ``COPY``, ..."""
    value: str
    """Everything after the keyword, continuation lines joined with a space."""
    line: int
    """1-based line where the instruction starts, for failure messages."""

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction, or None for shell form."""
        return parse_exec_form(self.value)

    def flags(self) -> dict[str, str]:
        return split_flags(self.value)[0]

    def arguments(self) -> str:
        """The value without its leading ``--flag=value`` options."""
        return split_flags(self.value)[1]

    def words(self) -> list[str]:
        """The arguments split like a shell would (for COPY, EXPOSE, ENV)."""
        return shlex.split(self.arguments())


@dataclass(frozen=True)
class Stage:
    base_image: str
    name: str | None
    instructions: tuple[Instruction, ...]
    line: int

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword.upper()]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def key_values(self, keyword: str) -> dict[str, str]:
        """All ``NAME=value`` pairs of this stage's ENV, LABEL or ARG; later ones win."""
        values: dict[str, str] = {}
        for instruction in self.all(keyword):
            values.update(key_values(instruction))
        return values

    def exposed_ports(self) -> set[int]:
        return {int(word.split("/")[0]) for e in self.all("EXPOSE") for word in e.words()}


@dataclass(frozen=True)
class Dockerfile:
    stages: tuple[Stage, ...]
    global_args: tuple[Instruction, ...]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"no stage named {name!r}; stages: {[s.name for s in self.stages]}")


def parse_exec_form(value: str) -> list[str] | None:
    text = value.strip()
    if not text.startswith("["):
        return None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        return None  # Docker, too, runs an invalid JSON array as a shell command.
    if isinstance(parsed, list) and all(isinstance(word, str) for word in parsed):
        return [str(word) for word in parsed]
    return None


_FLAG = re.compile(r"--([A-Za-z][A-Za-z0-9-]*)(?:=(\S*))?\s*")


def split_flags(value: str) -> tuple[dict[str, str], str]:
    """Leading ``--name=value`` options (as on FROM, COPY, HEALTHCHECK) and the rest."""
    flags: dict[str, str] = {}
    rest = value.strip()
    while match := _FLAG.match(rest):
        flags[match.group(1)] = match.group(2) or ""
        rest = rest[match.end() :]
    return flags, rest


def key_values(instruction: Instruction) -> dict[str, str]:
    """``NAME=value`` pairs of ENV, LABEL or ARG (quotes removed, ``$VAR`` left as written)."""
    words = shlex.split(instruction.value)
    if words and "=" not in words[0]:  # legacy ``ENV NAME value with spaces``
        return {words[0]: instruction.value.strip()[len(words[0]) :].strip()}
    pairs: dict[str, str] = {}
    for word in words:
        name, sep, val = word.partition("=")
        if not sep:
            raise DockerfileError(
                f"line {instruction.line}: {instruction.keyword} word {word!r} is not NAME=value"
            )
        pairs[name] = val
    return pairs


def healthcheck_command(instruction: Instruction) -> list[str] | None:
    """The probe command of ``HEALTHCHECK [options] CMD ...`` (None for ``HEALTHCHECK NONE``)."""
    rest = instruction.arguments()
    keyword, _, command = rest.partition(" ")
    if keyword.upper() == "NONE":
        return None
    if keyword.upper() != "CMD":
        raise DockerfileError(f"line {instruction.line}: HEALTHCHECK without CMD: {rest!r}")
    exec_form = parse_exec_form(command)
    return exec_form if exec_form is not None else ["/bin/sh", "-c", command.strip()]


def image_tag(image: str) -> str | None:
    """The tag of ``registry:port/name:tag[@digest]``; None when untagged."""
    reference = image.split("@", 1)[0]
    last_part = reference.rsplit("/", 1)[-1]
    _, sep, tag = last_part.partition(":")
    return tag if sep else None


def is_pinned(image: str) -> bool:
    """Tagged with something other than ``latest``, or pinned by digest."""
    tag = image_tag(image)
    return "@sha256:" in image or (tag is not None and tag != "latest" and tag != "")


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Instructions with continuations joined; comment and blank lines dropped (also inside
    a continuation, as Docker does)."""
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") and number <= 5 and stripped.lower().startswith("# escape"):
            raise DockerfileError(f"line {number}: custom escape directive is not supported")
        if not stripped or stripped.startswith("#"):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer.append(stripped[:-1].strip())
            continue
        buffer.append(stripped)
        yield start, " ".join(part for part in buffer if part)
        buffer = []
    if buffer:
        raise DockerfileError(f"line {start}: continuation runs past the end of the file")


def parse_dockerfile(path: Path = DOCKERFILE) -> Dockerfile:
    headers: list[tuple[str, str | None, int]] = []
    bodies: list[list[Instruction]] = []
    global_args: list[Instruction] = []
    for line, text in _logical_lines(path.read_text(encoding="utf-8")):
        keyword, _, value = text.partition(" ")
        instruction = Instruction(keyword.upper(), value.strip(), line)
        if "<<" in value and instruction.keyword in {"RUN", "COPY"}:
            raise DockerfileError(f"line {line}: heredocs are not supported by tests/dockerfile.py")
        if instruction.keyword == "FROM":
            words = instruction.words()
            if len(words) == 1:
                headers.append((words[0], None, line))
            elif len(words) == 3 and words[1].upper() == "AS":
                headers.append((words[0], words[2], line))
            else:
                raise DockerfileError(f"line {line}: cannot read FROM {value!r}")
            bodies.append([])
        elif bodies:
            bodies[-1].append(instruction)
        elif instruction.keyword == "ARG":
            global_args.append(instruction)
        else:
            raise DockerfileError(f"line {line}: {keyword} before the first FROM")
    if not headers:
        raise DockerfileError(f"{path}: no FROM instruction")
    stages = tuple(
        Stage(image, name, tuple(body), line)
        for (image, name, line), body in zip(headers, bodies, strict=True)
    )
    return Dockerfile(stages, tuple(global_args))


# --- build context (.dockerignore) -------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Go's filepath.Match syntax plus ``**`` (any number of directories), as in moby."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                raise DockerfileError(f".dockerignore pattern {pattern!r}: unclosed '['")
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("^") else body) + "]")
            i = end + 1
            continue
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z")


@dataclass(frozen=True)
class DockerIgnore:
    rules: tuple[tuple[bool, re.Pattern[str]], ...]
    """(is_exception, pattern) in file order; the last rule that matches decides."""

    @classmethod
    def read(cls, path: Path = DOCKERIGNORE) -> DockerIgnore:
        rules: list[tuple[bool, re.Pattern[str]]] = []
        if path.exists():
            for raw in path.read_text(encoding="utf-8").splitlines():
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                exception = line.startswith("!")
                pattern = line[1:].strip() if exception else line
                pattern = pattern.strip("/").removeprefix("./")
                rules.append((exception, _pattern_regex(pattern)))
        return cls(tuple(rules))

    def excludes(self, relative_path: str) -> bool:
        """Whether ``relative_path`` (``/``-separated, from the context root) stays out of the
        build context. A rule matching a parent directory applies to everything under it."""
        parts = relative_path.strip("/").split("/")
        candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        excluded = False
        for exception, regex in self.rules:
            if any(regex.match(candidate) for candidate in candidates):
                excluded = not exception
        return excluded


@dataclass(frozen=True)
class BuildContext:
    """The files ``docker build <root>`` would send, for replaying COPY outside Docker."""

    root: Path
    ignore: DockerIgnore

    @classmethod
    def of(cls, root: Path = REPO_ROOT) -> BuildContext:
        return cls(root, DockerIgnore.read(root / ".dockerignore"))

    def files(self, source: str) -> list[Path]:
        """Files under the COPY source ``source`` (a file, directory or glob) that the context
        holds, relative to the root; empty when everything is missing or ignored."""
        matches = (
            sorted(self.root.glob(source.strip("/")))
            if any(c in source for c in "*?[")
            else [self.root / source.strip("/")]
        )
        found: list[Path] = []
        for match in matches:
            candidates = (
                [match] if match.is_file() else sorted(p for p in match.rglob("*") if p.is_file())
            )
            for candidate in candidates:
                relative = candidate.relative_to(self.root)
                if not self.ignore.excludes(relative.as_posix()):
                    found.append(relative)
        return found

    def copy(self, sources: list[str], destination: Path, *, destination_is_dir: bool) -> None:
        """COPY semantics: a directory source copies its contents; several sources or a
        trailing ``/`` make the destination a directory."""
        for source in sources:
            files = self.files(source)
            if not files:
                raise FileNotFoundError(
                    f"COPY {source}: not in the build context (missing or .dockerignored)"
                )
            source_path = self.root / source.strip("/")
            for relative in files:
                if source_path.is_dir():
                    target = destination / (self.root / relative).relative_to(source_path)
                elif destination_is_dir:
                    target = destination / relative.name
                else:
                    target = destination
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(self.root / relative, target)

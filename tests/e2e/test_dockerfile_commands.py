"""The Dockerfile's commands, replayed without Docker.

No Docker engine is available to the tests, so the builder stage is replayed in a temporary
"root filesystem": its WORKDIR and venv paths are mapped under a temp dir, its COPY
instructions copy from the build context as .dockerignore leaves it, and its RUN commands run
as written (a fresh venv, a real `pip install --no-cache-dir` from the package index). Then
the runtime stage's ENTRYPOINT, CMD and HEALTHCHECK run against that venv with the runtime
stage's ENV. A Dockerfile edit that breaks the install, or a CLI change that breaks the
image's default command, fails here instead of at `docker build` / `docker run`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import string
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from tests.dockerfile import (
    REPO_ROOT,
    BuildContext,
    Dockerfile,
    Stage,
    healthcheck_command,
    key_values,
    parse_dockerfile,
)
from tests.etcdproc import EtcdProcess, free_port

# Creating the venv and installing the project's dependencies takes a minute or two on a
# busy machine; it happens once per module.
pytestmark = pytest.mark.timeout(900)

INSTALL_TIMEOUT_S = 600.0
COMMAND_TIMEOUT_S = 60.0
HEALTHY_WITHIN_S = 60.0
# Matches the grace period that compose (stop_grace_period) and Kubernetes
# (terminationGracePeriodSeconds) give the controller before SIGKILL.
DRAIN_WITHIN_S = 30.0


@dataclass(frozen=True)
class ReplayedImage:
    """The runtime stage's view of the replayed build."""

    rootfs: Path
    venv: Path
    env: dict[str, str]
    entrypoint: list[str]
    cmd: list[str]
    healthcheck: list[str]

    def run(
        self, argv: list[str], extra_env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            env={**self.env, **(extra_env or {})},
            cwd=self.rootfs,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )


def _map_path(container_path: str, cwd: PurePosixPath, rootfs: Path) -> Path:
    absolute = cwd / container_path  # an absolute container_path replaces cwd
    return rootfs / absolute.relative_to("/")


def _rewrite(text: str, mapping: Mapping[str, Path]) -> str:
    """Point the container paths a command names at their places under the temp rootfs."""
    for container_path in sorted(mapping, key=len, reverse=True):
        text = re.sub(
            rf"(?<![\w./-]){re.escape(container_path)}(?=[/:\s'\"]|$)",
            str(mapping[container_path]),
            text,
        )
    return text


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Docker's ``$VAR`` / ``${VAR}`` in ENV values."""
    return string.Template(value).safe_substitute(env)


def _venv_path(dockerfile: Dockerfile) -> str:
    copies = [c for c in dockerfile.final.all("COPY") if c.flags().get("from") == "builder"]
    assert len(copies) == 1, "the runtime stage takes exactly the venv from the builder"
    source, destination = copies[0].words()
    assert source == destination
    return source


def _host_environment(shim_dir: Path) -> dict[str, str]:
    """This machine's environment (package index settings included), minus what would make
    the replay see the repo instead of the installed package, with ``python`` resolving to
    the interpreter running the tests (the image's base is Python 3.11 too)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    }
    env["PATH"] = f"{shim_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def _replay_builder(
    stage: Stage, rootfs: Path, mapping: dict[str, Path], env: dict[str, str]
) -> None:
    context = BuildContext.of()
    cwd = PurePosixPath("/")
    for instruction in stage.instructions:
        where = f"Dockerfile line {instruction.line}: {instruction.keyword} {instruction.value}"
        if instruction.keyword == "WORKDIR":
            cwd = cwd / instruction.value
            mapping[str(cwd)] = _map_path(str(cwd), cwd, rootfs)
            mapping[str(cwd)].mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "ENV":
            for name, value in key_values(instruction).items():
                env[name] = _expand(value, env)
        elif instruction.keyword == "COPY":
            assert not instruction.flags(), f"{where}: the replay copies from the context only"
            *sources, destination = instruction.words()
            context.copy(
                sources,
                _map_path(destination, cwd, rootfs),
                destination_is_dir=destination.endswith("/") or len(sources) > 1,
            )
        elif instruction.keyword == "RUN":
            exec_form = instruction.exec_form()
            argv = (
                [_rewrite(word, mapping) for word in exec_form]
                if exec_form is not None
                else ["/bin/sh", "-c", _rewrite(instruction.value, mapping)]
            )
            done = subprocess.run(
                argv,
                cwd=_map_path(str(cwd), cwd, rootfs),
                env=env,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT_S,
                check=False,
            )
            assert done.returncode == 0, f"{where}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        elif instruction.keyword not in {"ARG", "LABEL"}:
            pytest.fail(f"{where}: the replay does not know this instruction in the builder stage")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> ReplayedImage:
    dockerfile = parse_dockerfile()
    rootfs = tmp_path_factory.mktemp("rootfs")
    shim_dir = tmp_path_factory.mktemp("shim")
    (shim_dir / "python").symlink_to(sys.executable)

    venv_path = _venv_path(dockerfile)
    mapping = {venv_path: _map_path(venv_path, PurePosixPath("/"), rootfs)}
    _replay_builder(dockerfile.stage("builder"), rootfs, mapping, _host_environment(shim_dir))

    # The runtime stage's ENV on top of this machine's (the shim is a builder-only device).
    env = _host_environment(shim_dir)
    env["PATH"] = os.environ.get("PATH", "")
    for name, value in dockerfile.final.key_values("ENV").items():
        env[name] = _expand(_rewrite(value, mapping), env)

    entrypoint, cmd, health = (
        dockerfile.final.last(k) for k in ("ENTRYPOINT", "CMD", "HEALTHCHECK")
    )
    assert entrypoint is not None and cmd is not None and health is not None
    entrypoint_argv, cmd_argv = entrypoint.exec_form(), cmd.exec_form()
    healthcheck_argv = healthcheck_command(health)
    assert entrypoint_argv and cmd_argv is not None and healthcheck_argv
    return ReplayedImage(
        rootfs=rootfs,
        venv=mapping[venv_path],
        env=env,
        entrypoint=entrypoint_argv,
        cmd=cmd_argv,
        healthcheck=healthcheck_argv,
    )


def test_entrypoint_resolves_to_the_venv_console_script(image: ReplayedImage) -> None:
    resolved = shutil.which(image.entrypoint[0], path=image.env["PATH"])
    assert resolved is not None, f"{image.entrypoint[0]} is not on the image's PATH"
    assert Path(resolved).parent == image.venv / "bin"


def test_labctl_help_runs_from_the_installed_package(image: ReplayedImage) -> None:
    done = image.run([*image.entrypoint, "--help"])
    assert done.returncode == 0, done.stderr
    assert "run" in done.stdout


def test_default_command_is_a_labctl_subcommand(image: ReplayedImage) -> None:
    done = image.run([*image.entrypoint, *image.cmd, "--help"])
    assert done.returncode == 0, done.stderr


def test_installed_package_has_every_module_of_the_source_tree(image: ReplayedImage) -> None:
    # A subpackage the wheel leaves out (say, a directory without __init__.py) would only fail
    # at import time inside the container.
    done = image.run(["python", "-c", "import controller; print(controller.__file__)"])
    assert done.returncode == 0, done.stderr
    installed = Path(done.stdout.strip()).parent
    assert installed.is_relative_to(image.venv), f"imported {installed}, not the installed copy"

    def files(root: Path) -> set[str]:
        return {
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }

    assert files(installed) == files(REPO_ROOT / "controller")


def test_healthcheck_fails_when_nothing_answers(image: ReplayedImage) -> None:
    done = image.run(image.healthcheck, {"HEALTH_PORT": str(free_port())})
    assert done.returncode != 0


@dataclass
class RunningController:
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-8000:]


@pytest.fixture
def controller(
    image: ReplayedImage, etcd: EtcdProcess, tmp_path: Path
) -> Iterator[RunningController]:
    env = {
        **image.env,
        "ETCD_ENDPOINTS": etcd.endpoint,
        "ETCD_PREFIX": "/dockerfile-e2e",
        "LAB_PROVIDER": "sim",
        "METRICS_PORT": str(free_port()),
        "HEALTH_PORT": str(free_port()),
        "LOG_FORMAT": "json",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
    }
    log = tmp_path / "labctl-run.log"
    with log.open("wb") as sink:  # a file, not a pipe: a full pipe would stall the controller
        process = subprocess.Popen(
            [*image.entrypoint, *image.cmd],
            env=env,
            cwd=image.rootfs,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        yield RunningController(process, env, log)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=COMMAND_TIMEOUT_S)


def test_healthcheck_passes_against_the_running_controller_which_drains_on_sigterm(
    image: ReplayedImage, controller: RunningController
) -> None:
    process = controller.process
    deadline = time.monotonic() + HEALTHY_WITHIN_S
    last: subprocess.CompletedProcess[str] | None = None
    while time.monotonic() < deadline and process.poll() is None:
        last = image.run(image.healthcheck, controller.env)
        if last.returncode == 0:
            break
        time.sleep(0.2)  # polling the probe, as Docker does; there is no event to wait on
    if process.poll() is not None:
        pytest.fail(
            f"`labctl run` exited {process.returncode} before it was healthy:\n{controller.output()}"
        )
    assert last is not None and last.returncode == 0, (
        f"not healthy within {HEALTHY_WITHIN_S}s: {last.stderr if last else ''}\n{controller.output()}"
    )

    # `docker stop` / pod deletion: SIGTERM to PID 1 (exec-form ENTRYPOINT), then a grace period.
    process.send_signal(signal.SIGTERM)
    try:
        returncode = process.wait(timeout=DRAIN_WITHIN_S)
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"`labctl run` still running {DRAIN_WITHIN_S}s after SIGTERM:\n{controller.output()}"
        )
    assert returncode == 0, f"`labctl run` exited {returncode} on SIGTERM:\n{controller.output()}"

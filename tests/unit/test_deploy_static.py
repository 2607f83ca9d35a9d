"""Static checks of the Dockerfile, compose files and Kubernetes manifests.

No Docker engine or cluster is available to the tests, so what those would reject at deploy
time (an unpinned image, a probe on the wrong port, an env var the controller never reads, a
COPY of a file the build context leaves out) is checked here, against the same sources of truth
the controller uses: pyproject.toml and deployment/env-vars.txt.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.dockerfile import (
    REPO_ROOT,
    BuildContext,
    Dockerfile,
    DockerIgnore,
    Stage,
    healthcheck_command,
    image_tag,
    is_pinned,
    parse_dockerfile,
)

DEPLOYMENT = REPO_ROOT / "deployment"
KUBERNETES = DEPLOYMENT / "kubernetes"
KUBERNETES_BASE = KUBERNETES / "base"
COMPOSE_FILES = [DEPLOYMENT / "docker-compose.yml", DEPLOYMENT / "docker-compose.cluster.yml"]
ENV_VARS_FILE = DEPLOYMENT / "env-vars.txt"
OWN_IMAGE = "lab-resource-controller"
HEALTH_PORT_DEFAULT = 8081
METRICS_PORT_DEFAULT = 8080
ETCD_CLIENT_PORT = 2379

# ---------------------------------------------------------------------------------------------
# shared readers


def _pyproject() -> dict[str, Any]:
    with (REPO_ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def _project_version() -> str:
    return str(_pyproject()["project"]["version"])


def _known_env_vars() -> set[str]:
    return {line.strip() for line in ENV_VARS_FILE.read_text().splitlines() if line.strip()}


def _dockerfile() -> Dockerfile:
    return parse_dockerfile()


def _builder(dockerfile: Dockerfile) -> Stage:
    return dockerfile.stage("builder")


def _venv_path(dockerfile: Dockerfile) -> str:
    """The directory the runtime stage copies from the builder: the installed venv."""
    copies = dockerfile.final.all("COPY")
    assert len(copies) == 1, "the runtime stage must copy exactly one thing (the venv)"
    source, destination = copies[0].words()
    assert copies[0].flags().get("from") == "builder"
    assert source == destination, "the venv must keep its path: its scripts' shebangs name it"
    return source


def _load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _compose(path: Path) -> dict[str, Any]:
    documents = _load_yaml_documents(path)
    assert len(documents) == 1, f"{path.name}: one YAML document expected"
    return documents[0]


def _service_env(service: dict[str, Any]) -> dict[str, str]:
    """Compose ``environment`` as a mapping (compose allows a mapping or ``NAME=value`` list)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _is_own_image(service: dict[str, Any]) -> bool:
    return "build" in service or str(service.get("image", "")).startswith(f"{OWN_IMAGE}:")


def _etcd_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose["services"].items()
        if "/etcd:" in str(svc.get("image", ""))
    }


def _command_flags(command: list[str]) -> dict[str, str]:
    return {
        arg[2:].partition("=")[0]: arg.partition("=")[2]
        for arg in command
        if arg.startswith("--") and "=" in arg
    }


def _k8s_documents() -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for path in sorted(KUBERNETES_BASE.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            documents.extend(_load_yaml_documents(path))
    return documents


def _k8s(kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        doc
        for doc in _k8s_documents()
        if doc.get("kind") == kind and (name is None or doc["metadata"]["name"] == name)
    ]


def _one_k8s(kind: str, name: str) -> dict[str, Any]:
    found = _k8s(kind, name)
    assert len(found) == 1, f"expected exactly one {kind}/{name} in deployment/kubernetes/base"
    return found[0]


def _workloads() -> list[dict[str, Any]]:
    return [d for d in _k8s_documents() if d.get("kind") in {"Deployment", "StatefulSet", "Job"}]


def _containers(workload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def _controller_deployment() -> dict[str, Any]:
    return _one_k8s("Deployment", OWN_IMAGE)


def _controller_container() -> dict[str, Any]:
    containers = [
        c
        for c in _containers(_controller_deployment())
        if str(c["image"]).startswith(f"{OWN_IMAGE}:")
    ]
    assert len(containers) == 1
    return containers[0]


def _controller_config() -> dict[str, str]:
    """The ConfigMap the controller container takes its environment from."""
    refs = [
        e["configMapRef"]["name"]
        for e in _controller_container().get("envFrom", [])
        if "configMapRef" in e
    ]
    assert len(refs) == 1, "the controller container must read its env from one ConfigMap"
    return {str(k): str(v) for k, v in _one_k8s("ConfigMap", refs[0])["data"].items()}


def _named_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    matches = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert matches, f"container {container['name']} has no port named {port!r}"
    return int(matches[0])


def _endpoint_hosts(endpoints: str) -> list[tuple[str, int]]:
    pairs = []
    for endpoint in endpoints.split(","):
        host, _, port = endpoint.strip().removeprefix("http://").rpartition(":")
        pairs.append((host, int(port)))
    return pairs


# ---------------------------------------------------------------------------------------------
# Dockerfile


def test_every_base_image_is_pinned_to_a_tag() -> None:
    dockerfile = _dockerfile()
    stage_names = {s.name for s in dockerfile.stages if s.name}
    for stage in dockerfile.stages:
        if stage.base_image in stage_names:
            continue
        assert is_pinned(stage.base_image), (
            f"line {stage.line}: FROM {stage.base_image} is not pinned"
        )
        assert "latest" not in stage.base_image


def test_build_and_runtime_stages_share_one_python_image() -> None:
    # The venv's bin/python is a symlink to the builder's interpreter: the runtime stage must
    # provide the very same one.
    dockerfile = _dockerfile()
    assert dockerfile.final.base_image == _builder(dockerfile).base_image
    assert dockerfile.final.base_image.startswith("python:3.11")


def _runtime_user() -> tuple[str, str]:
    user = _dockerfile().final.last("USER")
    assert user is not None, "the runtime stage has no USER: the controller would run as root"
    uid, _, gid = user.arguments().partition(":")
    return uid, gid


def test_runtime_stage_runs_as_a_numeric_non_root_user() -> None:
    uid, gid = _runtime_user()
    assert uid.isdigit() and int(uid) != 0, f"USER {uid}: want a numeric non-zero UID"
    assert not gid or (gid.isdigit() and int(gid) != 0)


def test_runtime_stage_copies_only_the_venv_and_installs_nothing() -> None:
    dockerfile = _dockerfile()
    venv = _venv_path(dockerfile)
    path = dockerfile.final.key_values("ENV")["PATH"]
    assert path.split(":")[0] == f"{venv}/bin", "the venv's scripts (labctl, python) come first"
    for run in dockerfile.final.all("RUN"):
        for tool in ("pip ", "apt-get", "apk ", "gcc", "build-essential", "curl", "wget"):
            assert tool not in run.value, f"line {run.line}: runtime stage must not use {tool!r}"


def test_builder_creates_the_venv_and_installs_without_pip_cache() -> None:
    dockerfile = _dockerfile()
    venv = _venv_path(dockerfile)
    runs = [run.value for run in _builder(dockerfile).all("RUN")]
    assert any(f"-m venv {venv}" in run for run in runs)
    installs = [run for run in runs if "pip install" in run]
    assert installs, "the builder stage installs nothing"
    for run in installs:
        assert f"{venv}/bin/pip install" in run, f"{run!r} must install into the copied venv"
        assert "--no-cache-dir" in run


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version, f"requirements.lock: {line!r} is not pinned with =="
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_builder_installs_under_the_lock_it_copies() -> None:
    builder = _builder(_dockerfile())
    copied = {word for copy in builder.all("COPY") for word in copy.words()[:-1]}
    assert "requirements.lock" in copied
    installs = [run.value for run in builder.all("RUN") if "pip install" in run.value]
    assert installs and all("--constraint requirements.lock" in run for run in installs)


def test_lock_pins_every_runtime_dependency_and_no_test_tool() -> None:
    pins = _lock()
    project = _pyproject()["project"]
    for requirement in project["dependencies"]:
        name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]
        assert re.sub(r"[-_.]+", "-", name).lower() in pins, f"{name} is not in requirements.lock"
    for requirement in project["optional-dependencies"]["test"]:
        name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()
        assert name not in pins, f"test tool {name} must not reach the image"


def test_entrypoint_is_the_labctl_console_script_running_the_controller() -> None:
    final = _dockerfile().final
    entrypoint, cmd = final.last("ENTRYPOINT"), final.last("CMD")
    assert entrypoint is not None and cmd is not None
    assert entrypoint.exec_form() == ["labctl"], "exec form, so labctl is PID 1 and gets SIGTERM"
    assert cmd.exec_form() == ["run"]
    assert "labctl" in _pyproject()["project"]["scripts"]


def test_healthcheck_probes_healthz_on_the_health_port_with_python() -> None:
    instruction = _dockerfile().final.last("HEALTHCHECK")
    assert instruction is not None
    command = healthcheck_command(instruction)
    assert command is not None and command[0] == "python", "slim has no curl or wget"
    script = " ".join(command)
    assert "http://127.0.0.1:" in script and "/healthz" in script
    assert "HEALTH_PORT" in script and f"'{HEALTH_PORT_DEFAULT}'" in script


def test_exposes_metrics_and_health_ports() -> None:
    assert _dockerfile().final.exposed_ports() == {METRICS_PORT_DEFAULT, HEALTH_PORT_DEFAULT}


def test_python_runtime_environment() -> None:
    env = _dockerfile().final.key_values("ENV")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"  # the root filesystem is read-only in k8s
    assert env["PYTHONUNBUFFERED"] == "1"  # logs reach `docker logs` as they happen


def test_oci_labels_match_the_project() -> None:
    final = _dockerfile().final
    labels = final.key_values("LABEL")
    args = final.key_values("ARG")
    prefix = "org.opencontainers.image."
    for key in ("title", "description", "source", "licenses", "version"):
        assert prefix + key in labels, f"missing label {prefix}{key}"
    assert labels[prefix + "version"] == "${VERSION}"
    assert args["VERSION"] == _project_version(), "bump the Dockerfile VERSION with pyproject"
    assert labels[prefix + "licenses"] == _pyproject()["project"]["license"]


def test_copy_sources_are_in_the_build_context() -> None:
    context = BuildContext.of()
    for copy in _builder(_dockerfile()).all("COPY"):
        assert "from" not in copy.flags()
        for source in copy.words()[:-1]:
            assert context.files(source), (
                f"line {copy.line}: COPY {source} is missing or .dockerignored"
            )


def test_build_context_holds_the_whole_package_and_keeps_local_clutter_out() -> None:
    ignore = DockerIgnore.read()
    package_files = [
        p.relative_to(REPO_ROOT).as_posix()
        for p in (REPO_ROOT / "controller").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]
    assert "controller/py.typed" in package_files
    assert [p for p in package_files if ignore.excludes(p)] == []
    assert not ignore.excludes("pyproject.toml")
    for clutter in (
        ".git/HEAD",
        ".venv/bin/python",
        "bench/.venv/bin/python",
        ".pytest_cache/v/cache",
        ".mypy_cache/3.11/x.json",
        ".hypothesis/examples/x",
        "controller/__pycache__/cli.cpython-311.pyc",
        "tests/unit/test_x.py",
    ):
        assert ignore.excludes(clutter), f"{clutter} would be sent to the Docker daemon"


def test_dockerignore_reader_applies_rules_in_order(tmp_path: Path) -> None:
    # The reader decides the two tests above, so its semantics are pinned here.
    path = tmp_path / ".dockerignore"
    path.write_text("# allow-list\n*\n!src\n**/*.pyc\n")
    ignore = DockerIgnore.read(path)
    assert ignore.excludes("docs/x.md")
    assert not ignore.excludes("src/a/b.py")
    assert ignore.excludes("src/a/b.pyc")
    assert not DockerIgnore.read(tmp_path / "missing").excludes("docs/x.md")


# ---------------------------------------------------------------------------------------------
# env-vars.txt


def test_env_var_list_is_one_unique_upper_snake_name_per_line() -> None:
    lines = [line.strip() for line in ENV_VARS_FILE.read_text().splitlines() if line.strip()]
    assert len(lines) == len(set(lines))
    for name in lines:
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", name), f"{name!r} is not an env var name"


# ---------------------------------------------------------------------------------------------
# docker compose


@pytest.fixture(params=COMPOSE_FILES, ids=lambda p: p.name)
def compose_file(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


def test_compose_files_are_compose_v2_and_say_so(compose_file: Path) -> None:
    compose = _compose(compose_file)
    # The Compose Specification drops `version:`; v2 warns about it, v1 needs it.
    assert "version" not in compose
    assert "Compose v2 only" in compose_file.read_text()


@pytest.mark.parametrize(
    "path", [*COMPOSE_FILES, DEPLOYMENT / "docker-compose.aws.yml"], ids=lambda p: p.name
)
def test_compose_publishes_ports_on_loopback_only(path: Path) -> None:
    for name, service in _compose(path)["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (
                f"{name}: {port} is published on every interface"
            )


def test_compose_images_are_pinned(compose_file: Path) -> None:
    for name, service in _compose(compose_file)["services"].items():
        assert "image" in service, f"{name}: name the image so it is not rebuilt per service"
        assert is_pinned(service["image"]), f"{name}: image {service['image']} is not pinned"


def test_compose_builds_the_repo_dockerfile_tagged_with_the_project_version(
    compose_file: Path,
) -> None:
    own = {n: s for n, s in _compose(compose_file)["services"].items() if _is_own_image(s)}
    assert "controller" in own
    for name, service in own.items():
        build = service["build"]
        context = (compose_file.parent / build["context"]).resolve()
        assert context == REPO_ROOT, f"{name}: build context {context}"
        assert (context / build.get("dockerfile", "Dockerfile")).is_file()
        assert image_tag(service["image"]) == _project_version()


def test_compose_controller_waits_for_healthy_etcd(compose_file: Path) -> None:
    compose = _compose(compose_file)
    etcd = _etcd_services(compose)
    assert etcd
    for name, service in etcd.items():
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD" and "etcdctl" in test[1] and test[-2:] == ["endpoint", "health"]
        assert f"--advertise-client-urls=http://{name}:{ETCD_CLIENT_PORT}" in service["command"]
    for name, service in compose["services"].items():
        if _is_own_image(service):
            depends_on = service["depends_on"]
            for etcd_name in etcd:
                assert depends_on[etcd_name]["condition"] == "service_healthy", name


def test_compose_controller_env_names_are_known(compose_file: Path) -> None:
    known = _known_env_vars()
    for name, service in _compose(compose_file)["services"].items():
        if _is_own_image(service):
            unknown = set(_service_env(service)) - known
            assert not unknown, f"{name}: {sorted(unknown)} not in deployment/env-vars.txt"


def test_compose_controller_reaches_every_etcd_member(compose_file: Path) -> None:
    compose = _compose(compose_file)
    members = {(name, ETCD_CLIENT_PORT) for name in _etcd_services(compose)}
    for name, service in compose["services"].items():
        if _is_own_image(service):
            endpoints = _endpoint_hosts(_service_env(service)["ETCD_ENDPOINTS"])
            assert set(endpoints) == members, name


def test_compose_controller_ports_match_its_env_and_the_image(compose_file: Path) -> None:
    controller = _compose(compose_file)["services"]["controller"]
    env = _service_env(controller)
    metrics, health = int(env["METRICS_PORT"]), int(env["HEALTH_PORT"])
    assert (metrics, health) == (METRICS_PORT_DEFAULT, HEALTH_PORT_DEFAULT)
    container_ports = {int(str(p).rpartition(":")[2]) for p in controller["ports"]}
    assert container_ports == {metrics, health} == _dockerfile().final.exposed_ports()


def _compose_duration_seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", text)
    assert match, f"duration {text!r}: use whole seconds or minutes"
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


def test_compose_controller_drains_before_docker_kills_it(compose_file: Path) -> None:
    controller = _compose(compose_file)["services"]["controller"]
    grace = _compose_duration_seconds(controller["stop_grace_period"])
    assert float(_service_env(controller)["SHUTDOWN_GRACE"]) < grace


def test_compose_traces_go_to_the_jaeger_service_over_otlp_http(compose_file: Path) -> None:
    compose = _compose(compose_file)
    env = _service_env(compose["services"]["controller"])
    endpoint = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert env["OTEL_TRACES_EXPORTER"] == "otlp"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert endpoint.port == 4318, "4318 is OTLP/HTTP; 4317 would be gRPC"
    backend = compose["services"][endpoint.hostname]
    assert str(backend["image"]).startswith("jaegertracing/all-in-one:")
    assert _service_env(backend)["COLLECTOR_OTLP_ENABLED"] == "true"
    assert "127.0.0.1:16686:16686" in backend["ports"], "the Jaeger UI the docs point at"


def test_compose_samples_job_applies_the_mounted_samples(compose_file: Path) -> None:
    samples = _compose(compose_file)["services"]["samples"]
    source, _, target = str(samples["volumes"][0]).partition(":")
    target = target.partition(":")[0]
    assert list((compose_file.parent / source).glob("*.yaml")), f"{source} has no manifests"
    assert samples["command"] == ["apply", "-f", target]
    assert samples["restart"] == "no"


def test_compose_named_volumes_are_declared(compose_file: Path) -> None:
    compose = _compose(compose_file)
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = str(volume).partition(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"


def test_cluster_compose_runs_three_members_of_one_cluster() -> None:
    compose = _compose(DEPLOYMENT / "docker-compose.cluster.yml")
    etcd = _etcd_services(compose)
    assert len(etcd) == 3
    expected = ",".join(f"{name}=http://{name}:2380" for name in sorted(etcd))
    for name, service in etcd.items():
        flags = _command_flags(service["command"])
        assert flags["name"] == name
        assert flags["initial-cluster"] == expected


# ---------------------------------------------------------------------------------------------
# Kubernetes


def test_kustomization_lists_every_manifest_and_only_existing_files() -> None:
    kustomization = yaml.safe_load((KUBERNETES_BASE / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    assert all((KUBERNETES_BASE / name).is_file() for name in listed)
    on_disk = {p.name for p in KUBERNETES_BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed) == on_disk


def test_default_kustomization_is_the_base_alone() -> None:
    # `kubectl apply -k deployment/kubernetes` deploys the sim provider, unpatched; the
    # manifests cannot live next to it, as kustomize refuses an overlay below its base.
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["base"]
    assert set(kustomization) == {"apiVersion", "kind", "resources"}
    assert {p.name for p in KUBERNETES.glob("*.yaml")} == {"kustomization.yaml"}


def test_k8s_images_are_pinned_and_ours_carries_the_project_version() -> None:
    for workload in _workloads():
        for container in _containers(workload):
            assert is_pinned(container["image"]), container["image"]
    assert image_tag(_controller_container()["image"]) == _project_version()
    kustomization = yaml.safe_load((KUBERNETES_BASE / "kustomization.yaml").read_text())
    own = [i for i in kustomization.get("images", []) if i["name"] == OWN_IMAGE]
    assert all(i["newTag"] == _project_version() for i in own)


def test_k8s_controller_replicas_elect_a_leader() -> None:
    # More than one replica is only safe with leader election (fenced writes) switched on.
    spec = _controller_deployment()["spec"]
    config = yaml.safe_load((KUBERNETES_BASE / "configmap.yaml").read_text())["data"]
    assert spec["replicas"] == 1 or config.get("LEADER_ELECT") == "true"
    if spec["strategy"]["type"] == "RollingUpdate":
        assert config.get("LEADER_ELECT") == "true"


def test_k8s_probes_hit_the_health_server() -> None:
    container = _controller_container()
    health_port = int(_controller_config()["HEALTH_PORT"])
    assert health_port == HEALTH_PORT_DEFAULT
    expected = {
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
        "startupProbe": "/healthz",
    }
    for probe, path in expected.items():
        http_get = container[probe]["httpGet"]
        assert http_get["path"] == path, probe
        assert _named_port(container, http_get["port"]) == health_port, probe


def test_k8s_container_ports_match_the_config_and_the_image() -> None:
    container = _controller_container()
    config = _controller_config()
    ports = {int(p["containerPort"]) for p in container["ports"]}
    assert _named_port(container, "metrics") == int(config["METRICS_PORT"])
    assert _named_port(container, "health") == int(config["HEALTH_PORT"])
    assert ports == _dockerfile().final.exposed_ports()


def test_k8s_controller_drains_before_kubernetes_kills_it() -> None:
    pod = _controller_deployment()["spec"]["template"]["spec"]
    assert float(_controller_config()["SHUTDOWN_GRACE"]) < pod["terminationGracePeriodSeconds"]


def test_k8s_metrics_service_targets_the_metrics_port() -> None:
    service = _one_k8s("Service", f"{OWN_IMAGE}-metrics")
    pod_labels = _controller_deployment()["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert _named_port(_controller_container(), port["targetPort"]) == int(
        _controller_config()["METRICS_PORT"]
    )


def test_k8s_controller_env_names_are_known() -> None:
    known = _known_env_vars()
    names = set(_controller_config()) | {e["name"] for e in _controller_container().get("env", [])}
    assert not names - known, f"{sorted(names - known)} not in deployment/env-vars.txt"


def test_k8s_etcd_password_is_a_file_from_an_optional_secret() -> None:
    # Never an environment value (kubectl describe, crash dumps, child processes show those).
    env = {e["name"] for e in _controller_container().get("env", [])}
    assert not {"ETCD_PASSWORD", "ETCD_USERNAME"} & env
    assert "ETCD_PASSWORD" not in _controller_config()
    volumes = {
        v["name"]: v for v in _controller_deployment()["spec"]["template"]["spec"]["volumes"]
    }
    mounts = {m["name"]: m for m in _controller_container()["volumeMounts"]}
    auth = volumes["etcd-auth"]["secret"]
    assert auth["secretName"] == f"{OWN_IMAGE}-etcd"
    assert auth["optional"] is True, "a cluster without etcd auth must still start"
    assert mounts["etcd-auth"]["readOnly"] is True
    # The ConfigMap's instructions point ETCD_PASSWORD_FILE into that mount.
    configmap = (KUBERNETES_BASE / "configmap.yaml").read_text()
    assert f"ETCD_PASSWORD_FILE: {mounts['etcd-auth']['mountPath']}/password" in configmap


# -- the aws variant ----------------------------------------------------------------------------

AWS_OVERLAY = KUBERNETES / "aws"
AWS_COMPOSE = DEPLOYMENT / "docker-compose.aws.yml"


def _overlay_patches() -> dict[str, dict[str, Any]]:
    kustomization = yaml.safe_load((AWS_OVERLAY / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["../base"]
    files = [p["path"] for p in kustomization["patches"] if "path" in p]
    assert all((AWS_OVERLAY / f).is_file() for f in files)
    assert {p.name for p in AWS_OVERLAY.glob("*.yaml")} - {"kustomization.yaml"} == set(files)
    return {doc["kind"]: doc for f in files for doc in _load_yaml_documents(AWS_OVERLAY / f)}


def test_aws_overlay_selects_the_aws_provider_with_known_settings() -> None:
    data = _overlay_patches()["ConfigMap"]["data"]
    assert data["LAB_PROVIDER"] == "aws"
    unknown = set(data) - _known_env_vars()
    assert not unknown, f"{sorted(unknown)} not in deployment/env-vars.txt"
    from controller.labworker.plugins import find

    declared = {setting.env for setting in find("aws").settings}
    assert set(data) - {"LAB_PROVIDER"} <= declared, "only the aws plug-in's own settings"
    assert not any("PASSWORD" in k and not k.endswith("_FILE") for k in data), "no secret values"


def test_aws_overlay_uses_irsa_and_mounts_every_secret_as_a_read_only_file() -> None:
    patches = _overlay_patches()
    annotations = patches["ServiceAccount"]["metadata"]["annotations"]
    assert annotations["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    data = patches["ConfigMap"]["data"]
    pod = patches["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "env" not in container, "secrets come as files, never as environment values"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert all(m["readOnly"] is True for m in mounts.values())
    volumes = {v["name"]: v for v in pod["volumes"]}
    for setting in ("LAB_SECRETS_DIR", "LAB_CML_PASSWORD_FILE", "LAB_CML_CA_CERT"):
        path = Path(data[setting])
        directory = str(path if setting == "LAB_SECRETS_DIR" else path.parent)
        assert directory in mounts, f"{setting}={path} is not under a mounted volume"
        assert mounts[directory]["name"] in volumes
    for name in ("lab-licenses", "lab-cml-admin"):
        assert "secret" in volumes[name], f"{name}: a Secret, not a ConfigMap"


def test_aws_overlay_patches_match_the_kubernetes_schema() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    version = kubernetes_validate.utils.latest_version()
    patches = _overlay_patches()
    # Patches are partial objects; the complete ones must still be valid.
    for kind in ("ServiceAccount", "ConfigMap"):
        kubernetes_validate.validate(patches[kind], version, strict=True)


def test_aws_compose_override_sets_known_settings_and_mounts_secrets_as_files() -> None:
    compose = _compose(AWS_COMPOSE)
    controller = compose["services"]["controller"]
    env = _service_env(controller)
    assert env["LAB_PROVIDER"] == "aws"
    assert not set(env) - _known_env_vars()
    assert not any("PASSWORD" in k and not k.endswith("_FILE") for k in env)
    declared = set(compose["secrets"])
    assert set(controller["secrets"]) == declared
    run_secrets = {f"/run/secrets/{name}" for name in declared}
    assert env["AWS_SHARED_CREDENTIALS_FILE"] in run_secrets
    assert env["LAB_CML_PASSWORD_FILE"] in run_secrets
    (volume,) = controller["volumes"]
    assert volume.endswith(f":{env['LAB_SECRETS_DIR']}:ro")
    # The placeholders the defaults point at exist (and say they are placeholders).
    for default in re.findall(r"\$\{\w+:-(\./[^}]+)\}", AWS_COMPOSE.read_text()):
        path = DEPLOYMENT / default
        assert path.exists(), default
        files = [path] if path.is_file() else list(path.iterdir())
        assert files and all("REPLACE_ME" in f.read_text() for f in files)


def test_k8s_pods_are_locked_down() -> None:
    uid = int(_runtime_user()[0])
    for workload in _workloads():
        pod = workload["spec"]["template"]["spec"]
        pod_security = pod.get("securityContext", {})
        name = workload["metadata"]["name"]
        assert pod.get("automountServiceAccountToken") is False, name
        for container in _containers(workload):
            security = {**pod_security, **container.get("securityContext", {})}
            assert security["runAsNonRoot"] is True, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert security["seccompProfile"]["type"] == "RuntimeDefault", name
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), name
            assert "memory" in resources["limits"], name
    assert (
        _controller_deployment()["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == uid
    )


def test_k8s_controller_service_account_mounts_no_token() -> None:
    account = _one_k8s("ServiceAccount", OWN_IMAGE)
    assert account["automountServiceAccountToken"] is False
    assert _controller_deployment()["spec"]["template"]["spec"]["serviceAccountName"] == OWN_IMAGE


def test_k8s_etcd_is_a_three_member_statefulset_the_controller_lists_in_full() -> None:
    statefulset = _one_k8s("StatefulSet", "etcd")
    spec = statefulset["spec"]
    replicas, service_name = spec["replicas"], spec["serviceName"]
    assert replicas == 3
    assert spec["podManagementPolicy"] == "Parallel", "members must start together to bootstrap"
    assert spec["volumeClaimTemplates"]
    headless = _one_k8s("Service", service_name)["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    pod_labels = spec["template"]["metadata"]["labels"]
    assert headless["selector"].items() <= pod_labels.items()
    members = [f"etcd-{i}" for i in range(replicas)]

    (container,) = spec["template"]["spec"]["containers"]
    flags = _command_flags(container["args"])
    cluster = [entry.partition("=")[0] for entry in flags["initial-cluster"].split(",")]
    assert cluster == members
    assert f"$(POD_NAME).{service_name}." in flags["advertise-client-urls"]
    for probe in ("livenessProbe", "readinessProbe"):
        port = container[probe]["httpGet"]["port"]
        assert _named_port(container, port) == int(flags["listen-metrics-urls"].rpartition(":")[2])

    endpoints = _endpoint_hosts(_controller_config()["ETCD_ENDPOINTS"])
    assert endpoints == [(f"{m}.{service_name}", ETCD_CLIENT_PORT) for m in members]


def test_k8s_manifests_match_the_kubernetes_schema() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    version = kubernetes_validate.utils.latest_version()
    for document in _k8s_documents():
        kubernetes_validate.validate(document, version, strict=True)


def _kustomize(directory: Path) -> list[dict[str, Any]]:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    return [d for d in yaml.safe_load_all(rendered.stdout) if d]


def _rendered(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == OWN_IMAGE]
    return found


needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl")


@needs_kubectl
def test_kustomize_renders_everything_into_one_namespace() -> None:
    documents = _kustomize(KUBERNETES)
    assert len(documents) == len(_k8s_documents())
    namespace = _one_k8s("Namespace", OWN_IMAGE)["metadata"]["name"]
    for document in documents:
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == namespace


@needs_kubectl
def test_kustomize_renders_the_aws_variant_as_the_base_plus_its_settings_and_secret_files() -> None:
    documents = _kustomize(AWS_OVERLAY)
    base = _kustomize(KUBERNETES)
    assert [(d["kind"], d["metadata"]["name"]) for d in documents] == [
        (d["kind"], d["metadata"]["name"]) for d in base
    ], "the overlay patches; it adds or drops no object"
    namespace = _one_k8s("Namespace", OWN_IMAGE)["metadata"]["name"]
    assert all(d["metadata"].get("namespace", namespace) == namespace for d in documents)

    account = _rendered(documents, "ServiceAccount")
    assert "eks.amazonaws.com/role-arn" in account["metadata"]["annotations"]
    assert account["automountServiceAccountToken"] is False, "IRSA needs no API token"
    config = _rendered(documents, "ConfigMap")["data"]
    assert config["LAB_PROVIDER"] == "aws" and "LAB_SIM_DELAY" not in config
    assert not set(config) - _known_env_vars()
    assert config["ETCD_ENDPOINTS"] == _controller_config()["ETCD_ENDPOINTS"]

    pod = _rendered(documents, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # The base's own mounts survive the strategic merge, the aws ones are added.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    base_mounts = {m["mountPath"]: m["name"] for m in _controller_container()["volumeMounts"]}
    assert base_mounts.items() <= mounts.items()
    volumes = {v["name"] for v in pod["volumes"]}
    assert set(mounts.values()) <= volumes
    for setting in ("LAB_SECRETS_DIR", "LAB_CML_PASSWORD_FILE", "LAB_CML_CA_CERT"):
        path = Path(config[setting])
        assert any(path == Path(m) or Path(m) in path.parents for m in mounts), setting
    env_names = {e["name"] for e in container.get("env", [])}
    assert not {n for n in env_names if "PASSWORD" in n or "SECRET" in n or "TOKEN" in n}

    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    version = kubernetes_validate.utils.latest_version()
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)


# ---------------------------------------------------------------------------------------------
# docs


def test_deploy_doc_names_only_existing_files() -> None:
    text = (REPO_ROOT / "docs" / "deploy.md").read_text()
    mentioned = set(re.findall(r"(?<![\w/.-])((?:deployment|manifests)/[\w./-]*\w)", text))
    # `deployment/<name>` without a suffix is kubectl's kind/name, not a file.
    paths = {p for p in mentioned if Path(p).suffix or p.startswith(("deployment/k", "manifests/"))}
    assert "deployment/docker-compose.yml" in paths and "deployment/kubernetes" in paths
    for path in paths:
        assert (REPO_ROOT / path).exists(), f"docs/deploy.md mentions {path}, which does not exist"


# ---------------------------------------------------------------------------------------------
# sharded replicas


def test_sharded_compose_override_runs_every_replica_sharded_and_publishes_one() -> None:
    override = yaml.safe_load((DEPLOYMENT / "docker-compose.sharded.yml").read_text())
    base = _compose(DEPLOYMENT / "docker-compose.yml")["services"]
    services = override["services"]
    assert set(services) - set(base), "the override adds replicas"
    known = _known_env_vars()
    for name, service in services.items():
        env = service["environment"]
        assert env["SHARDING"] == "true", name
        assert not set(env) - known, f"{name}: {sorted(set(env) - known)} unknown"
        if name not in base:
            assert "ports" not in service, f"{name}: only the first replica publishes ports"
            assert service["image"] == base["controller"]["image"]
            assert env["ETCD_ENDPOINTS"] == base["controller"]["environment"]["ETCD_ENDPOINTS"]


def test_sharded_kustomization_runs_several_active_replicas() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "sharded" / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["../base"]
    ops = [op for patch in kustomization["patches"] for op in yaml.safe_load(patch["patch"])]
    by_path = {op["path"]: op["value"] for op in ops}
    assert by_path["/spec/replicas"] > 1
    assert by_path["/data/SHARDING"] == "true"
    assert {p.rsplit("/", 1)[1] for p in by_path if p.startswith("/data/")} <= _known_env_vars()

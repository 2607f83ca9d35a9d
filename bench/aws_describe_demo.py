"""What `labctl describe` shows while a real lab host boots, captured at its three moments.

    python -m bench.aws_describe_demo

Starts, all on loopback: etcd (bench._etcd.BenchEtcd), moto's EC2 API server
(tests.ec2server) and the CML 2.x API test server (tests.cmlserver) — this script imports those
two test servers from tests/ and needs the test extras (moto[server]). Then it runs
`labctl run` with LAB_PROVIDER=aws pointed at them (boto3 through AWS_ENDPOINT_URL, CML through
LAB_CML_URL_TEMPLATE), applies one LabWorker and prints `labctl describe labworker` when it is

1. Provisioning: EC2 has launched the instance and reports it `pending`;
2. Starting: the instance is `running`, but the CML host refuses connections (still booting);
3. Ready: the host answers, is healthy, and took the license token.

Moto launches straight into `running`; EC2 keeps a metal instance `pending` for minutes. So
that the first moment exists here too, this process's moto launches instances `pending` and
the script "finishes the boot" itself (`Booting`), the one liberty taken with EC2. Real AWS
differs in the numbers only: minutes instead of the seconds LAB_AWS_BOOT_ESTIMATE and
LAB_CML_BOOT_POLL are set to here. The output is for README's "Run against AWS"; it takes
about half a minute.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if not __package__:  # run as `python bench/aws_describe_demo.py`: make the root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._etcd import BenchEtcd, free_port
from tests.cmlserver import DEFAULT_PASSWORD, DEFAULT_VALID_TOKEN, CmlServer
from tests.ec2server import REGION, Ec2TestServer

REPO = Path(__file__).resolve().parents[1]
NAME = "ccna-host-01"
SECRET = "ccna-license"
PREFIX = "/aws-describe-demo"
HOST_BOOT_S = 8.0
"""How long the CML host refuses connections once its instance runs (two or three checks)."""
TIMEOUT_S = 60.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Booting:
    """Instances launch `pending`, as on EC2, and run when `finish` says so.

    Reaches into moto's backend in this process: there is no EC2 API call for "the hardware
    finished booting".
    """

    def __init__(self) -> None:
        from moto.ec2.models.instances import Instance, InstanceState

        launch = Instance.__init__

        def launch_pending(instance: Any, *args: Any, **kwargs: Any) -> None:
            launch(instance, *args, **kwargs)
            instance._state = InstanceState("pending", 0)

        Instance.__init__ = launch_pending  # type: ignore[method-assign,assignment]

    def finish(self, instance_id: str) -> None:
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.ec2.models import ec2_backends

        ec2_backends[DEFAULT_ACCOUNT_ID][REGION].get_instance(instance_id).start()


def labctl(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "controller.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=REPO,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"labctl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def worker_status(env: dict[str, str]) -> dict[str, Any]:
    worker = json.loads(labctl(env, "get", "labworker", NAME, "-o", "json"))
    status: dict[str, Any] = worker.get("status") or {}
    return status


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    for found in status.get("conditions", []):
        if found["type"] == type_:
            return dict(found)
    return {}


def wait_for(what: str, check: Callable[[], bool], controller: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not check():
        if controller.poll() is not None:
            raise RuntimeError(f"labctl run exited ({controller.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} within {TIMEOUT_S:g}s")
        time.sleep(0.3)


def moment(title: str, env: dict[str, str], started: float) -> None:
    print(f"=== {title} (t={time.monotonic() - started:.0f}s)", flush=True)
    print(f"$ labctl describe labworker {NAME}", flush=True)
    print(labctl(env, "describe", "labworker", NAME), flush=True)


def manifest() -> str:
    return json.dumps(
        {
            "apiVersion": "lab.neuroglia.io/v1",
            "kind": "LabWorker",
            "metadata": {"name": NAME, "namespace": "default"},
            "spec": {
                "labTrack": "ccna",
                "desiredPhase": "Ready",
                "instance": {"type": "m5zn.metal"},
                "host": {"autoLicense": True, "licenseSecretRef": SECRET},
            },
        }
    )


def main() -> int:
    booting = Booting()
    work = Path(tempfile.mkdtemp(prefix="aws-describe-demo-"))
    secrets = work / "licenses"
    secrets.mkdir()
    (secrets / SECRET).write_text(DEFAULT_VALID_TOKEN + "\n")
    password = work / "cml-admin-password"
    password.write_text(DEFAULT_PASSWORD + "\n")

    etcd = BenchEtcd.start()
    ec2 = Ec2TestServer().start()
    cml = CmlServer(listening=False)  # the host's port: nothing answers on it yet
    controller: subprocess.Popen[bytes] | None = None
    try:
        network = ec2.network()
        client_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("LAB_", "ETCD_", "OTEL_"))},
            "PYTHONPATH": str(REPO),
            "ETCD_ENDPOINTS": etcd.endpoint,
            "ETCD_PREFIX": PREFIX,
        }
        controller_env = {
            **client_env,
            **ec2.env(),  # AWS_ENDPOINT_URL, AWS_REGION and fake credentials: the standard chain
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "LAB_PROVIDER": "aws",
            "LAB_AWS_SUBNET_ID": network["subnet"],
            "LAB_AWS_SECURITY_GROUP_IDS": network["security_group"],
            "LAB_AWS_KEY_NAME": network["key_name"],
            "LAB_AWS_INSTANCE_PROFILE": network["instance_profile"],
            "LAB_AWS_DEFAULT_IMAGE": ec2.some_image(),
            "LAB_AWS_BOOT_ESTIMATE": "4",
            "LAB_AWS_POLL_INTERVAL": "1",
            "LAB_CML_URL_TEMPLATE": cml.url_template,
            "LAB_CML_PASSWORD_FILE": str(password),
            "LAB_CML_BOOT_POLL": "3",
            "LAB_SECRETS_DIR": str(secrets),
            "METRICS_PORT": str(free_port()),
            "HEALTH_PORT": str(free_port()),
            "LOG_FORMAT": "json",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
        }
        controller_log = (work / "controller.log").open("wb")
        controller = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "run"],
            env=controller_env,
            stdout=controller_log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        log(f"labctl run started (pid {controller.pid}); its log: {work / 'controller.log'}")
        started = time.monotonic()
        labctl(client_env, "apply", "-f", "-", stdin=manifest())

        def launched_pending() -> bool:
            status = worker_status(client_env)
            return (
                status.get("phase") == "Provisioning"
                and bool(status.get("instanceId"))
                and "pending" in condition(status, "Provisioned").get("message", "")
            )

        wait_for("an instance pending in Provisioning", launched_pending, controller)
        moment("1. Provisioning: EC2 launched the instance; it is pending", client_env, started)

        booting.finish(worker_status(client_env)["instanceId"])
        refused_before = time.monotonic()

        def host_not_answering() -> bool:
            status = worker_status(client_env)
            return (
                status.get("phase") == "Starting"
                and condition(status, "HostReady").get("status") == "False"
            )

        wait_for("Starting with the host not answering", host_not_answering, controller)
        moment(
            "2. Starting: the instance runs; the CML host refuses connections (booting)",
            client_env,
            started,
        )

        time.sleep(max(0.0, HOST_BOOT_S - (time.monotonic() - refused_before)))
        cml.start_listening()  # nginx and the CML controller are up
        wait_for("Ready", lambda: worker_status(client_env).get("phase") == "Ready", controller)
        moment("3. Ready: the host is healthy and licensed", client_env, started)
        calls = {
            "EC2": dict(sorted(ec2.calls().items())),
            "CML": dict(sorted(cml.calls().items())),
        }
        log(f"requests from apply to Ready: {json.dumps(calls)}")
        return 0
    finally:
        if controller is not None and controller.poll() is None:
            controller.send_signal(signal.SIGTERM)
            try:
                controller.wait(30)
            except subprocess.TimeoutExpired:
                controller.kill()
                controller.wait()
        cml.close()
        ec2.stop()
        etcd.stop()


if __name__ == "__main__":
    raise SystemExit(main())

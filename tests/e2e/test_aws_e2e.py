"""End-to-end with LAB_PROVIDER=aws: `labctl run` against moto's EC2 server and the CML test
server, both on loopback in this process; etcd as in every e2e test.

The controller is a subprocess that reaches EC2 only through boto3's standard chain
(AWS_ENDPOINT_URL, fake credentials) and CML through LAB_CML_URL_TEMPLATE, which routes
every instance address moto hands out to its own host on the CML test server.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cmlserver import DEFAULT_PASSWORD, DEFAULT_VALID_TOKEN, CmlServer
from tests.e2e.harness import (
    REPO,
    ControllerProcess,
    all_in_phase,
    apply,
    labctl,
    labctl_cmd,
    list_workers,
    phases,
    worker_manifest,
)
from tests.ec2server import Ec2TestServer
from tests.etcdproc import EtcdProcess, free_port, wait_until

pytestmark = pytest.mark.timeout(240)

SECRET = "ccna-license"


@pytest.fixture(scope="module")
def aws(ec2_server: Ec2TestServer) -> dict[str, str]:
    """The network and AMI every test launches into (moto keeps them for the module)."""
    return {**ec2_server.network(), "image": ec2_server.some_image()}


@pytest.fixture
def cml() -> Iterator[CmlServer]:
    with CmlServer() as server:
        yield server


@pytest.fixture
def aws_env(
    ec2_server: Ec2TestServer, aws: dict[str, str], cml: CmlServer, tmp_path: Path
) -> dict[str, str]:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / SECRET).write_text(DEFAULT_VALID_TOKEN + "\n")
    password = tmp_path / "cml-password"
    password.write_text(DEFAULT_PASSWORD + "\n")
    ec2_server.reset_calls()
    return {
        "LAB_PROVIDER": "aws",
        **ec2_server.env(),
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "LAB_AWS_SUBNET_ID": aws["subnet"],
        "LAB_AWS_SECURITY_GROUP_IDS": aws["security_group"],
        "LAB_AWS_KEY_NAME": aws["key_name"],
        "LAB_AWS_INSTANCE_PROFILE": aws["instance_profile"],
        "LAB_AWS_DEFAULT_IMAGE": aws["image"],
        "LAB_AWS_BOOT_ESTIMATE": "0.3",
        "LAB_AWS_POLL_INTERVAL": "0.3",
        "LAB_CML_URL_TEMPLATE": cml.url_template,
        "LAB_CML_PASSWORD_FILE": str(password),
        "LAB_CML_BOOT_POLL": "0.3",
        "LAB_SECRETS_DIR": str(secrets),
    }


def lab_worker(name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("host", {"autoLicense": True, "licenseSecretRef": SECRET})
    return worker_manifest(name, **spec)


def uids(etcd: EtcdProcess) -> dict[str, str]:
    return {w["metadata"]["name"]: w["metadata"]["uid"] for w in list_workers(etcd, "default")}


def ec2_state(ec2: Ec2TestServer, uid: str) -> str:
    [instance] = ec2.instances_by_uid()[uid]
    return str(instance["State"]["Name"])


def assert_one_instance_per_uid(ec2: Ec2TestServer, expected: set[str]) -> None:
    by_uid = ec2.instances_by_uid()
    counts = {uid: len(by_uid.get(uid, [])) for uid in expected}
    assert all(n == 1 for n in counts.values()), f"instances per uid: {counts}"


def worker(etcd: EtcdProcess, name: str) -> dict[str, Any]:
    [found] = [w for w in list_workers(etcd, "default") if w["metadata"]["name"] == name]
    return found


def condition(w: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in w.get("status", {}).get("conditions", []):
        if c["type"] == type_:
            return dict(c)
    return None


def test_fleet_converges_under_throttling_then_stops_starts_and_terminates(
    etcd: EtcdProcess,
    tmp_path: Path,
    ec2_server: Ec2TestServer,
    cml: CmlServer,
    aws_env: dict[str, str],
) -> None:
    controller = ControllerProcess(etcd, tmp_path, env_extra=aws_env)
    ec2_server.throttle(4, "RunInstances")  # EC2 pushing back on the first launches
    apply(etcd, [lab_worker(f"aws-{i:02d}") for i in range(20)])
    try:
        controller.start().wait_ready()
        wait_until(lambda: all_in_phase(etcd, "Ready", 20), timeout=90, what="20 workers Ready")
        by_name = uids(etcd)
        assert_one_instance_per_uid(ec2_server, set(by_name.values()))
        assert ec2_server.calls()["RunInstances:throttled"] == 4
        assert all(ec2_state(ec2_server, uid) == "running" for uid in by_name.values())
        hosts = cml.hosts()
        assert len(hosts) == 20
        assert all(h.registrations == [DEFAULT_VALID_TOKEN] for h in hosts.values())
        ready = worker(etcd, "aws-00")
        assert ready["status"]["licensed"] is True
        assert ready["status"]["hostVersion"] == cml.host(ready["status"]["address"]).version

        uid = by_name["aws-00"]
        apply(etcd, [lab_worker("aws-00", desiredPhase="Stopped")])
        wait_until(lambda: phases(etcd)["default/aws-00"] == "Stopped", timeout=30, what="Stopped")
        assert ec2_state(ec2_server, uid) == "stopped"
        apply(etcd, [lab_worker("aws-00", desiredPhase="Ready")])
        wait_until(
            lambda: phases(etcd)["default/aws-00"] == "Ready", timeout=30, what="Ready again"
        )
        assert ec2_state(ec2_server, uid) == "running"

        names = [f"aws-{i:02d}" for i in range(5)]
        labctl(etcd, "delete", "labworker", *names)
        labctl(etcd, "wait", *[f"labworker/{n}" for n in names], "--for=delete", "--timeout=60s")
        for name in names:  # gone from etcd: the finalizer was removed after termination
            assert ec2_state(ec2_server, by_name[name]) == "terminated"
        assert_one_instance_per_uid(ec2_server, set(by_name.values()))
    finally:
        controller.kill()


def test_sigkill_after_ec2_launched_but_before_the_answer_makes_no_second_instance(
    etcd: EtcdProcess, tmp_path: Path, ec2_server: Ec2TestServer, aws_env: dict[str, str]
) -> None:
    controller = ControllerProcess(etcd, tmp_path, env_extra=aws_env)
    ec2_server.hold("RunInstances")
    apply(etcd, [lab_worker(f"kill-{i:02d}") for i in range(20)])
    try:
        controller.start()
        wait_until(lambda: ec2_server.held() >= 5, timeout=60, what="launches in flight")
        controller.kill()  # SIGKILL: EC2 launched them, the controller never heard
        launched_before = ec2_server.calls()["RunInstances"]
        ec2_server.release()
        controller.start().wait_ready()
        wait_until(lambda: all_in_phase(etcd, "Ready", 20), timeout=90, what="20 Ready after kill")
        assert launched_before >= 5
        assert_one_instance_per_uid(ec2_server, set(uids(etcd).values()))
    finally:
        controller.kill()


def test_leader_failover_mid_provisioning_makes_no_second_instance(
    etcd: EtcdProcess, tmp_path: Path, ec2_server: Ec2TestServer, aws_env: dict[str, str]
) -> None:
    election = {**aws_env, "LEADER_ELECT": "true", "LEADER_ELECTION_TTL": "3"}
    first = ControllerProcess(
        etcd, tmp_path / "a", env_extra={**election, "LEADER_ELECTION_ID": "a"}
    )
    second = ControllerProcess(
        etcd, tmp_path / "b", env_extra={**election, "LEADER_ELECTION_ID": "b"}
    )
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ec2_server.hold("RunInstances")
    try:
        first.start()
        wait_until(lambda: first.leader_status() == 1.0, timeout=60, what="a leading")
        second.start()
        wait_until(lambda: second.leader_status() == 0.0, timeout=60, what="b standing by")
        apply(etcd, [lab_worker(f"lead-{i:02d}") for i in range(20)])
        wait_until(lambda: ec2_server.held() >= 5, timeout=60, what="a's launches in flight")
        assert first.proc is not None
        first.proc.send_signal(signal.SIGSTOP)  # the leader stalls mid-provisioning
        ec2_server.release()
        wait_until(
            lambda: all_in_phase(etcd, "Ready", 20), timeout=90, what="b converging the fleet"
        )
        assert second.leader_status() == 1.0
        first.proc.send_signal(signal.SIGCONT)  # the deposed leader wakes up with answers
        wait_until(lambda: first.leader_status() == 0.0, timeout=30, what="a noticing it lost")
        assert all_in_phase(etcd, "Ready", 20)
        assert_one_instance_per_uid(ec2_server, set(uids(etcd).values()))
    finally:
        for ctl in (first, second):
            if ctl.proc is not None and ctl.proc.poll() is None:
                ctl.proc.send_signal(signal.SIGCONT)
            ctl.kill()


def test_invalid_ami_fails_with_awss_message_and_a_missing_secret_is_reported(
    etcd: EtcdProcess,
    tmp_path: Path,
    ec2_server: Ec2TestServer,
    aws: dict[str, str],
    aws_env: dict[str, str],
) -> None:
    controller = ControllerProcess(etcd, tmp_path, env_extra=aws_env)
    apply(
        etcd,
        [
            lab_worker("bad-ami", instance={"image": "ami-0000000000deadbee"}),
            lab_worker("no-secret", host={"autoLicense": True, "licenseSecretRef": "absent"}),
        ],
    )
    try:
        controller.start().wait_ready()
        wait_until(lambda: phases(etcd)["default/bad-ami"] == "Failed", timeout=60, what="Failed")
        failed = worker(etcd, "bad-ami")
        assert failed["status"]["errorMessage"] == (
            "EC2 DescribeImages failed: InvalidAMIID.NotFound: "
            "The image id '[ami-0000000000deadbee]' does not exist"
        )
        assert uids(etcd)["bad-ami"] not in ec2_server.instances_by_uid()

        def licensed_reason() -> str | None:
            found = condition(worker(etcd, "no-secret"), "Licensed")
            return found["reason"] if found and found["status"] == "False" else None

        wait_until(
            lambda: licensed_reason() == "LicenseSecretMissing",
            timeout=60,
            what="Licensed=False LicenseSecretMissing",
        )
        missing = condition(worker(etcd, "no-secret"), "Licensed")
        assert missing is not None and "'absent' not found" in missing["message"]
        assert phases(etcd)["default/no-secret"] == "Starting"

        apply(etcd, [lab_worker("bad-ami", instance={"image": aws["image"]})])  # the fix
        wait_until(lambda: phases(etcd)["default/bad-ami"] == "Ready", timeout=60, what="fixed")
        assert_one_instance_per_uid(ec2_server, {uids(etcd)["bad-ami"]})
        logs = "\n".join(str(line) for line in controller.logs())
        assert DEFAULT_VALID_TOKEN not in logs and DEFAULT_PASSWORD not in logs
        assert "test-secret-access-key-not-real" not in logs
    finally:
        controller.kill()


def run_labctl(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LAB_", "AWS_", "ETCD_"))}
    return subprocess.run(
        [*labctl_cmd(), *args],
        env={**clean, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )


def test_labctl_providers_lists_the_plugins_and_never_a_secret() -> None:
    res = run_labctl(
        "providers", LAB_PROVIDER="aws", LAB_CML_PASSWORD="s3cret-pw", AWS_REGION="eu-west-1"
    )
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "aws: EC2 instances running Cisco Modeling Labs" in out and "(selected" in out
    assert "\nsim: " in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("  ")}
    assert rows["LAB_CML_PASSWORD"][2] == "(set)"
    assert rows["AWS_REGION"][2] == "eu-west-1"
    assert rows["LAB_AWS_VOLUME_TYPE"][1] == "gp3"
    assert "s3cret-pw" not in out + res.stderr


def test_an_unknown_provider_is_one_error_line_naming_the_installed_ones() -> None:
    res = run_labctl("run", LAB_PROVIDER="gcp", ETCD_ENDPOINTS=f"127.0.0.1:{free_port()}")
    assert res.returncode == 1
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: unknown lab provider 'gcp': LAB_PROVIDER must name an installed provider "
        "plug-in (installed: aws, sim)"
    ]

"""The aws provider's EC2 half against a real EC2 API server (moto over HTTP, see ec2server).

Every call goes through boto3's wire path: AWS_ENDPOINT_URL from the environment, SigV4,
the query protocol, botocore's retry mode. Nothing in the provider is patched.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from controller.labworker.aws.cml import CmlClient, CmlSettings
from controller.labworker.aws.ec2 import TAG_UID, Ec2Instances, settings_from
from controller.labworker.aws.provider import ADDRESS_TTL, AwsProvider
from controller.labworker.model import InstanceSpec
from controller.labworker.provider import (
    InstanceState,
    LicenseSecretMissing,
    ProviderError,
    ProviderFatalError,
)
from tests.cmlserver import DEFAULT_PASSWORD, DEFAULT_VALID_TOKEN, CmlServer
from tests.ec2server import Ec2TestServer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def network(ec2_server: Ec2TestServer) -> dict[str, str]:
    return ec2_server.network()


@pytest.fixture(scope="module")
def image(ec2_server: Ec2TestServer) -> str:
    return ec2_server.some_image()


def make(network: dict[str, str], **overrides: str) -> Ec2Instances:
    values: dict[str, str | None] = {
        "LAB_AWS_SUBNET_ID": network["subnet"],
        "LAB_AWS_SECURITY_GROUP_IDS": network["security_group"],
        "LAB_AWS_KEY_NAME": network["key_name"],
        "LAB_AWS_INSTANCE_PROFILE": network["instance_profile"],
        "LAB_AWS_BOOT_ESTIMATE": "1",
        "LAB_AWS_POLL_INTERVAL": "0.5",
        "AWS_REGION": "us-east-1",
        **overrides,
    }
    return Ec2Instances(settings_from(values))


def new_uid() -> str:
    return str(uuid.uuid4())


def test_provision_launches_one_instance_as_specified(
    ec2: Ec2TestServer, network: dict[str, str], image: str
) -> None:
    uid = new_uid()
    spec = InstanceSpec(type="m5.large", image=image, volume_size_gb=120, tags={"team": "net"})
    instance = make(network).provision(uid, "ccna-01", spec, namespace="emea")

    assert instance.state in (InstanceState.PENDING, InstanceState.RUNNING)
    [raw] = ec2.instances_by_uid()[uid]
    assert raw["InstanceId"] == instance.instance_id
    assert raw["InstanceType"] == "m5.large"
    assert raw["ImageId"] == image
    assert raw["SubnetId"] == network["subnet"]
    assert [g["GroupId"] for g in raw["SecurityGroups"]] == [network["security_group"]]
    assert raw["KeyName"] == network["key_name"]
    assert raw["IamInstanceProfile"]["Arn"].endswith("/" + network["instance_profile"])
    assert raw["ClientToken"] == uid
    tags = {t["Key"]: t["Value"] for t in raw["Tags"]}
    assert tags == {
        "Name": "ccna-01",
        "team": "net",
        "lab.neuroglia.io/uid": uid,
        "lab.neuroglia.io/name": "ccna-01",
        "lab.neuroglia.io/namespace": "emea",
    }
    volumes = ec2.client().describe_volumes(
        Filters=[{"Name": "attachment.instance-id", "Values": [instance.instance_id]}]
    )["Volumes"]
    assert [(v["Size"], v["VolumeType"]) for v in volumes] == [(120, "gp3")]
    assert ec2.calls()["RunInstances"] == 1


def test_provision_again_returns_the_same_instance(
    ec2: Ec2TestServer, network: dict[str, str], image: str
) -> None:
    uid = new_uid()
    spec = InstanceSpec(type="m5.large", image=image)
    first = make(network).provision(uid, "w", spec)
    again = make(network).provision(uid, "w", spec)  # a restarted controller
    changed = make(network).provision(uid, "w", InstanceSpec(type="c5.large", image=image))
    assert first.instance_id == again.instance_id == changed.instance_id
    assert len(ec2.instances_by_uid()[uid]) == 1
    assert ec2.calls()["RunInstances"] == 1


def test_concurrent_provisions_from_two_providers_make_one_instance(
    ec2: Ec2TestServer, network: dict[str, str], image: str
) -> None:
    uid = new_uid()
    spec = InstanceSpec(type="m5.large", image=image)
    providers = [make(network), make(network)]
    barrier = threading.Barrier(2)
    results: list[str] = []

    def provision(provider: Ec2Instances) -> None:
        barrier.wait()
        results.append(provider.provision(uid, "w", spec).instance_id)

    threads = [threading.Thread(target=provision, args=(p,)) for p in providers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 2 and results[0] == results[1]
    assert len(ec2.instances_by_uid()[uid]) == 1


def test_describe_finds_the_instance_by_tag_then_by_client_token(
    ec2: Ec2TestServer, network: dict[str, str], image: str
) -> None:
    uid = new_uid()
    provider = make(network)
    assert provider.describe(uid) is None
    launched = provider.provision(uid, "w", InstanceSpec(image=image))
    found = make(network).describe(uid)
    assert found is not None and found.instance_id == launched.instance_id
    assert found.state is InstanceState.RUNNING
    assert found.address and found.address.count(".") == 3

    ec2.client().delete_tags(Resources=[launched.instance_id], Tags=[{"Key": TAG_UID}])
    by_token = make(network).describe(uid)
    assert by_token is not None and by_token.instance_id == launched.instance_id


def test_start_stop_terminate_are_idempotent(
    ec2: Ec2TestServer, network: dict[str, str], image: str
) -> None:
    uid = new_uid()
    provider = make(network)
    provider.provision(uid, "w", InstanceSpec(image=image))

    def state() -> str:
        [raw] = ec2.instances_by_uid()[uid]
        return str(raw["State"]["Name"])

    provider.start(uid)  # already running
    assert state() == "running"
    provider.stop(uid)
    make(network).stop(uid)  # already stopped, from a fresh process
    assert state() == "stopped"
    provider.start(uid)
    provider.start(uid)
    assert state() == "running"
    provider.terminate(uid)
    make(network).terminate(uid)
    assert state() == "terminated"
    gone = provider.describe(uid)
    assert gone is not None and gone.state is InstanceState.TERMINATED
    with pytest.raises(ProviderFatalError, match="terminated and cannot be brought back"):
        provider.start(uid)
    make(network).terminate(new_uid())  # never had an instance: nothing to do


def test_an_unknown_ami_is_fatal_with_awss_message(
    ec2: Ec2TestServer, network: dict[str, str]
) -> None:
    uid = new_uid()
    with pytest.raises(ProviderFatalError) as caught:
        make(network).provision(uid, "w", InstanceSpec(image="ami-0000000000deadbee"))
    assert str(caught.value) == (
        "EC2 DescribeImages failed: InvalidAMIID.NotFound: "
        "The image id '[ami-0000000000deadbee]' does not exist"
    )
    assert uid not in ec2.instances_by_uid()
    assert ec2.calls()["RunInstances"] == 0


def test_no_image_in_spec_or_settings_is_fatal(ec2: Ec2TestServer, network: dict[str, str]) -> None:
    with pytest.raises(ProviderFatalError, match="LAB_AWS_DEFAULT_IMAGE is not set"):
        make(network).provision(new_uid(), "w", InstanceSpec())


def test_the_default_image_is_used_when_the_spec_has_none(
    ec2: Ec2TestServer, network: dict[str, str], image: str
) -> None:
    uid = new_uid()
    make(network, LAB_AWS_DEFAULT_IMAGE=image).provision(uid, "w", InstanceSpec())
    assert ec2.instances_by_uid()[uid][0]["ImageId"] == image


def test_throttling_is_retried_by_botocore_without_a_duplicate(
    ec2: Ec2TestServer, network: dict[str, str], image: str
) -> None:
    uid = new_uid()
    ec2.throttle(2, "RunInstances")
    instance = make(network).provision(uid, "w", InstanceSpec(image=image))
    assert ec2.calls()["RunInstances"] == 3
    assert ec2.calls()["RunInstances:throttled"] == 2
    assert [i["InstanceId"] for i in ec2.instances_by_uid()[uid]] == [instance.instance_id]


def test_throttling_beyond_the_retry_budget_is_transient(
    ec2: Ec2TestServer, network: dict[str, str], image: str
) -> None:
    uid = new_uid()
    provider = make(network)
    ec2.throttle(3, "RunInstances")
    with pytest.raises(ProviderError, match="RequestLimitExceeded") as caught:
        provider.provision(uid, "w", InstanceSpec(image=image))
    assert not isinstance(caught.value, ProviderFatalError)
    assert ec2.calls()["RunInstances"] == 3  # LAB_AWS_MAX_ATTEMPTS, then it gives up
    assert uid not in ec2.instances_by_uid()
    provider.provision(uid, "w", InstanceSpec(image=image))  # the reconciler's retry
    assert len(ec2.instances_by_uid()[uid]) == 1


def test_an_unreachable_endpoint_is_transient(
    monkeypatch: pytest.MonkeyPatch, ec2: Ec2TestServer, network: dict[str, str]
) -> None:
    from tests.etcdproc import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    provider = make(network, LAB_AWS_MAX_ATTEMPTS="1", LAB_AWS_CONNECT_TIMEOUT="1")
    with pytest.raises(ProviderError, match="EndpointConnectionError") as caught:
        provider.describe(new_uid())
    assert "AKIA" not in str(caught.value) and "secret" not in str(caught.value).lower()


# -- the whole provider: EC2 (moto) + CML (test server) + secrets ---------------------------------


@pytest.fixture
def cml_server() -> Any:
    with CmlServer() as server:
        yield server


def aws_provider(
    network: dict[str, str], cml_server: CmlServer, secrets_dir: Path | None
) -> AwsProvider:
    cml_settings = CmlSettings(url_template=cml_server.url_template, password=DEFAULT_PASSWORD)
    return AwsProvider(
        make(network), CmlClient(cml_settings), str(secrets_dir) if secrets_dir else None
    )


def test_host_health_and_license_reach_cml_at_the_instances_address(
    ec2: Ec2TestServer,
    network: dict[str, str],
    image: str,
    cml_server: CmlServer,
    tmp_path: Path,
) -> None:
    (tmp_path / "ccna-license").write_text(DEFAULT_VALID_TOKEN + "\n")
    uid = new_uid()
    provider = aws_provider(network, cml_server, tmp_path)
    provider.provision(uid, "w", InstanceSpec(image=image))
    running = provider.describe(uid)
    assert running is not None and running.address is not None

    health = provider.host_health(uid)
    assert health.ready and not health.licensed
    assert provider.license(uid, "ccna-license") is True
    assert provider.host_health(uid).licensed
    assert cml_server.host(running.address).registrations == [DEFAULT_VALID_TOKEN]
    # One describe served the three host calls.
    assert ec2.calls()["DescribeInstances"] == 2  # provision's look-up + describe


def test_host_health_of_a_stopped_instance_is_not_ready_without_calling_cml(
    ec2: Ec2TestServer, network: dict[str, str], image: str, cml_server: CmlServer
) -> None:
    uid = new_uid()
    provider = aws_provider(network, cml_server, None)
    provider.provision(uid, "w", InstanceSpec(image=image))
    provider.stop(uid)
    health = provider.host_health(uid)
    assert not health.ready
    assert sum(cml_server.calls().values()) == 0


def test_license_with_a_missing_secret(
    ec2: Ec2TestServer,
    network: dict[str, str],
    image: str,
    cml_server: CmlServer,
    tmp_path: Path,
) -> None:
    uid = new_uid()
    provider = aws_provider(network, cml_server, tmp_path)
    provider.provision(uid, "w", InstanceSpec(image=image))
    with pytest.raises(LicenseSecretMissing, match="'absent' not found"):
        provider.license(uid, "absent")
    assert not any(h.registrations for h in cml_server.hosts().values())


def test_a_booting_host_is_polled_without_asking_ec2_each_time(
    ec2: Ec2TestServer, network: dict[str, str], image: str
) -> None:
    """CML boots for minutes after EC2 says running; each look at it must not cost a
    DescribeInstances (the issue's budget is 6 EC2 calls per worker from apply to Ready)."""
    now = [1000.0]
    with CmlServer(listening=False) as booting:  # refuses connections: the host is booting
        cml_settings = CmlSettings(url_template=booting.url_template, password=DEFAULT_PASSWORD)
        provider = AwsProvider(make(network), CmlClient(cml_settings), None, clock=lambda: now[0])
        uid = new_uid()
        provider.provision(uid, "w", InstanceSpec(image=image))
        running = provider.describe(uid)
        assert running is not None and running.address is not None
        before = ec2.calls()["DescribeInstances"]
        for _ in range(30):  # five minutes of 10 s boot polls, as the Starting phase does
            assert provider.describe(uid) == running
            assert not provider.host_health(uid).ready
            now[0] += 9.9
        assert ec2.calls()["DescribeInstances"] == before, "the running answer stood in"
        now[0] += ADDRESS_TTL
        provider.describe(uid)
        assert ec2.calls()["DescribeInstances"] == before + 1, "and expires after ADDRESS_TTL"

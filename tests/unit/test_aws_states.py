"""EC2 state mapping, client-token derivation, instance choice, and the launch request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.labworker.aws import cml
from controller.labworker.aws.ec2 import (
    Ec2Settings,
    client_token,
    map_state,
    pick_instance,
    ready_in,
    run_request,
    settings_from,
    to_instance,
    transition_outcome,
)
from controller.labworker.aws.plugin import PLUGIN
from controller.labworker.model import InstanceSpec
from controller.labworker.provider import InstanceState, ProviderError

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SETTINGS = Ec2Settings(boot_estimate=300.0, poll_interval=15.0)


@pytest.mark.parametrize(
    ("ec2_state", "state"),
    [
        ("pending", InstanceState.PENDING),
        ("running", InstanceState.RUNNING),
        ("stopping", InstanceState.STOPPING),
        ("stopped", InstanceState.STOPPED),
        ("shutting-down", InstanceState.TERMINATING),
        ("terminated", InstanceState.TERMINATED),
    ],
)
def test_every_ec2_state_maps(ec2_state: str, state: InstanceState) -> None:
    assert map_state(ec2_state) is state


def test_an_unknown_state_is_a_transient_error() -> None:
    with pytest.raises(ProviderError, match="unknown instance state 'hibernating'"):
        map_state("hibernating")


def test_client_token_is_the_uid_when_ec2_accepts_it() -> None:
    uid = "3f1c2a9e-8d4b-4f61-9c1e-2b7a5d0e6f13"
    assert client_token(uid) == uid


@pytest.mark.parametrize("uid", ["x" * 65, "ünïcode-uid", "tab\tuid", ""])
def test_client_token_is_a_stable_ascii_digest_otherwise(uid: str) -> None:
    token = client_token(uid)
    assert token == client_token(uid)
    assert len(token) <= 64 and token.isascii() and token.startswith("lab-")
    assert token != client_token(uid + "y")


def raw(instance_id: str, state: str, launched: datetime, **extra: Any) -> Any:
    return {"InstanceId": instance_id, "State": {"Name": state}, "LaunchTime": launched, **extra}


def test_pick_prefers_the_newest_live_instance_over_a_newer_terminated_one() -> None:
    old = raw("i-old", "stopped", NOW - timedelta(hours=2))
    live = raw("i-live", "running", NOW - timedelta(hours=1))
    dead = raw("i-dead", "terminated", NOW)
    picked = pick_instance([old, dead, live])
    assert picked is not None and picked["InstanceId"] == "i-live"


def test_pick_returns_the_newest_terminated_when_nothing_lives() -> None:
    first = raw("i-1", "terminated", NOW - timedelta(minutes=30))
    second = raw("i-2", "terminated", NOW - timedelta(minutes=5))
    picked = pick_instance([first, second])
    assert picked is not None and picked["InstanceId"] == "i-2"
    assert pick_instance([]) is None


def test_address_is_public_else_private() -> None:
    both = raw("i-1", "running", NOW, PublicIpAddress="54.1.2.3", PrivateIpAddress="10.0.0.5")
    private = raw("i-2", "running", NOW, PrivateIpAddress="10.0.0.6")
    assert to_instance(both, NOW, SETTINGS).address == "54.1.2.3"
    assert to_instance(private, NOW, SETTINGS).address == "10.0.0.6"
    assert to_instance(raw("i-3", "pending", NOW), NOW, SETTINGS).address is None


def test_ready_in_estimates() -> None:
    launched = NOW - timedelta(seconds=100)
    assert ready_in(InstanceState.PENDING, launched, NOW, SETTINGS) == pytest.approx(200)
    long_ago = NOW - timedelta(seconds=1000)
    assert ready_in(InstanceState.PENDING, long_ago, NOW, SETTINGS) == 15.0
    assert ready_in(InstanceState.PENDING, None, NOW, SETTINGS) == 300.0
    assert ready_in(InstanceState.STOPPING, None, NOW, SETTINGS) == 15.0
    assert ready_in(InstanceState.TERMINATING, None, NOW, SETTINGS) == 15.0
    for settled in (InstanceState.RUNNING, InstanceState.STOPPED, InstanceState.TERMINATED):
        assert ready_in(settled, launched, NOW, SETTINGS) is None


def test_incorrect_state_outcomes() -> None:
    start_done = {InstanceState.PENDING, InstanceState.RUNNING}
    start_later = {InstanceState.STOPPING}
    assert transition_outcome(InstanceState.RUNNING, start_done, start_later) == "done"
    assert transition_outcome(InstanceState.STOPPING, start_done, start_later) == "later"
    assert transition_outcome(InstanceState.TERMINATED, start_done, start_later) == "never"


def test_run_request_carries_spec_settings_and_tags() -> None:
    spec = InstanceSpec(
        type="c5.metal",
        image="ami-123",
        volume_size_gb=250,
        tags={"team": "netlabs", "Name": "custom", "lab.neuroglia.io/uid": "spoofed"},
    )
    settings = Ec2Settings(
        subnet_id="subnet-1",
        security_group_ids=("sg-1", "sg-2"),
        key_name="key",
        instance_profile="arn:aws:iam::123456789012:instance-profile/lab",
    )
    request = run_request("uid-1", "worker-1", spec, "ami-123", "/dev/xvda", settings, "emea")
    assert request["InstanceType"] == "c5.metal"
    assert request["ClientToken"] == "uid-1"
    assert request["SubnetId"] == "subnet-1"
    assert request["SecurityGroupIds"] == ["sg-1", "sg-2"]
    assert request["KeyName"] == "key"
    assert request["IamInstanceProfile"] == {"Arn": settings.instance_profile}
    mapping = request["BlockDeviceMappings"][0]
    assert mapping["DeviceName"] == "/dev/xvda"
    assert mapping["Ebs"] == {"VolumeSize": 250, "VolumeType": "gp3", "DeleteOnTermination": True}
    tags = {t["Key"]: t["Value"] for t in request["TagSpecifications"][0]["Tags"]}
    assert tags == {
        "Name": "custom",
        "team": "netlabs",
        "lab.neuroglia.io/uid": "uid-1",
        "lab.neuroglia.io/name": "worker-1",
        "lab.neuroglia.io/namespace": "emea",
    }


def test_run_request_leaves_out_what_is_not_configured() -> None:
    request = run_request("u", "w", InstanceSpec(), "ami-1", "/dev/sda1", Ec2Settings())
    for key in ("SubnetId", "SecurityGroupIds", "KeyName", "IamInstanceProfile"):
        assert key not in request
    profile = run_request(
        "u", "w", InstanceSpec(), "ami-1", "/dev/sda1", Ec2Settings(instance_profile="lab")
    )
    assert profile["IamInstanceProfile"] == {"Name": "lab"}


def test_settings_parse_and_name_the_bad_variable() -> None:
    parsed = settings_from(
        {
            "AWS_REGION": "eu-west-1",
            "LAB_AWS_SECURITY_GROUP_IDS": " sg-1, ,sg-2 ",
            "LAB_AWS_MAX_ATTEMPTS": "5",
            "LAB_AWS_RETRY_MODE": "adaptive",
        }
    )
    assert parsed.region == "eu-west-1"
    assert parsed.security_group_ids == ("sg-1", "sg-2")
    assert parsed.max_attempts == 5 and parsed.retry_mode == "adaptive"
    with pytest.raises(ValueError, match="LAB_AWS_BOOT_ESTIMATE='soon'"):
        settings_from({"LAB_AWS_BOOT_ESTIMATE": "soon"})
    with pytest.raises(ValueError, match="LAB_AWS_RETRY_MODE='legacy'"):
        settings_from({"LAB_AWS_RETRY_MODE": "legacy"})


def test_the_plugin_declares_every_cml_setting_and_the_password_as_secret() -> None:
    declared = {s.env: s for s in PLUGIN.settings}
    assert set(cml.ENV_NAMES) <= set(declared)
    assert declared["LAB_CML_PASSWORD"].secret
    assert "LAB_SECRETS_DIR" in declared
    assert not [s for s in PLUGIN.settings if s.secret and s.env != "LAB_CML_PASSWORD"]

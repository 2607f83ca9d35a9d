"""The EC2 error table: which botocore failures are retried and which fail the worker."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from controller.labworker.aws.errors import classify, is_transient
from controller.labworker.provider import ProviderError, ProviderFatalError


def client_error(code: str, status: int, message: str = "AWS says no") -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "RunInstances")


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("Throttling", 400),
        ("ThrottlingException", 400),
        ("RequestLimitExceeded", 503),
        ("InsufficientInstanceCapacity", 500),
        ("InternalError", 500),
        ("Unavailable", 503),
        ("ServiceUnavailable", 503),
        ("SomethingNewOnTheServerSide", 500),
        ("SomethingNew", 429),
        ("AuthFailure", 401),
        ("RequestExpired", 400),
        ("InvalidInstanceID.NotFound", 400),
    ],
)
def test_transient_codes_become_provider_errors(code: str, status: int) -> None:
    error = classify("RunInstances", client_error(code, status))
    assert type(error) is ProviderError
    assert f"EC2 RunInstances failed: {code}: AWS says no" == str(error)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("InvalidAMIID.NotFound", 400),
        ("InvalidAMIID.Malformed", 400),
        ("InvalidAMIID.SomethingElse", 400),
        ("InvalidParameterValue", 400),
        ("UnauthorizedOperation", 403),
        ("InstanceLimitExceeded", 400),
        ("VcpuLimitExceeded", 400),
        ("Unsupported", 400),
        ("InvalidSubnetID.NotFound", 400),
        ("IdempotentParameterMismatch", 400),
        ("AnyOtherClientError", 400),
        # Named fatal codes stay fatal even if a proxy answers them with a 5xx.
        ("InvalidAMIID.NotFound", 500),
    ],
)
def test_request_errors_become_fatal_with_awss_message(code: str, status: int) -> None:
    error = classify("RunInstances", client_error(code, status, f"message of {code}"))
    assert type(error) is ProviderFatalError
    assert str(error) == f"EC2 RunInstances failed: {code}: message of {code}"


@pytest.mark.parametrize(
    "exc",
    [
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"),
        ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
        ResponseParserError("invalid XML received"),
        NoCredentialsError(),
    ],
)
def test_transport_and_credential_failures_are_transient(exc: Exception) -> None:
    error = classify("DescribeInstances", exc)
    assert type(error) is ProviderError
    assert str(error).startswith("EC2 DescribeInstances")


def test_a_request_botocore_refuses_to_send_is_fatal() -> None:
    error = classify("RunInstances", ParamValidationError(report="MinCount must be an int"))
    assert type(error) is ProviderFatalError
    assert "MinCount must be an int" in str(error)


def test_no_status_is_treated_as_the_network() -> None:
    assert is_transient("Mystery", None)
    assert not is_transient("Mystery", 400)
    assert is_transient("Mystery", 502)


def test_messages_hold_no_credentials() -> None:
    error = classify("RunInstances", NoCredentialsError())
    assert "AKIA" not in str(error)
    assert "standard chain" in str(error)

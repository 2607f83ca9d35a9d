"""Which EC2 failures are worth retrying: botocore errors → ProviderError or ProviderFatalError.

The table is data, not control flow, so that it can be read (and unit tested) in one place.
A transient error leaves the worker's status alone and the manager retries it with backoff,
within the phase's time budget; a fatal one sends the worker to Failed with AWS's own
message, where it waits for a spec change. botocore has already retried transient errors
itself (`Config(retries=...)`) before one reaches this table, so a ProviderError here means
"still failing after the bounded retries": back off longer, don't hammer.

Rule of thumb, for codes not named below: HTTP 5xx and transport failures are EC2's side
and retried; HTTP 4xx are the request's own fault (Invalid*, Missing*, *LimitExceeded,
Unsupported*) and sending the same request again returns the same answer, so they are
fatal. Two families of 4xx are exceptions, because waiting does fix them: throttling and
capacity, and credentials that the standard chain rotates (an expired IRSA or instance-role
token is replaced on the next refresh). A missing IAM permission (`UnauthorizedOperation`)
is fatal: someone must change the policy.

Messages carry the EC2 operation, AWS's error code and AWS's message. botocore never puts
credentials into those, and nothing else is added.
"""

from __future__ import annotations

from typing import Final

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)
from botocore.parsers import ResponseParserError

from controller.labworker.provider import ProviderError, ProviderFatalError

TRANSIENT_CODES: Final = frozenset(
    {
        # throttling (botocore's own retry mode retries these first)
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "SlowDown",
        # capacity: another AZ or a few minutes later usually works
        "InsufficientInstanceCapacity",
        "InsufficientHostCapacity",
        "InsufficientCapacity",
        # EC2's side
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "Unavailable",
        # credentials the standard chain refreshes by itself, and clock skew
        "AuthFailure",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "RequestTimeTooSkewed",
        # eventual consistency: an instance just launched is not yet visible everywhere
        "InvalidInstanceID.NotFound",
        "IncorrectInstanceState",
    }
)
"""Codes retried with backoff even though some arrive as HTTP 4xx."""

FATAL_CODES: Final = frozenset(
    {
        "InvalidAMIID.NotFound",
        "InvalidAMIID.Malformed",
        "InvalidAMIID.Unavailable",
        "InvalidParameterValue",
        "InvalidParameterCombination",
        "InvalidParameter",
        "MissingParameter",
        "UnauthorizedOperation",
        "InstanceLimitExceeded",
        "VcpuLimitExceeded",
        "MaxSpotInstanceCountExceeded",
        "Unsupported",
        "UnsupportedOperation",
        "InvalidSubnetID.NotFound",
        "InvalidGroup.NotFound",
        "InvalidKeyPair.NotFound",
        "InvalidBlockDeviceMapping",
        "IdempotentParameterMismatch",
        "OptInRequired",
        "PendingVerification",
        "Blocked",
    }
)
"""Named for the reader; any other 4xx code is treated the same way."""


AWS_ERRORS: Final = (ClientError, BotoCoreError, ResponseParserError)
"""What a boto3 call raises besides bugs (ResponseParserError is not a BotoCoreError)."""


def is_transient(code: str, http_status: int | None) -> bool:
    """The decision for one AWS error code and HTTP status, as a pure function."""
    if code in TRANSIENT_CODES:
        return True
    if code in FATAL_CODES or code.startswith("InvalidAMIID."):
        return False
    if http_status is None:
        return True  # no answer to judge by: assume the network
    return http_status >= 500 or http_status == 429


def classify(operation: str, exc: Exception) -> ProviderError | ProviderFatalError:
    """The provider error to raise for `exc`, caught around the EC2 call `operation`."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "Unknown")
        message = str(error.get("Message") or "").strip() or "(no message)"
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        text = f"EC2 {operation} failed: {code}: {message}"
        if is_transient(code, status if isinstance(status, int) else None):
            return ProviderError(text)
        return ProviderFatalError(text)
    if isinstance(exc, ParamValidationError):
        # botocore refused to send it: the request is malformed, whatever we retry.
        return ProviderFatalError(f"EC2 {operation}: invalid request: {exc}")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return ProviderError(
            f"EC2 {operation}: no usable AWS credentials in the standard chain "
            "(environment, shared config/profile, web identity, instance role): "
            f"{type(exc).__name__}"
        )
    if isinstance(exc, BotoCoreError | ResponseParserError):
        # EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError,
        # ConnectionClosedError, ResponseParserError (a proxy's HTML error page), ...
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return ProviderError(f"EC2 {operation}: {type(exc).__name__}: {first_line}")
    return ProviderError(f"EC2 {operation}: unexpected {type(exc).__name__}: {exc}")

"""redact_secrets / redact_text as plain functions."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import pytest

from controller.observability import REDACTED, is_secret_key, redact_secrets, redact_text

SECRET = "hunter2-zz9"


def run(event_dict: dict[str, Any]) -> dict[str, Any]:
    return dict(redact_secrets(None, "info", dict(event_dict)))


@pytest.mark.parametrize(
    "key",
    [
        "password", "ETCD_PASSWORD", "passwd", "client_secret", "token", "license_token",
        "licenseToken", "private_key", "privateKey", "private-key", "Authorization",
        "api_key", "apiKey", "X-Api-Key", "credentials",
    ],
)  # fmt: skip
def test_secret_looking_keys_are_recognised(key: str) -> None:
    assert is_secret_key(key)
    assert run({key: SECRET})[key] == REDACTED


@pytest.mark.parametrize("key", ["event", "user", "name", "phase", "trace_id", "address"])
def test_ordinary_keys_are_kept(key: str) -> None:
    assert not is_secret_key(key)
    assert run({key: "visible"})[key] == "visible"


def test_nested_containers_are_redacted_without_mutating_the_caller() -> None:
    spec = {"host": {"licenseToken": SECRET, "maxConcurrentLabs": 20}}
    result = run({"spec": spec, "items": [{"token": SECRET}, f"password={SECRET}"]})

    assert result["spec"] == {"host": {"licenseToken": REDACTED, "maxConcurrentLabs": 20}}
    assert result["items"] == [{"token": REDACTED}, f"password={REDACTED}"]
    assert spec["host"]["licenseToken"] == SECRET


def test_secret_key_with_non_string_value_is_replaced_whole() -> None:
    assert run({"credentials": {"user": "root", "pw": SECRET}})["credentials"] == REDACTED


@pytest.mark.parametrize(
    "text",
    [
        f"password={SECRET}",
        f"PASSWORD = '{SECRET}'",
        f'{{"password": "{SECRET}", "user": "x"}}',
        f"{{'licenseToken': '{SECRET}'}}",
        f"GET /?token={SECRET}&page=2",
        f"Authorization: Bearer {SECRET}",
        f"sent header authorization=Basic {SECRET}",
        f"using Bearer {SECRET}xyz",
        f"http://root:{SECRET}@etcd:2379/v3",
        f"-----BEGIN PRIVATE KEY-----\nAAAA{SECRET}\n-----END PRIVATE KEY-----",
        f"-----BEGIN EC PRIVATE KEY-----\nAAAA{SECRET} (truncated",
    ],
)
def test_embedded_secrets_in_text_are_masked(text: str) -> None:
    masked = redact_text(text)
    assert SECRET not in masked
    assert redact_text(masked) == masked  # idempotent: re-redacting changes nothing


def test_text_outside_the_secret_survives() -> None:
    masked = redact_text(f"GET /?token={SECRET}&page=2 from 10.0.0.1")
    assert masked == f"GET /?token={REDACTED}&page=2 from 10.0.0.1"
    pem = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----"
    assert redact_text(f"key: {pem} loaded") == "key: [REDACTED PRIVATE KEY] loaded"


def test_public_certificates_are_not_masked() -> None:
    cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    assert redact_text(cert) == cert


def test_objects_whose_text_leaks_are_replaced_by_masked_text() -> None:
    error = ValueError(f"bad password={SECRET}")
    harmless = ValueError("not found")
    result = run({"error": error, "other": harmless, "count": 3})
    assert result["error"] == f"bad password={REDACTED}"
    assert result["other"] is harmless
    assert result["count"] == 3


def test_namedtuples_and_tuples_are_handled() -> None:
    Pair = namedtuple("Pair", "user secret_ref")
    result = run({"pair": Pair("root", f"token={SECRET}"), "tup": ("a", f"token={SECRET}")})
    assert result["pair"] == ["root", f"token={REDACTED}"]
    assert result["tup"] == ("a", f"token={REDACTED}")


def test_exc_info_is_left_for_the_exception_formatter() -> None:
    exc_info = (ValueError, ValueError(f"password={SECRET}"), None)
    assert run({"exc_info": exc_info})["exc_info"] is exc_info

"""CmlSettings: LAB_CML_* parsing, the URL template, the password file, the insecure opt-in."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from controller.labworker.aws.cml import CmlClient, CmlSettings
from controller.labworker.provider import ProviderError

PASSWORD = "s3cr3t-Pa55"


def env(**values: str) -> dict[str, str]:
    base = {"LAB_CML_PASSWORD": PASSWORD}
    base.update({f"LAB_CML_{k.upper()}": v for k, v in values.items()})
    return base


def test_defaults_need_only_a_password() -> None:
    settings = CmlSettings.from_env(env())
    assert settings.url_template == "https://{address}"
    assert settings.username == "admin"
    assert settings.current_password() == PASSWORD
    assert (settings.ca_cert, settings.insecure, settings.timeout) == (None, False, 10.0)
    assert settings.base_url("10.0.3.7") == "https://10.0.3.7/api/v0"


@pytest.mark.parametrize(
    ("template", "address", "expected"),
    [
        ("https://{address}", "10.0.3.7", "https://10.0.3.7/api/v0"),
        (
            "https://{address}:8443/",
            "ip-10-0-3-7.ec2.internal",
            "https://ip-10-0-3-7.ec2.internal:8443/api/v0",
        ),
        (
            "http://127.0.0.1:8080/hosts/{address}",
            "10.0.3.7",
            "http://127.0.0.1:8080/hosts/10.0.3.7/api/v0",
        ),
    ],
)
def test_url_template_places_the_address(template: str, address: str, expected: str) -> None:
    assert CmlSettings.from_env(env(url_template=template)).base_url(address) == expected


@pytest.mark.parametrize(
    ("template", "complaint"),
    [
        ("https://cml.example.com", "must contain {address}"),
        ("https://{address}/{uid}", "unknown placeholder"),
        ("ftp://{address}", "http:// or https://"),
        ("https://{address", "not a valid template"),
        ("{address}", "http:// or https://"),
    ],
)
def test_bad_url_template_is_named(template: str, complaint: str) -> None:
    with pytest.raises(ValueError, match="LAB_CML_URL_TEMPLATE") as err:
        CmlSettings.from_env(env(url_template=template))
    assert complaint in str(err.value)


def test_password_file_is_read_at_start_and_again_at_use(tmp_path: Path) -> None:
    secret = tmp_path / "cml-password"
    secret.write_text("first-password\n")
    settings = CmlSettings.from_env({"LAB_CML_PASSWORD_FILE": str(secret)})
    assert settings.current_password() == "first-password"
    secret.write_text("rotated-password\n")
    assert settings.current_password() == "rotated-password"
    secret.unlink()
    with pytest.raises(ProviderError, match="cannot read the CML password file"):
        settings.current_password()


@pytest.mark.parametrize("content", [None, "", "\n"])
def test_unreadable_or_empty_password_file_fails_at_start(
    tmp_path: Path, content: str | None
) -> None:
    secret = tmp_path / "cml-password"
    if content is not None:
        secret.write_text(content)
    with pytest.raises(ValueError, match="LAB_CML_PASSWORD_FILE"):
        CmlSettings.from_env({"LAB_CML_PASSWORD_FILE": str(secret)})


def test_exactly_one_password_source(tmp_path: Path) -> None:
    secret = tmp_path / "cml-password"
    secret.write_text("from-file")
    with pytest.raises(ValueError, match="LAB_CML_PASSWORD_FILE") as err:
        CmlSettings.from_env({})
    assert "must be set" in str(err.value)
    with pytest.raises(ValueError, match="not both") as err:
        CmlSettings.from_env(env(password_file=str(secret)))
    assert PASSWORD not in str(err.value)


def test_repr_hides_the_password() -> None:
    settings = CmlSettings.from_env(env())
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in str(settings)


@pytest.mark.parametrize(
    ("text", "value"), [("true", True), ("TRUE", True), ("1", True), ("false", False)]
)
def test_insecure_parses_booleans(text: str, value: bool) -> None:
    assert CmlSettings.from_env(env(insecure=text)).insecure is value


def test_bad_values_name_their_variable(tmp_path: Path) -> None:
    for name, value in (
        ("insecure", "maybe"),
        ("timeout", "soon"),
        ("timeout", "0"),
        ("boot_poll", "-1"),
    ):
        with pytest.raises(ValueError, match=f"LAB_CML_{name.upper()}"):
            CmlSettings.from_env(env(**{name: value}))
    with pytest.raises(ValueError, match="LAB_CML_CA_CERT"):
        CmlSettings.from_env(env(ca_cert=str(tmp_path / "missing.pem")))
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate")
    with pytest.raises(ValueError, match="not both"):
        CmlSettings.from_env(env(ca_cert=str(ca), insecure="true"))


def test_timeout_and_boot_poll_are_seconds() -> None:
    settings = CmlSettings.from_env(env(timeout="2.5", boot_poll="0.5"))
    assert (settings.timeout, settings.boot_poll) == (2.5, 0.5)


def test_a_file_that_is_not_a_ca_bundle_is_refused_at_start(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate")
    settings = CmlSettings.from_env(env(ca_cert=str(ca)))
    with pytest.raises(ValueError, match="LAB_CML_CA_CERT"):
        CmlClient(settings)


def test_insecure_is_an_explicit_opt_in_that_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="controller.labworker.aws.cml"):
        CmlClient(CmlSettings.from_env(env())).close()
        assert not caplog.records
        CmlClient(CmlSettings.from_env(env(insecure="true"))).close()
    [record] = caplog.records
    assert "NOT verified" in record.getMessage()
    assert "LAB_CML_INSECURE" in record.getMessage()
    assert PASSWORD not in caplog.text


def test_plain_http_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="controller.labworker.aws.cml"):
        CmlClient(CmlSettings.from_env(env(url_template="http://{address}"))).close()
    [record] = caplog.records
    assert "plain http" in record.getMessage()

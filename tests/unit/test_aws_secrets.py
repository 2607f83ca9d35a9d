"""License secrets under LAB_SECRETS_DIR: the two mount layouts, refusals, absence."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.labworker.aws.secrets import read_license_token
from controller.labworker.provider import LicenseSecretMissing, ProviderFatalError


def test_a_key_file_directly_under_the_directory(tmp_path: Path) -> None:
    (tmp_path / "ccna-license").write_text("TOKEN-ONE\n")
    assert read_license_token(tmp_path, "ccna-license") == "TOKEN-ONE"


def test_a_secret_mounted_as_its_own_directory(tmp_path: Path) -> None:
    # What kubelet writes for a Secret volume: the key is a symlink into a ..data dir.
    mount = tmp_path / "ccna-license"
    data = mount / "..2026_12_01_12_00_00.000"
    data.mkdir(parents=True)
    (data / "token").write_text("TOKEN-TWO")
    (mount / "..data").symlink_to(data.name)
    (mount / "token").symlink_to("..data/token")
    assert read_license_token(tmp_path, "ccna-license") == "TOKEN-TWO"


def test_the_file_is_read_at_each_use(tmp_path: Path) -> None:
    secret = tmp_path / "lic"
    secret.write_text("old")
    assert read_license_token(tmp_path, "lic") == "old"
    secret.write_text("rotated")
    assert read_license_token(tmp_path, "lic") == "rotated"


@pytest.mark.parametrize("ref", ["../etc/passwd", "a/b", "..", ".", "..data", "x/../y", "/abs"])
def test_refs_that_leave_the_directory_are_refused(tmp_path: Path, ref: str) -> None:
    with pytest.raises(ProviderFatalError, match="not a plain secret name"):
        read_license_token(tmp_path, ref)


def test_missing_secret_names_both_places_looked_at(tmp_path: Path) -> None:
    with pytest.raises(LicenseSecretMissing) as caught:
        read_license_token(tmp_path, "nope")
    assert str(tmp_path / "nope") in str(caught.value)
    assert str(tmp_path / "nope" / "token") in str(caught.value)


def test_a_directory_without_the_token_key_is_missing(tmp_path: Path) -> None:
    (tmp_path / "lic").mkdir()
    (tmp_path / "lic" / "other-key").write_text("x")
    with pytest.raises(LicenseSecretMissing, match="not found"):
        read_license_token(tmp_path, "lic")


def test_an_empty_secret_is_missing(tmp_path: Path) -> None:
    (tmp_path / "lic").write_text("  \n")
    with pytest.raises(LicenseSecretMissing, match="is empty"):
        read_license_token(tmp_path, "lic")


def test_no_directory_or_no_ref_is_missing(tmp_path: Path) -> None:
    with pytest.raises(LicenseSecretMissing, match="LAB_SECRETS_DIR is not set"):
        read_license_token(None, "lic")
    with pytest.raises(LicenseSecretMissing, match="licenseSecretRef is not set"):
        read_license_token(tmp_path, None)


def test_errors_never_contain_the_token(tmp_path: Path) -> None:
    (tmp_path / "lic").write_bytes(b"\xff\xfeSECRET")
    with pytest.raises(LicenseSecretMissing) as caught:
        read_license_token(tmp_path, "lic")
    assert "SECRET" not in str(caught.value)

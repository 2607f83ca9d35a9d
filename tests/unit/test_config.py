"""Settings: env and flags agree, validation names the variable, secrets stay hidden."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from controller import config
from controller.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_a_documented_env_var() -> None:
    documented = {
        line.strip()
        for line in (ROOT / "deployment" / "env-vars.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    ours = set(config.env_names())
    assert ours == {name for name in documented if not name.startswith("OTEL_")}
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in ours if name not in readme]
    assert not missing, f"README does not mention {missing}"


def test_flag_beats_env_beats_default() -> None:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    env = {"CONTROLLER_WORKERS": "3", "ETCD_ENDPOINTS": "a:1,b:2"}
    s = config.load(parser.parse_args(["--controller-workers", "5"]), env)
    assert s.controller_workers == 5
    assert s.etcd_endpoints == ["a:1", "b:2"]
    assert config.load(None, {}).controller_workers == 8
    assert config.load(None, {"ETCD_HOST": "etcd", "ETCD_PORT": "2479"}).etcd_endpoints == [
        "etcd:2479"
    ]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CONTROLLER_WORKERS": "0"}, "CONTROLLER_WORKERS"),
        ({"METRICS_PORT": "99999"}, "METRICS_PORT"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"ETCD_CERT": "/c.pem"}, "ETCD_KEY"),
        ({"ETCD_USERNAME": "u"}, "ETCD_PASSWORD"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        config.load(None, env)


def test_secrets_never_show_in_repr_or_public_view() -> None:
    env = {"ETCD_USERNAME": "u", "ETCD_PASSWORD": "pa55-word", "ETCD_CERT": "/c", "ETCD_KEY": "/k"}
    s = config.load(None, env)
    assert "pa55-word" not in repr(s)
    assert "etcd_password" not in s.public()


def test_run_help_lists_every_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    out = capsys.readouterr().out
    for name in config.env_names():
        assert name in out

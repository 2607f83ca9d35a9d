"""Settings: env and flags agree, validation names the variable, secrets stay hidden."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from controller import config
from controller.cli import build_parser
from controller.storage import EndpointAddress

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_a_documented_env_var() -> None:
    documented = {
        line.strip()
        for line in (ROOT / "deployment" / "env-vars.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    ours = set(config.env_names())
    assert ours <= documented, f"not in deployment/env-vars.txt: {sorted(ours - documented)}"
    # Beyond our own settings, the manifests may set only the standard variables that the
    # OpenTelemetry SDK and the AWS SDK's credential chain read themselves.
    foreign = documented - ours
    assert all(name.startswith(("OTEL_", "AWS_")) for name in foreign), sorted(foreign)
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in ours if name not in readme]
    assert not missing, f"README does not mention {missing}"


def test_flag_beats_env_beats_default() -> None:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    env = {"CONTROLLER_WORKERS": "3", "ETCD_ENDPOINTS": "a:1,b:2"}
    s = config.load(parser.parse_args(["--controller-workers", "5"]), env)
    assert s.reconcile.workers == 5
    assert s.etcd.endpoints == (EndpointAddress("a", 1, False), EndpointAddress("b", 2, False))
    assert config.load(None, {}).reconcile.workers == 8
    by_host = config.load(None, {"ETCD_HOST": "etcd", "ETCD_PORT": "2479"})
    assert by_host.etcd.endpoints == (EndpointAddress("etcd", 2479, False),)
    ipv6 = config.load(None, {"ETCD_HOST": "::1"})
    assert ipv6.etcd.endpoints == (EndpointAddress("::1", 2379, False),)


def test_the_scheme_of_an_endpoint_survives_loading() -> None:
    """https:// must reach the client as TLS, not be stripped to a plaintext host:port."""
    s = config.load(None, {"ETCD_ENDPOINTS": "https://e1:2379,https://[::1]:2380"})
    assert s.etcd.endpoints == (
        EndpointAddress("e1", 2379, True),
        EndpointAddress("::1", 2380, True),
    )
    client = config.etcd_client(s)
    assert [e.url for e in client._targets] == ["https://e1:2379", "https://[::1]:2380"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CONTROLLER_WORKERS": "0"}, "CONTROLLER_WORKERS"),
        ({"METRICS_PORT": "99999"}, "METRICS_PORT"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL / --log-level = 'verbose': must be one of"),
        ({"HISTORY_RETENTION": "forever"}, "HISTORY_RETENTION.*expected a duration"),
        ({"RESYNC_PERIOD": "-5m"}, "RESYNC_PERIOD.*must not be negative"),
        ({"WATCH_IDLE_TIMEOUT": "0s"}, "WATCH_IDLE_TIMEOUT.*greater than 0"),
        ({"EVENT_TTL": "1.5s"}, "EVENT_TTL.*whole number of seconds"),
        ({"SHARD_COUNT": "many"}, "SHARD_COUNT.*whole number"),
        ({"LEADER_ELECT": "maybe"}, "LEADER_ELECT.*true or false"),
        ({"ETCD_PORT": "http"}, "ETCD_PORT.*TCP port"),
        ({"ETCD_CERT": "/c.pem"}, "ETCD_KEY"),
        ({"ETCD_USERNAME": "u"}, "ETCD_PASSWORD"),
        ({"ETCD_ENDPOINTS": "https://a:1,http://b:2"}, "ETCD_ENDPOINTS"),
        ({"ETCD_ENDPOINTS": "http://a:1", "ETCD_CA_CERT": "/ca.pem"}, "ETCD_ENDPOINTS"),
        ({"ETCD_ENDPOINTS": "::1:2379"}, "ETCD_ENDPOINTS"),
        ({"ETCD_CA_CERT": "/nonexistent/ca.pem"}, "ETCD_CA_CERT.*/nonexistent/ca.pem"),
        ({"ETCD_PASSWORD_FILE": "/nonexistent/pw"}, "ETCD_PASSWORD_FILE.*/nonexistent/pw"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        config.load(None, env)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("250ms", 0.25), ("90", 90)],
)
def test_durations_take_units_or_plain_seconds(text: str, seconds: float) -> None:
    loaded = config.load(None, {"HISTORY_RETENTION": text, "RESYNC_PERIOD": text})
    assert loaded.history.retention == loaded.reconcile.resync_period == seconds
    assert config.load(None, {"EVENT_TTL": "1h"}).events.ttl == 3600


def test_each_setting_is_declared_once_in_a_group() -> None:
    """The flag, the variable and the attribute come from one declaration."""
    s = config.load(None, {"LEADER_ELECT": "true", "SHARD_COUNT": "16", "LOG_LEVEL": "debug"})
    assert (s.leader.elect, s.sharding.count, s.log.level) == (True, 16, "DEBUG")
    envs = [d.env for d in config.SETTINGS]
    assert len(envs) == len(set(envs))
    for declared in config.SETTINGS:
        group = getattr(s, declared.group)
        assert hasattr(group, declared.name), declared.path
        assert declared.flag == "--" + declared.env.lower().replace("_", "-")
    assert {d.group for d in config.SETTINGS} == set(s.public())


def test_secrets_never_show_in_repr_or_public_view() -> None:
    env = {"ETCD_USERNAME": "u", "ETCD_PASSWORD": "pa55-word"}
    s = config.load(None, env)
    assert "pa55-word" not in repr(s)
    assert "password" not in s.public()["etcd"]


def test_password_file_is_read_at_load(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("pa55-word\n")
    s = config.load(None, {"ETCD_USERNAME": "u", "ETCD_PASSWORD_FILE": str(secret)})
    assert s.etcd.password == "pa55-word"  # the trailing newline is not part of it
    assert "pa55-word" not in repr(s)
    assert "pa55-word" not in str(s.public())


@pytest.mark.parametrize(
    ("content", "extra_env", "message"),
    [
        (b"pw\n", {"ETCD_PASSWORD": "pw"}, "both set"),
        (b"\n", {}, "empty"),
        (b"\xffpw", {}, "not UTF-8"),
        (None, {}, "Is a directory"),
    ],
)
def test_unusable_password_file_names_the_file(
    tmp_path: Path, content: bytes | None, extra_env: dict[str, str], message: str
) -> None:
    path = tmp_path / "password"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    env = {"ETCD_USERNAME": "u", "ETCD_PASSWORD_FILE": str(path), **extra_env}
    with pytest.raises(config.ConfigError, match=message) as info:
        config.load(None, env)
    assert "ETCD_PASSWORD_FILE" in str(info.value)
    assert "pw" not in str(info.value).replace("password", "")


def test_help_steers_the_password_away_from_the_command_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ETCD_PASSWORD", "pa55-word")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "pa55-word" not in out  # defaults shown in --help never come from the environment
    assert "visible in ps" in out
    assert "ETCD_PASSWORD_FILE" in out
    with pytest.raises(SystemExit):
        build_parser().parse_args(["get", "--help"])
    assert "visible in ps" in " ".join(capsys.readouterr().out.split())


def test_run_help_lists_every_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    out = capsys.readouterr().out
    for name in config.env_names():
        assert name in out

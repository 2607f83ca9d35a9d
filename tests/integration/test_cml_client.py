"""CmlClient against our CML API test server (tests/cmlserver.py) over real HTTP(S)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.labworker.aws.cml import CmlClient, CmlSettings
from controller.labworker.provider import HostHealth, ProviderError, ProviderFatalError
from tests.cmlserver import (
    DEFAULT_PASSWORD,
    DEFAULT_VALID_TOKEN,
    DEFAULT_VERSION,
    CmlServer,
    self_signed_cert,
)
from tests.etcdproc import wait_until

LOGGER = "controller.labworker.aws.cml"
HOST = "10.0.7.21"
"""An address as EC2 would hand it out; the server serves it as a path, nothing dials it."""


@pytest.fixture
def server() -> Iterator[CmlServer]:
    with CmlServer() as srv:
        yield srv


def client_for(server: CmlServer, **overrides: object) -> CmlClient:
    settings: dict[str, object] = {
        "url_template": server.url_template,
        "password": DEFAULT_PASSWORD,
        "boot_poll": 0.5,
    }
    settings.update(overrides)
    return CmlClient(CmlSettings(**settings))  # type: ignore[arg-type]


@pytest.fixture
def client(server: CmlServer) -> Iterator[CmlClient]:
    with client_for(server) as c:
        yield c


def test_healthy_licensed_host_reports_version_license_and_running_labs(
    server: CmlServer, client: CmlClient
) -> None:
    host = server.host(HOST)
    host.license()
    host.set_labs(running=2, stopped=1, defined=1)
    assert client.health(HOST) == HostHealth(
        ready=True, version=DEFAULT_VERSION, licensed=True, hosted_labs=2
    )
    assert server.calls(HOST)["POST /api/v0/authenticate"] == 1


def test_settings_from_env_with_a_password_file(server: CmlServer, tmp_path: Path) -> None:
    secret = tmp_path / "cml-password"
    secret.write_text(DEFAULT_PASSWORD + "\n")
    settings = CmlSettings.from_env(
        {"LAB_CML_URL_TEMPLATE": server.url_template, "LAB_CML_PASSWORD_FILE": str(secret)}
    )
    with CmlClient(settings) as c:
        assert c.health(HOST).ready


def test_booting_host_is_not_ready_without_errors_then_becomes_ready(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with CmlServer(listening=False) as srv, client_for(srv) as c:
        caplog.clear()  # the plain-http warning of the client's start
        with caplog.at_level(logging.DEBUG, logger=LOGGER):
            for _ in range(3):  # connection refused: the instance runs, nginx is not up yet
                assert c.health(HOST) == HostHealth(
                    ready=False, version=None, licensed=False, hosted_labs=0, ready_in=0.5
                )
        assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
        assert "Connection refused" in caplog.text

        srv.start_listening()  # same port
        srv.host(HOST).gateway_error = True  # nginx up, controller services not yet
        assert c.health(HOST).ready is False
        srv.host(HOST).gateway_error = False
        srv.host(HOST).ready = False  # API up, no compute ready to run nodes
        health = c.health(HOST)
        assert (health.ready, health.version, health.ready_in) == (False, DEFAULT_VERSION, 0.5)
        srv.host(HOST).ready = True
        assert c.health(HOST).ready is True


def test_host_that_stops_listening_is_not_ready_again(server: CmlServer, client: CmlClient) -> None:
    assert client.health(HOST).ready  # a pooled keep-alive connection now exists
    server.stop_listening()
    assert client.health(HOST).ready is False
    server.start_listening()
    assert client.health(HOST).ready is True


def test_expired_token_is_renewed_once_and_the_call_succeeds(
    server: CmlServer, client: CmlClient
) -> None:
    assert client.health(HOST).ready
    server.expire_tokens()
    assert client.health(HOST).ready
    calls = server.calls(HOST)
    assert calls["POST /api/v0/authenticate"] == 2
    assert calls["GET /api/v0/licensing"] == 3  # the first 401 on the old token, then 2 OK


def test_wrong_password_is_fatal_and_never_shows_the_password(server: CmlServer) -> None:
    wrong = "not-the-Password-42"
    with client_for(server, password=wrong) as c, pytest.raises(ProviderFatalError) as err:
        c.health(HOST)
    message = str(err.value)
    assert HOST in message and "'admin'" in message and "403" in message
    assert wrong not in message and DEFAULT_PASSWORD not in message
    assert "\n" not in message
    assert server.calls(HOST)["POST /api/v0/authenticate"] == 1


def test_credentials_that_stop_working_are_fatal_after_one_new_login(
    server: CmlServer, client: CmlClient
) -> None:
    assert client.health(HOST).ready
    server.expire_tokens()
    server.password = "changed-on-the-host"
    with pytest.raises(ProviderFatalError, match="rejected the credentials of user 'admin'"):
        client.health(HOST)
    assert server.calls(HOST)["POST /api/v0/authenticate"] == 2


def test_invalid_license_token_is_refused_with_cmls_message_masked(
    server: CmlServer, client: CmlClient, caplog: pytest.LogCaptureFixture
) -> None:
    bad = "EXPIRED-TOKEN-7777"
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert client.register_license(HOST, bad) is False
        assert client.register_license(HOST, bad) is False  # same token: not sent again
    assert "is not valid" in caplog.text
    assert bad not in caplog.text
    assert server.host(HOST).registrations == [bad]
    assert client.health(HOST).licensed is False

    assert client.register_license(HOST, DEFAULT_VALID_TOKEN) is True  # a new token is tried
    assert server.host(HOST).registrations == [bad, DEFAULT_VALID_TOKEN]
    assert client.health(HOST).licensed is True
    assert client.register_license(HOST, DEFAULT_VALID_TOKEN) is True  # already: no POST
    assert len(server.host(HOST).registrations) == 2


def test_malformed_license_token_is_refused_by_cml(
    server: CmlServer, client: CmlClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert client.register_license(HOST, "has spaces in it") is False
        assert client.register_license(HOST, "has spaces in it") is False
    assert "refused the license token (400)" in caplog.text
    assert "already refused" in caplog.text
    assert "has spaces in it" not in caplog.text
    assert server.calls(HOST)["POST /api/v0/licensing/registration"] == 1


def test_registration_in_progress_is_not_yet_licensed(server: CmlServer, client: CmlClient) -> None:
    server.host(HOST).registration_delay = 0.3
    assert client.register_license(HOST, DEFAULT_VALID_TOKEN) is False
    assert client.register_license(HOST, DEFAULT_VALID_TOKEN) is False  # still in progress
    assert server.host(HOST).registrations == [DEFAULT_VALID_TOKEN]
    wait_until(lambda: client.health(HOST).licensed, timeout=10, what="registration to complete")


def test_other_failures_are_transient_one_line_errors(server: CmlServer, client: CmlClient) -> None:
    server.host(HOST).errors["GET /api/v0/labs"] = 500
    with pytest.raises(ProviderError) as err:
        client.health(HOST)
    assert not isinstance(err.value, ProviderFatalError)
    assert str(err.value) == (
        f"CML at {HOST}: GET /labs answered 500: Injected failure of GET /api/v0/labs (test lever)"
    )
    server.host(HOST).errors.clear()
    assert client.health(HOST).ready


def test_many_threads_share_one_client_and_log_in_once_per_host(server: CmlServer) -> None:
    hosts = [f"10.0.9.{i}" for i in range(20)]
    for i, address in enumerate(hosts):
        server.host(address).set_labs(running=i % 3)
    results: dict[str, list[int]] = {address: [] for address in hosts}
    errors: list[BaseException] = []

    def check(c: CmlClient, worker: int) -> None:
        try:
            for round_ in range(5):
                address = hosts[(worker + round_) % len(hosts)]
                results[address].append(c.health(address).hosted_labs)
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    with client_for(server) as c:
        threads = [threading.Thread(target=check, args=(c, w)) for w in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    for i, address in enumerate(hosts):
        assert results[address] and set(results[address]) == {i % 3}
        assert server.calls(address)["POST /api/v0/authenticate"] == 1


# -- TLS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cml_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path_factory.mktemp("cml-tls"))


@pytest.fixture
def tls_server(cml_cert: tuple[Path, Path]) -> Iterator[CmlServer]:
    with CmlServer(tls=cml_cert) as srv:
        yield srv


def test_tls_is_verified_with_the_ca_bundle(
    tls_server: CmlServer, cml_cert: tuple[Path, Path]
) -> None:
    assert tls_server.url_template.startswith("https://")
    with client_for(tls_server, ca_cert=str(cml_cert[0])) as c:
        assert c.health(HOST).ready


def test_self_signed_certificate_without_the_ca_is_a_clear_error(tls_server: CmlServer) -> None:
    with client_for(tls_server) as c, pytest.raises(ProviderError) as err:
        c.health(HOST)
    message = str(err.value)
    assert not isinstance(err.value, ProviderFatalError)  # a controller setting: fix, restart
    assert "certificate verify failed" in message
    assert "LAB_CML_CA_CERT" in message and HOST in message
    assert tls_server.calls(HOST) == {}  # nothing was sent over the unverified connection


def test_insecure_works_against_self_signed_and_warns(
    tls_server: CmlServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        c = client_for(tls_server, insecure=True)
    with c:
        assert c.health(HOST).ready
    assert "NOT verified" in caplog.text

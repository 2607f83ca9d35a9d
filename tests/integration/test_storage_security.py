"""TLS (verified, mutual) and username/password auth with a role limited to the prefix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.storage import (
    AuthenticationFailed,
    EtcdStorageBackend,
    PermissionDenied,
    Unavailable,
    connect,
)
from tests.etcdproc import EtcdProcess, generate_tls, wait_until

PREFIX = "/lab-resource-manager/lab-workers/"


@pytest.fixture
def tls_etcd(tmp_path: Path) -> Iterator[EtcdProcess]:
    tls = generate_tls(tmp_path / "pki")
    proc = EtcdProcess(data_dir=tmp_path / "etcd", tls=tls).start()
    try:
        yield proc
    finally:
        proc.stop()


def test_mutual_tls_verifies_the_server(
    tls_etcd: EtcdProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = tls_etcd.tls
    assert tls is not None
    # A CA bundle from the environment must not override the CA we were given.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/bundle.pem")
    client = connect(
        [tls_etcd.endpoint],
        ca_cert=str(tls.ca),
        cert=str(tls.client_cert),
        key=str(tls.client_key),
        timeout=3.0,
    )
    client.put("/tls/k", b"v")
    kv = client.get("/tls/k")
    assert kv is not None and kv.value == b"v"

    # Without our CA the server certificate is not trusted: refused, not silently accepted.
    untrusting = connect(
        [tls_etcd.endpoint], cert=str(tls.client_cert), key=str(tls.client_key), timeout=2.0
    )
    with pytest.raises(Unavailable):
        untrusting.get("/tls/k")


def test_user_with_role_limited_to_prefix(etcd: EtcdProcess) -> None:
    ctl = etcd.etcdctl
    ctl("user", "add", "root:rootpw")
    ctl("role", "add", "lab-controller")
    ctl("role", "grant-permission", "lab-controller", "--prefix=true", "readwrite", PREFIX)
    ctl("user", "add", "controller:s3cret-pw")
    ctl("user", "grant-role", "controller", "lab-controller")
    ctl("auth", "enable")

    client = connect([etcd.endpoint], username="controller", password="s3cret-pw", timeout=3.0)
    backend = EtcdStorageBackend(client, PREFIX)
    backend.create("default/w", {"metadata": {"name": "w"}, "spec": {"labTrack": "x"}})
    assert backend.get("default/w") is not None
    with pytest.raises(PermissionDenied):
        client.put("/elsewhere/k", b"v")  # outside the role's prefix: refused

    wrong = connect([etcd.endpoint], username="controller", password="wrong", timeout=3.0)
    with pytest.raises(AuthenticationFailed) as info:
        wrong.get(PREFIX + "default/w")
    assert "wrong" not in str(info.value)  # the password never appears in an error
    assert "s3cret" not in repr(client.credentials)


def test_expired_auth_token_is_renewed_transparently(tmp_path: Path) -> None:
    proc = EtcdProcess(data_dir=tmp_path / "etcd", extra_args=["--auth-token-ttl", "1"]).start()
    try:
        proc.etcdctl("user", "add", "root:rootpw")
        proc.etcdctl("auth", "enable")
        client = connect([proc.endpoint], username="root", password="rootpw", timeout=3.0)
        client.put("/k", b"v")
        endpoint = client._endpoint(0)
        first_token = endpoint._token
        assert first_token

        def renewed() -> bool:
            assert client.get("/k") is not None  # never fails: expiry is handled inside
            return endpoint._token != first_token

        # Simple tokens expire after TTL seconds *unused*: poll slower than the TTL.
        wait_until(renewed, timeout=30, interval=2.5, what="the token to expire and be renewed")
    finally:
        proc.stop()

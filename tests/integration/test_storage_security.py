"""TLS (verified, mutual; https:// never plaintext) and username/password auth with a role
limited to the prefix, the password given in a file."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller import config
from controller.storage import (
    AuthenticationFailed,
    EtcdClient,
    EtcdStorageBackend,
    PermissionDenied,
    TLSFailed,
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
        endpoint = client._pool.endpoint(0)
        first_token = endpoint._token
        assert first_token

        def renewed() -> bool:
            assert client.get("/k") is not None  # never fails: expiry is handled inside
            return endpoint._token != first_token

        # Simple tokens expire after TTL seconds *unused*: poll slower than the TTL.
        wait_until(renewed, timeout=30, interval=2.5, what="the token to expire and be renewed")
    finally:
        proc.stop()


class _RecordingListener:
    """A plaintext TCP server that keeps every byte clients send, and answers like HTTP."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.received: list[bytes] = []
        self._sock.settimeout(0.05)  # closing does not wake a blocked accept(): poll
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2.0)
                try:
                    self.received.append(conn.recv(65536))
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(5)
        self._sock.close()


PASSWORD = "pw-never-in-clear"


@pytest.mark.parametrize("via", ["connect", "settings"])
def test_https_endpoint_without_ca_never_speaks_plaintext(via: str) -> None:
    listener = _RecordingListener()
    try:
        url = f"https://127.0.0.1:{listener.port}"
        client: EtcdClient
        if via == "connect":
            client = connect(url, username="root", password=PASSWORD, timeout=1.0)
        else:
            env = {"ETCD_ENDPOINTS": url, "ETCD_USERNAME": "root", "ETCD_PASSWORD": PASSWORD}
            client = config.etcd_client(config.load(None, {**env, "ETCD_TIMEOUT": "1"}))
        with pytest.raises(Unavailable, match="TLS failed") as info:
            client.get("/k")
        assert PASSWORD not in str(info.value)
    finally:
        listener.close()
    assert listener.received, "the client never connected"
    for data in listener.received:
        assert data[:1] == b"\x16", f"not a TLS ClientHello: {data[:40]!r}"
        assert PASSWORD.encode() not in data


def test_https_endpoint_verifies_against_the_ca_or_the_system_store(
    tls_etcd: EtcdProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = tls_etcd.tls
    assert tls is not None
    pair = {"cert": str(tls.client_cert), "key": str(tls.client_key)}
    https = {"ETCD_ENDPOINTS": tls_etcd.url}  # https://127.0.0.1:port
    mutual = {"ETCD_CA_CERT": str(tls.ca), "ETCD_CERT": pair["cert"], "ETCD_KEY": pair["key"]}
    client = config.etcd_client(config.load(None, {**https, **mutual}))
    client.put("/tls/k", b"v")
    kv = client.get("/tls/k")
    assert kv is not None and kv.value == b"v"

    # No CA given: the system trust store decides, and it does not know our test CA.
    # Retried until the deadline like any failure, but reported as what it is (TLSFailed),
    # not as the timeout of a last attempt that had no time left.
    untrusting = config.etcd_client(config.load(None, {**https, "ETCD_TIMEOUT": "2"}))
    with pytest.raises(TLSFailed, match="certificate verify failed"):
        untrusting.get("/tls/k")

    # Proof that the system store (OpenSSL's, which SSL_CERT_FILE redirects) is the one
    # consulted, not requests' bundled certifi, on every path: the login goes through
    # requests' session, the calls through its pool.
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca))
    trusting = connect(tls_etcd.url, username="root", password="rootpw", timeout=3.0, **pair)
    kv = trusting.get("/tls/k")  # auth is off here: the login is refused, the read is not
    assert kv is not None and kv.value == b"v"


def test_no_credentials_against_an_auth_enabled_etcd_says_which_settings(
    etcd: EtcdProcess,
) -> None:
    etcd.etcdctl("user", "add", "root:rootpw")
    etcd.etcdctl("auth", "enable")
    with pytest.raises(AuthenticationFailed) as info:
        connect(etcd.endpoint, timeout=3.0).get("/k")
    message = str(info.value)
    assert "requires authentication" in message
    assert "ETCD_USERNAME" in message and "ETCD_PASSWORD_FILE" in message
    assert "None" not in message


def test_watch_without_credentials_reports_them_missing_and_backs_off(etcd: EtcdProcess) -> None:
    etcd.etcdctl("user", "add", "root:rootpw")
    etcd.etcdctl("auth", "enable")
    client = connect(etcd.endpoint, timeout=3.0)
    handle = client.watch("/w/", lambda events: None, prefix=True, start_revision=1)
    try:
        wait_until(
            lambda: "requires authentication" in str(handle.last_error),
            timeout=10,
            what="the watch to report that credentials are needed",
        )
        assert isinstance(handle.last_error, AuthenticationFailed)
    finally:
        handle.cancel()


def test_password_file_logs_in_to_an_auth_enabled_etcd(etcd: EtcdProcess, tmp_path: Path) -> None:
    ctl = etcd.etcdctl
    ctl("user", "add", "root:rootpw")
    ctl("role", "add", "lab-controller")
    ctl("role", "grant-permission", "lab-controller", "--prefix=true", "readwrite", PREFIX)
    ctl("user", "add", "controller:s3cret-pw")
    ctl("user", "grant-role", "controller", "lab-controller")
    ctl("auth", "enable")
    password_file = tmp_path / "etcd-password"
    password_file.write_text("s3cret-pw\n")  # as `echo s3cret-pw > file` writes it
    env = {
        "ETCD_ENDPOINTS": etcd.endpoint,
        "ETCD_USERNAME": "controller",
        "ETCD_PASSWORD_FILE": str(password_file),
    }
    settings = config.load(None, env)
    assert "s3cret" not in repr(settings)
    client = config.etcd_client(settings)
    backend = EtcdStorageBackend(client, PREFIX)
    backend.create("default/w", {"metadata": {"name": "w"}, "spec": {"labTrack": "x"}})
    assert backend.get("default/w") is not None
    assert "s3cret" not in repr(client.credentials)


def test_credentials_configured_before_auth_is_enabled(etcd: EtcdProcess) -> None:
    """An operator may roll out the user and password first and enable auth afterwards."""
    client = connect(etcd.endpoint, username="root", password="rootpw", timeout=3.0)
    client.put("/k", b"before")  # auth off: etcd refuses to authenticate; we send none
    etcd.etcdctl("user", "add", "root:rootpw")
    etcd.etcdctl("auth", "enable")
    client.put("/k", b"after")  # auth on: "user name is empty" makes us log in
    kv = client.get("/k")
    assert kv is not None and kv.value == b"after"

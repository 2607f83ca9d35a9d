"""Endpoint addresses (scheme decides TLS), TLS files checked at connect(), and endpoints
that are not etcd (dead port, garbage HTTP) raising only StorageErrors."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from controller.storage import (
    EndpointAddress,
    InvalidSettings,
    StorageError,
    Unavailable,
    connect,
    parse_endpoints,
)
from tests.etcdproc import TLSFiles, free_port, generate_tls

# -- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tls_files", "expected"),
    [
        ("h1:2379,h2:2380", False, [("h1", 2379, False), ("h2", 2380, False)]),
        (" h1 , h2:1 ,", False, [("h1", 2379, False), ("h2", 1, False)]),
        ("h1:2379,h2:2379", True, [("h1", 2379, True), ("h2", 2379, True)]),
        ("https://h:2379/", False, [("h", 2379, True)]),
        ("HTTPS://h", True, [("h", 2379, True)]),
        ("http://h:2379", False, [("h", 2379, False)]),
        ("[::1]:2379", False, [("::1", 2379, False)]),
        ("https://[fe80::1]", False, [("fe80::1", 2379, True)]),
    ],
)
def test_scheme_decides_tls_per_endpoint(
    text: str, tls_files: bool, expected: list[tuple[str, int, bool]]
) -> None:
    assert parse_endpoints(text, tls_files=tls_files) == [EndpointAddress(*e) for e in expected]


def test_addresses_print_as_host_port_and_url() -> None:
    (v6,) = parse_endpoints("https://[::1]:2379")
    assert (v6.netloc, str(v6)) == ("[::1]:2379", "https://[::1]:2379")
    assert "https://[::1]:2379" in repr(v6)


def test_a_list_may_mix_strings_comma_lists_and_parsed_addresses() -> None:
    parsed = EndpointAddress("a", 1, False)
    assert parse_endpoints([parsed, "b:2,c:3"]) == [
        parsed,
        EndpointAddress("b", 2, False),
        EndpointAddress("c", 3, False),
    ]


@pytest.mark.parametrize(
    ("text", "tls_files", "message"),
    [
        ("https://a:1,b:2", False, "mix TLS and plaintext"),
        ("https://a:1,http://b:2", True, "plaintext"),
        ("http://a:1", True, "ETCD_CA_CERT"),
        ("::1:2379", False, "brackets"),
        ("[::1:2379", False, "ipv6"),
        ("unix://a", False, "scheme"),
        ("a:port", False, "not a TCP port"),
        ("a:70000", False, "not a TCP port"),
        ("a:", False, "not a TCP port"),
        ("https://a:1/v3", False, "without a path"),
        (":2379", False, "no host"),
        (" , ", False, "no etcd endpoint"),
    ],
)
def test_unusable_endpoints_are_refused(text: str, tls_files: bool, message: str) -> None:
    with pytest.raises(InvalidSettings, match=message) as info:
        parse_endpoints(text, tls_files=tls_files)
    assert isinstance(info.value, ValueError)  # a bad argument, for callers catching that


def test_credentials_in_an_endpoint_are_refused_without_echoing_them() -> None:
    with pytest.raises(InvalidSettings) as info:
        parse_endpoints("https://root:hunter2@etcd:2379")
    assert "hunter2" not in str(info.value)


def test_connect_splits_a_comma_separated_string() -> None:
    client = connect("h1:2379,h2:2379")
    assert client.endpoints == ["h1:2379", "h2:2379"]


def test_connect_refuses_contradictory_tls_settings(tls_files: TLSFiles) -> None:
    with pytest.raises(InvalidSettings, match="plaintext"):
        connect("http://127.0.0.1:2379", ca_cert=str(tls_files.ca))
    with pytest.raises(InvalidSettings, match="mix"):
        connect("https://127.0.0.1:2379,http://127.0.0.1:2380")


# -- TLS files ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return generate_tls(tmp_path_factory.mktemp("pki"))


def _bad_files(tls: TLSFiles, tmp: Path) -> dict[str, tuple[dict[str, str], str, str]]:
    """case → (connect kwargs, setting the error must name, file it must name)."""
    not_pem = tmp / "not-pem.txt"
    not_pem.write_text("just text\n")
    encrypted = tmp / "encrypted.key"
    subprocess.run(
        ["openssl", "pkey", "-in", str(tls.client_key), "-aes256", "-passout", "pass:x"],
        check=True,
        stdout=encrypted.open("wb"),
    )
    pair = {"cert": str(tls.client_cert), "key": str(tls.client_key)}
    missing = str(tmp / "missing.pem")
    return {
        "missing CA": ({"ca_cert": missing}, "ETCD_CA_CERT", missing),
        "CA is a directory": ({"ca_cert": str(tmp)}, "ETCD_CA_CERT", str(tmp)),
        "CA not PEM": ({"ca_cert": str(not_pem)}, "ETCD_CA_CERT", str(not_pem)),
        "missing cert": ({**pair, "cert": missing}, "ETCD_CERT", missing),
        "cert not PEM": ({**pair, "cert": str(not_pem)}, "ETCD_CERT", str(not_pem)),
        "missing key": ({**pair, "key": missing}, "ETCD_KEY", missing),
        "key not PEM": ({**pair, "key": str(not_pem)}, "ETCD_KEY", str(not_pem)),
        "key encrypted": ({**pair, "key": str(encrypted)}, "ETCD_KEY", str(encrypted)),
        "key of another cert": (
            {**pair, "key": str(tls.server_key)},
            "ETCD_KEY",
            str(tls.server_key),
        ),
        "cert without key": ({"cert": str(tls.client_cert)}, "ETCD_KEY", ""),
    }


CASES = [
    "missing CA",
    "CA is a directory",
    "CA not PEM",
    "missing cert",
    "cert not PEM",
    "missing key",
    "key not PEM",
    "key encrypted",
    "key of another cert",
    "cert without key",
]


@pytest.mark.parametrize("case", CASES)
def test_unusable_tls_file_fails_at_connect_naming_setting_and_file(
    case: str, tls_files: TLSFiles, tmp_path: Path
) -> None:
    kwargs, setting, path = _bad_files(tls_files, tmp_path)[case]
    endpoint = f"https://127.0.0.1:{free_port()}"  # never reached: the files are checked first
    started = time.monotonic()
    with pytest.raises(InvalidSettings) as info:
        connect(endpoint, timeout=5.0, **kwargs).get("/k")
    # A guard, not a speed test: a retry loop would take the whole 5 s call deadline.
    assert time.monotonic() - started < 1.0
    assert setting in str(info.value)
    assert path in str(info.value)


# -- endpoints that are not etcd ---------------------------------------------------------------


class _Canned(BaseHTTPRequestHandler):
    """Answers every POST with the (status, body) its server holds for the path."""

    server: _CannedServer

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, body = self.server.answers.get(self.path, (404, b"404 page not found\n"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _CannedServer(ThreadingHTTPServer):
    answers: dict[str, tuple[int, bytes]]


@contextlib.contextmanager
def _serve(answers: dict[str, tuple[int, bytes]], host: str = "127.0.0.1") -> Iterator[str]:
    _CannedServer.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server = _CannedServer((host, 0), _Canned)
    server.answers = answers
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        yield f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()


HEADER = b'{"header": {"revision": "7"}}'


@pytest.mark.parametrize(
    ("answers", "call"),
    [
        ({"/v3/kv/range": (200, b"hello")}, "get"),
        ({"/v3/kv/range": (200, b"[1, 2]")}, "get"),
        ({"/v3/kv/range": (200, b'{"kvs": []}')}, "get"),
        ({"/v3/kv/range": (200, b"\xff\xfe")}, "get"),
        ({}, "get"),  # 404 page not found
        ({"/v3/kv/range": (500, b"<html>oops</html>")}, "get"),
        ({"/v3/kv/txn": (200, b"<html/>")}, "txn"),
        ({"/v3/auth/authenticate": (200, HEADER)}, "login"),
        ({"/v3/auth/authenticate": (200, b"not json")}, "login"),
        ({"/v3/lease/keepalive": (200, b"[1]")}, "stream"),
        ({"/v3/lease/keepalive": (200, b'{"result": 5}')}, "stream"),
        ({"/v3/lease/keepalive": (200, b'{"error": "boom"}')}, "stream"),
        ({"/v3/lease/keepalive": (400, b"\xff")}, "stream"),
    ],
)
def test_an_endpoint_that_is_not_etcd_raises_only_storage_errors(
    answers: dict[str, tuple[int, bytes]], call: str
) -> None:
    with _serve(answers) as address:
        user = {"username": "u", "password": "p"} if call == "login" else {}
        if call == "stream":  # a stream is opened on the current endpoint only
            client = connect(address, timeout=0.5)
            with pytest.raises(StorageError):
                client.lease_keepalive_once(1, timeout=0.5)
            return
        # A dead member first: failing over from it must not change what surfaces.
        client = connect(f"127.0.0.1:{free_port()},{address}", timeout=0.3, **user)
        with pytest.raises(Unavailable, match=r"etcd unavailable|not etcd|other than etcd"):
            if call == "txn":
                client.txn([], [])
            else:
                client.get("/k")


def test_ipv6_endpoint_is_reached(ipv6: None) -> None:
    with _serve({"/v3/kv/range": (200, HEADER)}, host="::1") as address:
        assert connect(f"http://{address}", timeout=2.0).revision() == 7


@pytest.fixture
def ipv6() -> None:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")

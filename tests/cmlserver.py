"""A CML 2.x REST API test server: many lab hosts behind one loopback port, with fault levers.

It follows the documented ``/api/v0`` endpoints the controller uses, with CML's paths, JSON
shapes, ``Bearer`` auth and error bodies (``{"code": <status>, "description": "..."}``):

    POST /api/v0/authenticate            {"username", "password"} -> "<jwt>" | 403
    GET  /api/v0/system_information      (no auth) {"version", "ready", ...}
    GET  /api/v0/licensing               {"registration": {...}, "authorization": {...}, ...}
    POST /api/v0/licensing/registration  {"token", "reregister"} -> 204 | 400
    GET  /api/v0/labs?show_all=true      ["<lab id>", ...]
    GET  /api/v0/labs/{id}               {"id", "lab_title", "state", ...}
    GET  /api/v0/labs/{id}/state         "STARTED" | "STOPPED" | "DEFINED_ON_CORE"

Routing hosts: a request for ``/hosts/<address>/api/v0/...`` is served by host ``<address>``
(created with the defaults on first sight), so one server stands in for a whole fleet and
the client's URL template is ``http://127.0.0.1:<port>/hosts/{address}``
(`CmlServer.url_template`). No connection ever goes to ``<address>`` itself: whatever
address EC2 (moto) hands out is just a path segment here. ``/api/v0/...`` without the prefix
is host ``""``, for a server that plays one host on its own port.

Levers (all thread-safe, take effect on the next request):
- per host (`CmlServer.host(address)` returns its `CmlHost`): ``version``, ``ready``,
  ``gateway_error`` (nginx's 502 page: the controller services are still starting), labs and
  their states (`CmlHost.set_labs`), licensing state and ``registration_delay``, and
  ``errors`` (answer one endpoint with a given status, in CML's error shape);
- ``valid_tokens``: license tokens Smart Licensing accepts; any other well-formed token ends
  in ``FAILED`` with "The token '<token>' is not valid." (CML echoes the token);
- ``expire_tokens()``: every JWT issued so far is rejected with 401 from now on;
- ``stop_listening()`` / ``start_listening()``: the port keeps being held (bound, not
  listening), so clients get connection refused — a host before nginx is up — and then the
  same port answers again; ``CmlServer(listening=False)`` starts in that state;
- ``calls()``: a counter of requests per ``"METHOD /api/v0/path"`` (lab ids shown as
  ``{id}``), per host or in total, for "CML calls per worker".
TLS: pass ``tls=(cert, key)``; `self_signed_cert` makes a certificate like CML's own.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

API = "/api/v0"
DEFAULT_USERNAME = "admin"
DEFAULT_PASSWORD = "cml-test-password"
DEFAULT_VALID_TOKEN = "VALID-LICENSE-TOKEN-0001"
DEFAULT_VERSION = "2.7.2+build.12"
TOKEN_PATTERN_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/%=-"
)
"""CML validates registration tokens against ``^[a-zA-Z\\d+/%=-]{1,256}$``."""

NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


@dataclass
class CmlHost:
    """One CML controller's state. Mutate through the server's lock (`CmlServer.host`)."""

    version: str = DEFAULT_VERSION
    ready: bool = True
    gateway_error: bool = False
    labs: dict[str, str] = field(default_factory=dict)
    registration_status: str = "NOT_REGISTERED"
    authorization_status: str = "EVAL"
    registration_failure: str | None = None
    registration_delay: float = 0.0
    """Seconds a registration stays IN_PROGRESS before Smart Licensing decides."""
    errors: dict[str, int] = field(default_factory=dict)
    """Injected failures: "METHOD /api/v0/path" (as in `CmlServer.calls`) -> HTTP status."""
    registrations: list[str] = field(default_factory=list)
    """Tokens POSTed to /licensing/registration, in order (for assertions)."""
    _pending: tuple[float, str] | None = None

    def set_labs(self, running: int = 0, stopped: int = 0, defined: int = 0) -> None:
        self.labs = {}
        for count, state in (
            (running, "STARTED"),
            (stopped, "STOPPED"),
            (defined, "DEFINED_ON_CORE"),
        ):
            for _ in range(count):
                self.labs[str(uuid.uuid4())] = state

    def license(self) -> None:
        """Registered and authorized, as after a successful registration."""
        self.registration_status, self.authorization_status = "COMPLETED", "IN_COMPLIANCE"
        self.registration_failure = None

    def _settle(self, now: float, valid_tokens: set[str]) -> None:
        if self._pending is None or now < self._pending[0]:
            return
        token = self._pending[1]
        self._pending = None
        if token in valid_tokens:
            self.license()
        else:
            self.registration_status, self.authorization_status = "FAILED", "EVAL"
            self.registration_failure = f"The token '{token}' is not valid."

    def licensing_body(self) -> dict[str, Any]:
        now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
        registered = self.registration_status == "COMPLETED"
        register_time = {
            "succeeded": now if registered else None,
            "attempted": now if self.registrations else None,
            "scheduled": None,
            "status": "SUCCEEDED"
            if registered
            else ("FAILED" if self.registration_failure else None),
            "failure": self.registration_failure,
            "success": "SUCCESS"
            if registered
            else ("FAILED" if self.registration_failure else None),
        }
        blank_time = dict.fromkeys(
            ("succeeded", "attempted", "scheduled", "status", "failure", "success")
        )
        return {
            "udi": {
                "hostname": "cml-controller",
                "product_uuid": "00000000-0000-4000-8000-000000000000",
            },
            "registration": {
                "status": self.registration_status,
                "smart_account": "Test Account" if registered else None,
                "virtual_account": "Default" if registered else None,
                "register_time": register_time,
                "renew_time": blank_time,
                "expires": None,
            },
            "authorization": {
                "status": self.authorization_status,
                "renew_time": blank_time,
                "expires": None,
            },
            "reservation_mode": False,
            "features": [],
            "product_license": {"active": "CML_Enterprise", "is_enterprise": True},
            "transport": {
                "proxy": {"server": None, "port": None},
                "ssms": "https://smartreceiver.cisco.com/licservice/license",
                "default_ssms": "https://smartreceiver.cisco.com/licservice/license",
            },
        }


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, port: int, owner: CmlServer) -> None:
        super().__init__(("127.0.0.1", port), _Handler, bind_and_activate=False)
        self.owner = owner
        self.server_bind()  # holds the port; connections are refused until server_activate()

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.owner.tls_context is None:
            super().finish_request(request, client_address)
            return
        try:  # the handshake runs in the connection's thread, not in the accept loop
            wrapped = self.owner.tls_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            request.close()  # the client refused our certificate: that is its answer
            return
        try:
            super().finish_request(wrapped, client_address)
        finally:
            self.shutdown_request(wrapped)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # connections cut by stop_listening() or by the client end this way


class CmlServer:
    """Threaded HTTP(S) server on 127.0.0.1 playing any number of CML hosts."""

    def __init__(
        self,
        *,
        tls: tuple[Path, Path] | None = None,
        listening: bool = True,
        username: str = DEFAULT_USERNAME,
        password: str = DEFAULT_PASSWORD,
    ) -> None:
        self.username = username
        self.password = password
        self.valid_tokens: set[str] = {DEFAULT_VALID_TOKEN}
        self.host_defaults: dict[str, Any] = {}
        """Keyword arguments for hosts created on first sight (e.g. {"ready": False})."""
        self.lock = threading.RLock()
        self.tls_context: ssl.SSLContext | None = None
        if tls is not None:
            self.tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls_context.load_cert_chain(str(tls[0]), str(tls[1]))
        self._hosts: dict[str, CmlHost] = {}
        self._jwts: dict[str, str] = {}  # token -> host address it was issued by
        self._calls: Counter[tuple[str, str]] = Counter()
        self._connections: set[socket.socket] = set()
        self._httpd = _HttpServer(0, self)
        self.port: int = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None
        if listening:
            self.start_listening()

    # -- addressing -------------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return "https" if self.tls_context is not None else "http"

    @property
    def url_template(self) -> str:
        """LAB_CML_URL_TEMPLATE routing every `{address}` to its own host on this server."""
        return f"{self.scheme}://127.0.0.1:{self.port}/hosts/{{address}}"

    @property
    def base_url(self) -> str:
        """This server as a single host (host ``""``)."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    # -- levers -----------------------------------------------------------------------------

    def host(self, address: str = "") -> CmlHost:
        """The host at `address` (created on first use). Hold `lock` for multi-field edits."""
        with self.lock:
            host = self._hosts.get(address)
            if host is None:
                host = self._hosts[address] = CmlHost(**self.host_defaults)
            return host

    def hosts(self) -> dict[str, CmlHost]:
        with self.lock:
            return dict(self._hosts)

    def expire_tokens(self) -> None:
        with self.lock:
            self._jwts.clear()

    def calls(self, address: str | None = None) -> Counter[str]:
        """Requests per "METHOD /api/v0/path", for one host or all of them."""
        with self.lock:
            counts: Counter[str] = Counter()
            for (host, call), n in self._calls.items():
                if address is None or host == address:
                    counts[call] += n
            return counts

    def reset_calls(self) -> None:
        with self.lock:
            self._calls.clear()

    # -- listening --------------------------------------------------------------------------

    @property
    def listening(self) -> bool:
        return self._thread is not None

    def start_listening(self) -> None:
        if self._thread is not None:
            return
        self._httpd.server_activate()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"cmlserver-{self.port}",
        )
        self._thread.start()

    def stop_listening(self) -> None:
        """Refuse connections from now on (open ones are cut), keeping the port."""
        if self._thread is None:
            return
        self._httpd.shutdown()
        self._thread.join()
        self._thread = None
        self._cut_connections()
        self._httpd.server_close()
        self._httpd = _HttpServer(self.port, self)

    def close(self) -> None:
        self.stop_listening()
        self._httpd.server_close()

    def __enter__(self) -> CmlServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _cut_connections(self) -> None:
        with self.lock:
            connections = list(self._connections)
        for conn in connections:
            # the plain socket's shutdown: an SSLSocket's own would race its reader thread
            with contextlib.suppress(OSError):
                socket.socket.shutdown(conn, socket.SHUT_RDWR)

    # -- request handling (called from handler threads) -------------------------------------

    def handle(
        self, method: str, raw_path: str, headers: Any, body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        """(status, body, extra headers); body is JSON-able, None for no body, or str (HTML)."""
        parts = urlsplit(raw_path)
        path, address = unquote(parts.path), ""
        if path.startswith("/hosts/"):
            address, _, rest = path[len("/hosts/") :].partition("/")
            path = "/" + rest
        with self.lock:
            host = self.host(address)
            call = f"{method} {_call_name(path)}"
            self._calls[(address, call)] += 1
            if host.gateway_error:
                return 502, NGINX_502, {"Content-Type": "text/html"}
            if call in host.errors:
                return _error(host.errors[call], f"Injected failure of {call}\n(test lever)")
            if not path.startswith(API + "/"):
                return _error(404, f"Not found: {path}")
            route = path[len(API) :]
            if method == "POST" and route == "/authenticate":
                return self._authenticate(address, body)
            if method == "GET" and route == "/system_information":
                return (
                    200,
                    {
                        "version": host.version,
                        "ready": host.ready,
                        "allow_ssh_pubkey_auth": False,
                        "oui": "52:54:00:00:00:00",
                        "timeout": 10,
                        "features": [],
                    },
                    {},
                )
            denied = self._check_bearer(address, headers.get("Authorization"))
            if denied is not None:
                return denied
            host._settle(time.monotonic(), self.valid_tokens)
            if method == "GET" and route == "/licensing":
                return 200, host.licensing_body(), {}
            if method == "POST" and route == "/licensing/registration":
                return self._register(host, body)
            if method == "GET" and route == "/labs":
                return 200, list(host.labs), {}
            if method == "GET" and route.startswith("/labs/"):
                lab_id, _, tail = route[len("/labs/") :].partition("/")
                if lab_id not in host.labs:
                    return _error(404, f"Lab not found: {lab_id}")
                if tail == "state":
                    return 200, host.labs[lab_id], {}
                if tail == "":
                    return 200, _lab(lab_id, host.labs[lab_id]), {}
            return _error(404, f"Not found: {path}")

    def _authenticate(self, address: str, body: bytes) -> tuple[int, Any, dict[str, str]]:
        try:
            creds = json.loads(body or b"null")
        except ValueError:
            return _error(400, "Bad request: body is not JSON")
        if not isinstance(creds, dict) or not {"username", "password"} <= creds.keys():
            return _error(400, "Bad request: username and password are required")
        if creds["username"] != self.username or creds["password"] != self.password:
            return _error(403, "Authentication failed!")
        token = ".".join(secrets.token_urlsafe(n) for n in (12, 36, 24))  # JWT-shaped
        self._jwts[token] = address
        return 200, token, {}

    def _check_bearer(
        self, address: str, header: str | None
    ) -> tuple[int, Any, dict[str, str]] | None:
        if not header or not header.startswith("Bearer "):
            return _error(401, "No authorization token provided.")
        if self._jwts.get(header[len("Bearer ") :]) != address:
            return _error(401, "Invalid token: the session has expired or was never issued.")
        return None

    def _register(self, host: CmlHost, body: bytes) -> tuple[int, Any, dict[str, str]]:
        try:
            request = json.loads(body or b"null")
        except ValueError:
            return _error(400, "Bad request: body is not JSON")
        token = request.get("token") if isinstance(request, dict) else None
        reregister = request.get("reregister", False) if isinstance(request, dict) else None
        if (
            not isinstance(token, str)
            or not 1 <= len(token) <= 256
            or not set(token) <= TOKEN_PATTERN_CHARS
            or not isinstance(reregister, bool)
        ):
            return _error(400, "Bad request: token must match ^[a-zA-Z\\d+/%=-]{1,256}$")
        if host.registration_status == "COMPLETED" and not reregister:
            return _error(400, "Product is already registered; use reregister to register again.")
        host.registrations.append(token)
        host.registration_status, host.registration_failure = "IN_PROGRESS", None
        host._pending = (time.monotonic() + host.registration_delay, token)
        host._settle(time.monotonic(), self.valid_tokens)
        return 204, None, {}

    def track(self, conn: socket.socket, open_: bool) -> None:
        with self.lock:
            if open_:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as nginx in front of CML
    disable_nagle_algorithm = True  # headers and body go out in two writes
    server: _HttpServer

    def setup(self) -> None:
        super().setup()
        self.server.owner.track(self.connection, True)

    def finish(self) -> None:
        self.server.owner.track(self.connection, False)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, payload, extra = self.server.owner.handle(method, self.path, self.headers, body)
        if payload is None:
            data, content_type = b"", None
        elif isinstance(payload, str) and extra.get("Content-Type", "").startswith("text/"):
            data, content_type = payload.encode(), extra.pop("Content-Type")
        else:
            data, content_type = json.dumps(payload).encode(), "application/json"
        self.send_response(status, HTTPStatus(status).phrase)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)


def _error(status: int, description: str) -> tuple[int, Any, dict[str, str]]:
    return status, {"code": status, "description": description}, {}


def _lab(lab_id: str, state: str) -> dict[str, Any]:
    return {
        "id": lab_id,
        "created": "2026-01-01T00:00:00+00:00",
        "modified": "2026-01-01T00:00:00+00:00",
        "lab_title": f"Lab {lab_id[:6]}",
        "lab_description": "",
        "lab_notes": "",
        "owner": "00000000-0000-4000-8000-000000000001",
        "owner_username": DEFAULT_USERNAME,
        "owner_fullname": "Administrator",
        "state": state,
        "node_count": 2,
        "link_count": 1,
        "groups": [],
        "effective_permissions": ["lab_admin", "lab_edit", "lab_exec", "lab_view"],
        "autostart": {"enabled": False, "priority": None, "delay": None},
    }


def _call_name(path: str) -> str:
    """Lab ids replaced by ``{id}`` so the counter groups calls by endpoint."""
    parts = path.split("/")
    if len(parts) > 4 and parts[3] == "labs":
        parts[4] = "{id}"
    return "/".join(parts)


def self_signed_cert(base: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, like the one CML generates on first boot.

    The certificate is its own CA: a client trusts it by naming it as the CA bundle.
    """
    base.mkdir(parents=True, exist_ok=True)
    cert, key = base / "cml.crt", base / "cml.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=cml-controller",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key

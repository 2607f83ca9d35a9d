"""One etcd endpoint, spoken to through etcd3-py's sync `Client` HTTP transport.

We keep etcd3-py for what it does well (a pooled `requests` session against the gRPC-JSON
gateway) and bypass what it does badly: its constructor probes the server (and crashes while
etcd is down), its model objects cost ~40x the CPU of the data, it never logs in by itself,
and it lets `REQUESTS_CA_BUNDLE` override the CA we were given. TLS is ours: whether an
endpoint speaks it comes from its address (the scheme), and how from our `ssl.SSLContext`.

Nothing but `StorageError`s leaves this module: a dead port, a TLS mismatch, a server that
answers with something other than etcd's JSON all become `Unavailable` (try another member,
or later), a refused login `AuthenticationFailed`.
"""

from __future__ import annotations

import codecs
import contextlib
import http.client
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final

import etcd3
import pydantic_core
import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from controller.storage.address import EndpointAddress
from controller.storage.errors import (
    AuthenticationFailed,
    Compacted,
    InvalidRequest,
    InvalidSettings,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    StorageError,
    TLSFailed,
    Unavailable,
)
from controller.storage.tls import tls_context

log = logging.getLogger("controller.storage")

API_PREFIX = "/v3"  # etcd >= 3.4; 3.3 is end-of-life and only served /v3beta


@dataclass(frozen=True)
class Credentials:
    """TLS files and auth settings shared by every endpoint of one client.

    Whether an endpoint uses TLS is not decided here but by its `EndpointAddress`.
    """

    ca_cert: str | None = None
    cert: str | None = None
    key: str | None = None
    username: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        if self.ca_cert or self.cert or self.key:
            # The files are read and checked now: Credentials with an unusable one never
            # exist, so a typo in a path is reported at start-up, not at the first call.
            _ = self.tls_context

    @property
    def has_tls_files(self) -> bool:
        """A CA or client certificate is configured: bare host:port endpoints use TLS."""
        return bool(self.ca_cert or self.cert)

    @cached_property
    def tls_context(self) -> ssl.SSLContext:
        """Built on first use, shared by all endpoints; `InvalidSettings` for a bad file."""
        return tls_context(self.ca_cert, self.cert, self.key)

    def __repr__(self) -> str:  # never print the password
        user = self.username or "-"
        return (
            f"Credentials(ca_cert={self.ca_cert!r}, cert={self.cert!r}, username={user!r}, "
            f"password={'***' if self.password else None})"
        )


class _TLSAdapter(HTTPAdapter):
    """Every connection of the session uses our context, whatever requests would pick.

    requests otherwise adds certifi's bundle (or REQUESTS_CA_BUNDLE) to the trusted CAs and
    loads the client certificate itself; our context already holds the CA and the pair.
    """

    def __init__(self, context: ssl.SSLContext, **kwargs: Any) -> None:
        self._context = context
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        """Nothing to add: verification is the context's (CERT_REQUIRED, hostname checked)."""


class _NoProbeClient(etcd3.Client):  # type: ignore[misc]
    """etcd3-py's Client without the network probe in its constructor.

    The stock constructor asks the server for its version and raises AttributeError when etcd
    is down, which is exactly when a controller starts. We assume the >= 3.4 API (`/v3`).
    """

    def _retrieve_version(self) -> None:
        import semantic_version as sem  # type: ignore[import-untyped]

        self.server_version = self.cluster_version = "3.4.0"
        self.server_version_sem = self.cluster_version_sem = sem.Version("3.4.0")


class Endpoint:
    """One member's address with its own pooled HTTP session and auth token."""

    def __init__(self, address: EndpointAddress, creds: Credentials, pool_size: int) -> None:
        self.address = address.netloc
        self._creds = creds
        adapter = (
            _TLSAdapter(
                creds.tls_context, pool_connections=1, pool_maxsize=pool_size, max_retries=0
            )
            if address.tls
            else HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        )
        self._client = _NoProbeClient(
            host=address.host,
            port=address.port,
            protocol="https" if address.tls else "http",
            verify=True,  # etcd3-py defaults to verify=False; our context decides instead
            pool_size=pool_size,
        )
        session: requests.Session = self._client._session
        session.cert = None  # the context holds the client certificate
        # Without this, REQUESTS_CA_BUNDLE / proxies from the environment override our CA and
        # every call pays for an environment lookup.
        session.trust_env = False
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._session = session
        self._base = address.url + API_PREFIX
        self._path = API_PREFIX
        try:
            probe = requests.Request("POST", self._base).prepare()
            pool = adapter.get_connection_with_tls_context(probe, True)
        except (requests.RequestException, urllib3.exceptions.HTTPError, ValueError) as exc:
            raise InvalidSettings(f"etcd endpoint {address.url} is unusable: {exc}") from None
        assert isinstance(pool, urllib3.HTTPConnectionPool)
        self._pool = pool
        self._token: str | None = None
        """None: not logged in yet; "": etcd has auth disabled, so no token is sent."""
        self._auth_lock = threading.Lock()

    def close(self) -> None:
        self._session.close()

    # -- unary calls ---------------------------------------------------------------------

    def call(self, method: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        """POST one RPC; re-authenticate once if the token was missing or expired."""
        try:
            return self._call_once(method, body, timeout)
        except _TokenRejected:
            if not self._creds.username:
                raise self._credentials_required() from None
            self._login(timeout, force=True)
            try:
                return self._call_once(method, body, timeout)
            except _TokenRejected as exc:
                raise AuthenticationFailed(f"{self.address}: {exc}") from None

    def _call_once(self, method: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        # Unary calls go straight to the urllib3 pool under etcd3-py's requests session
        # (same sockets, same TLS context): requests' per-call machinery costs ~0.4 ms of
        # CPU, more than etcd itself spends on a small txn.
        started = time.monotonic()
        headers = self._headers(timeout)  # may log in first: that time counts too
        remaining = max(0.001, timeout - (time.monotonic() - started))
        try:
            resp = self._pool.urlopen(
                "POST",
                self._path + method,
                body=pydantic_core.to_json(body),  # pydantic-core: ~4x json.dumps
                headers=headers,
                # `total`, not connect + read: a slow connect must not double the deadline.
                timeout=urllib3.Timeout(total=remaining),
                retries=False,
                preload_content=True,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _transport_error(self.address, method, exc) from None
        if resp.status >= 400:
            raise _error_from_body(self.address, method, resp.status, resp.data)
        return _etcd_response(self.address, method, resp.data)

    # -- streams ---------------------------------------------------------------------------

    def stream(
        self,
        method: str,
        body: dict[str, Any] | list[dict[str, Any]],
        connect_timeout: float,
        read_timeout: float,
    ) -> Stream:
        """Open a server stream. A list body sends several requests on one stream (the
        gateway decodes concatenated JSON): a watch multiplexes its heartbeat watcher so."""
        headers = self._headers(connect_timeout)
        messages = body if isinstance(body, list) else [body]
        try:
            resp = self._session.post(
                self._base + method,
                data="".join(json.dumps(m) for m in messages),
                headers=headers,
                timeout=(connect_timeout, read_timeout),
                stream=True,
            )
        except _TRANSPORT_ERRORS as exc:
            raise _transport_error(self.address, method, exc) from None
        if resp.status_code >= 400:
            try:
                err = _status_error(self.address, method, resp)
            except _TRANSPORT_ERRORS as exc:  # the error body itself broke off
                raise _transport_error(self.address, method, exc) from None
            finally:
                resp.close()
            if isinstance(err, _TokenRejected):
                if not self._creds.username:
                    raise self._credentials_required() from None
                self._login(connect_timeout, force=True)
                raise Unavailable(f"{self.address}: re-authenticated; reopen the stream")
            raise err
        return Stream(self.address, method, resp)

    # -- auth ------------------------------------------------------------------------------

    def _headers(self, timeout: float) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._creds.username:
            token = self._token if self._token is not None else self._login(timeout)
            if token:
                headers["Authorization"] = token
        return headers

    def _credentials_required(self) -> AuthenticationFailed:
        return AuthenticationFailed(
            f"{self.address}: etcd requires authentication but no credentials are configured: "
            "set ETCD_USERNAME and ETCD_PASSWORD_FILE (or ETCD_PASSWORD), or pass "
            "username= and password= to connect()"
        )

    def renew_token(self, timeout: float) -> None:
        """Log in again now (a stream was cancelled for an expired or unknown token)."""
        if not self._creds.username:  # nothing to renew: the watch must back off, not spin
            raise self._credentials_required()
        self._login(timeout, force=True)

    def _login(self, timeout: float, force: bool = False) -> str:
        """The auth token ("" while etcd has auth disabled); logs in unless one is held."""
        method = "/auth/authenticate"
        with self._auth_lock:
            if self._token is not None and not force:
                return self._token
            body = {"name": self._creds.username, "password": self._creds.password}
            try:
                resp = self._session.post(
                    self._base + method, data=json.dumps(body), timeout=timeout
                )
                data = resp.content
            except _TRANSPORT_ERRORS as exc:
                raise _transport_error(self.address, method, exc) from None
            if resp.status_code >= 400:
                err = _error_from_body(self.address, method, resp.status_code, data)
                if "authentication is not enabled" in str(err):
                    # Credentials configured before auth is enabled: send none until etcd
                    # asks for them (its "user name is empty" makes us log in again).
                    if self._token != "":
                        log.warning(
                            "etcd at %s has authentication disabled; sending requests "
                            "without credentials until it is enabled",
                            self.address,
                        )
                    self._token = ""
                    return ""
                if isinstance(err, _TokenRejected | AuthenticationFailed):
                    raise AuthenticationFailed(
                        f"{self.address}: etcd refused the credentials of user "
                        f"{self._creds.username!r}"
                    )
                raise err
            token = _etcd_response(self.address, method, data).get("token")
            if not isinstance(token, str) or not token:
                raise Unavailable(f"{self.address}: {method} answered without a token")
            self._token = token
            return token


class Stream:
    """Iterates the JSON objects of a gateway stream (concatenated, no delimiter)."""

    def __init__(self, address: str, method: str, resp: requests.Response) -> None:
        self._address = address
        self._method = method
        self._resp = resp
        self._decoder = json.JSONDecoder()

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a broken socket must never raise
            self._resp.close()

    def abort(self) -> None:
        """Unblock a reader parked in `recv()` on another thread, then close.

        Closing a socket does not wake a thread blocked reading it (Linux keeps the file open
        until that read returns); shutting it down does, at once. This is what lets a watch be
        cancelled promptly instead of after its read timeout.
        """
        connection = getattr(self._resp.raw, "connection", None)
        sock = getattr(connection, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.close()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        buf = ""
        decode = self._decoder.raw_decode
        utf8 = codecs.getincrementaldecoder("utf-8")()  # a character may straddle chunks
        try:
            for chunk in self._resp.iter_content(chunk_size=None):
                buf += utf8.decode(chunk)
                while True:
                    buf = buf.lstrip()
                    if not buf:
                        break
                    try:
                        obj, end = decode(buf)
                    except json.JSONDecodeError:
                        break  # incomplete object: wait for more bytes
                    buf = buf[end:]
                    if isinstance(obj, dict) and "error" in obj:
                        raise _stream_error(self._address, self._method, obj["error"])
                    result = obj.get("result", obj) if isinstance(obj, dict) else obj
                    if not isinstance(result, dict):
                        raise ValueError(f"not an etcd message: {str(obj)[:100]!r}")
                    yield result
        except requests.RequestException as exc:
            raise _transport_error(self._address, self._method, exc) from None
        # urllib3's ProtocolError/ReadTimeout surface here too; ValueError: not JSON/UTF-8.
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise Unavailable(f"{self._address}: {self._method} stream broke: {exc}") from None
        raise Unavailable(f"{self._address}: {self._method} stream closed by the server")


class _TokenRejected(StorageError):
    """Internal: the auth token is missing/expired; the endpoint logs in again and retries."""


_TRANSPORT_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)
"""What sending a request may raise: requests wraps most of urllib3's errors, not all."""


_HEADERLESS: Final = frozenset({"/maintenance/alarm"})
"""etcd (3.4) answers these without a header: `{}`, or `{"alarms": [...]}`."""


def _etcd_response(address: str, method: str, data: bytes) -> dict[str, Any]:
    """The decoded body of a successful call; every etcd response carries a header."""
    try:
        result = pydantic_core.from_json(data)  # ~3x json.loads on a range or txn answer
    except ValueError:  # also invalid UTF-8
        result = None
    if not isinstance(result, dict) or (
        method not in _HEADERLESS and not isinstance(result.get("header"), dict)
    ):
        shown = data[:100].decode("utf-8", "replace")
        raise Unavailable(
            f"{address}: {method} answered with something other than etcd's JSON "
            f"({shown!r}); is this an etcd client port?",
            maybe_applied=True,
        )
    return result


def auth_rejected(message: str) -> bool:
    """True when etcd's message means "your token is missing, expired or unknown".

    etcd says so in-band on streams (HTTP 200, a cancel or an error object), not only with an
    HTTP status, so stream readers must recognise the words.
    """
    lowered = message.lower()
    return "invalid auth token" in lowered or "user name is empty" in lowered


def _transport_error(address: str, method: str, exc: BaseException) -> Unavailable:
    """Connection errors before the request was sent are safe to retry anywhere; others not."""
    not_sent = isinstance(exc, requests.ConnectTimeout | ConnectTimeoutError) or _caused_by(
        exc, NewConnectionError
    )
    tls_error = _cause(exc, ssl.SSLError)
    if tls_error is not None:
        return TLSFailed(
            f"{address}: TLS failed during {method}: {tls_error} (does this endpoint serve TLS, "
            "with a certificate that ETCD_CA_CERT, or else the system trust store, trusts?)",
            maybe_applied=not not_sent,
        )
    what = "could not connect" if not_sent else "connection failed"
    hint = ""
    if _caused_by(exc, http.client.RemoteDisconnected):  # what a TLS port does to plaintext
        hint = " (if this endpoint serves TLS, write it as https://host:port)"
    return Unavailable(
        f"{address}: {what} during {method}: {_short(exc)}{hint}", maybe_applied=not not_sent
    )


def _short(exc: BaseException) -> str:
    """urllib3 nests the useful part ("[Errno 111] Connection refused") deep in a repr."""
    text = str(exc)
    marker = text.rfind("[Errno")
    if marker >= 0:
        return text[marker:].rstrip("')\" ")
    return text


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    return _cause(exc, kind) is not None


def _cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first `kind` among the causes, wrapped args and urllib3 reasons of `exc`."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        cur = stack.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, kind):
            return cur
        stack.extend([cur.__cause__, cur.__context__])
        stack.extend(a for a in getattr(cur, "args", ()) if isinstance(a, BaseException))
        reason = getattr(cur, "reason", None)
        if isinstance(reason, BaseException):
            stack.append(reason)
    return None


def _status_error(address: str, method: str, resp: requests.Response) -> StorageError:
    return _error_from_body(address, method, resp.status_code, resp.content)


def _error_from_body(address: str, method: str, status: int, body: bytes) -> StorageError:
    try:
        data = json.loads(body)
    except ValueError:  # also UnicodeDecodeError
        data = None
    if not isinstance(data, dict):  # etcd's gateway always explains itself in JSON
        shown = body[:200].decode("utf-8", "replace")
        return Unavailable(
            f"{address}: {method} answered HTTP {status} with something other than etcd's "
            f"JSON ({shown!r}); is this an etcd (>= 3.4) client port?",
            maybe_applied=True,
        )
    message = str(data.get("error") or data.get("message") or data)
    code = _int(data.get("code") or data.get("grpc_code"))
    return _grpc_error(address, method, code, message, status)


def _stream_error(address: str, method: str, err: Any) -> StorageError:
    if not isinstance(err, dict):
        err = {"message": str(err)}
    message = str(err.get("message") or err)
    code = _int(err.get("grpc_code") or err.get("code"))
    return _grpc_error(address, method, code, message, _int(err.get("http_code")))


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _grpc_error(address: str, method: str, code: int, message: str, http: int) -> StorageError:
    text = f"{address}: {method}: {message}"
    lowered = message.lower()
    if "compacted" in lowered:
        return Compacted(0, 0)
    if "invalid auth token" in lowered or "user name is empty" in lowered or code == 16:
        if "authentication failed" in lowered:
            return AuthenticationFailed(text)
        return _TokenRejected(text)
    if "authentication failed" in lowered:
        return AuthenticationFailed(text)
    if "permission denied" in lowered or code == 7:
        return PermissionDenied(text)
    if "database space exceeded" in lowered:
        return QuotaExceeded(text)
    if code in (4, 14) or http in (502, 503, 504) or "leader" in lowered or "timed out" in lowered:
        return Unavailable(text, maybe_applied=True)
    if code == 5 or "not found" in lowered:
        return NotFound(text)
    if code in (3, 8, 9, 11) or http == 400:
        return InvalidRequest(text)
    return StorageError(text)

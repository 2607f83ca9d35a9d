"""One etcd endpoint, spoken to through etcd3-py's sync `Client` HTTP transport.

We keep etcd3-py for what it does well (a pooled `requests` session against the gRPC-JSON
gateway, TLS plumbing) and bypass what it does badly: its constructor probes the server (and
crashes while etcd is down), its model objects cost ~40x the CPU of the data, it never logs in
by itself, and it lets `REQUESTS_CA_BUNDLE` override the CA we were given.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import etcd3
import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from controller.storage.errors import (
    AuthenticationFailed,
    Compacted,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    StorageError,
    Unavailable,
)

API_PREFIX = "/v3"  # etcd >= 3.4; 3.3 is end-of-life and only served /v3beta


@dataclass(frozen=True)
class Credentials:
    """TLS and auth settings shared by every endpoint of one client."""

    ca_cert: str | None = None
    cert: str | None = None
    key: str | None = None
    username: str | None = None
    password: str | None = None
    use_tls: bool = False
    """TLS with the system trust store even without a CA file (https:// endpoints)."""

    @property
    def tls(self) -> bool:
        return self.use_tls or bool(self.ca_cert or self.cert)

    def __repr__(self) -> str:  # never print the password
        user = self.username or "-"
        return f"Credentials(tls={self.tls}, username={user!r}, password={'***' if self.password else None})"


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
    """A host:port with its own pooled HTTP session and auth token."""

    def __init__(self, address: str, creds: Credentials, pool_size: int) -> None:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"etcd endpoint {address!r} is not host:port")
        self.address = address
        self._creds = creds
        cert = (creds.cert, creds.key) if creds.cert and creds.key else ()
        self._client = _NoProbeClient(
            host=host,
            port=int(port),
            protocol="https" if creds.tls else "http",
            cert=cert,
            # etcd3-py defaults to verify=False; we verify against the given CA or the system store.
            verify=creds.ca_cert or True,
            pool_size=pool_size,
        )
        if creds.tls:
            self._client.protocol = "https"
        session: requests.Session = self._client._session
        # Without this, REQUESTS_CA_BUNDLE / proxies from the environment override our CA and
        # every call pays for an environment lookup.
        session.trust_env = False
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._session = session
        self._base = f"{'https' if creds.tls else 'http'}://{address}{API_PREFIX}"
        self._path = API_PREFIX
        probe = requests.Request("POST", self._base).prepare()
        pool = adapter.get_connection_with_tls_context(
            probe, session.verify, cert=session.cert or None
        )
        assert isinstance(pool, urllib3.HTTPConnectionPool)
        self._pool = pool
        self._token: str | None = None
        self._auth_lock = threading.Lock()

    def close(self) -> None:
        self._session.close()

    # -- unary calls ---------------------------------------------------------------------

    def call(self, method: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        """POST one RPC; re-authenticate once if the token was missing or expired."""
        try:
            return self._call_once(method, body, timeout)
        except _TokenRejected:
            self._login(timeout, force=True)
            try:
                return self._call_once(method, body, timeout)
            except _TokenRejected as exc:
                raise AuthenticationFailed(f"{self.address}: {exc}") from None

    def _call_once(self, method: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        # Unary calls go straight to the urllib3 pool under etcd3-py's requests session
        # (same sockets, same TLS context): requests' per-call machinery costs ~0.4 ms of
        # CPU, more than etcd itself spends on a small txn.
        headers = self._headers(timeout)
        try:
            resp = self._pool.urlopen(
                "POST",
                self._path + method,
                body=json.dumps(body),
                headers=headers,
                timeout=urllib3.Timeout(connect=timeout, read=timeout),
                retries=False,
                preload_content=True,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _transport_error(self.address, method, exc) from None
        if resp.status >= 400:
            raise _error_from_body(self.address, method, resp.status, resp.data)
        result: dict[str, Any] = json.loads(resp.data)
        return result

    # -- streams ---------------------------------------------------------------------------

    def stream(
        self, method: str, body: dict[str, Any], connect_timeout: float, read_timeout: float
    ) -> _Stream:
        headers = self._headers(connect_timeout)
        try:
            resp = self._session.post(
                self._base + method,
                data=json.dumps(body),
                headers=headers,
                timeout=(connect_timeout, read_timeout),
                stream=True,
            )
        except requests.RequestException as exc:
            raise _transport_error(self.address, method, exc) from None
        if resp.status_code >= 400:
            err = _status_error(self.address, method, resp)
            resp.close()
            if isinstance(err, _TokenRejected):
                self._login(connect_timeout, force=True)
                raise Unavailable(f"{self.address}: re-authenticated; reopen the stream")
            raise err
        return _Stream(self.address, method, resp)

    # -- auth ------------------------------------------------------------------------------

    def _headers(self, timeout: float) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._creds.username:
            headers["Authorization"] = self._token or self._login(timeout)
        return headers

    def _login(self, timeout: float, force: bool = False) -> str:
        with self._auth_lock:
            if self._token and not force:
                return self._token
            body = {"name": self._creds.username, "password": self._creds.password}
            try:
                resp = self._session.post(
                    self._base + "/auth/authenticate", data=json.dumps(body), timeout=timeout
                )
            except requests.RequestException as exc:
                raise _transport_error(self.address, "/auth/authenticate", exc) from None
            if resp.status_code >= 400:
                err = _status_error(self.address, "/auth/authenticate", resp)
                if isinstance(err, _TokenRejected | AuthenticationFailed):
                    raise AuthenticationFailed(
                        f"{self.address}: etcd refused the credentials of user "
                        f"{self._creds.username!r}"
                    )
                raise err
            token = str(resp.json()["token"])
            self._token = token
            return token


class _Stream:
    """Iterates the JSON objects of a gateway stream (concatenated, no delimiter)."""

    def __init__(self, address: str, method: str, resp: requests.Response) -> None:
        self._address = address
        self._method = method
        self._resp = resp
        self._decoder = json.JSONDecoder()

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a broken socket must never raise
            self._resp.close()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        buf = ""
        decode = self._decoder.raw_decode
        try:
            for chunk in self._resp.iter_content(chunk_size=None):
                buf += chunk.decode("utf-8")
                while True:
                    buf = buf.lstrip()
                    if not buf:
                        break
                    try:
                        obj, end = decode(buf)
                    except json.JSONDecodeError:
                        break  # incomplete object: wait for more bytes
                    buf = buf[end:]
                    if "error" in obj:
                        raise _stream_error(self._address, self._method, obj["error"])
                    yield obj.get("result", obj)
        except requests.RequestException as exc:
            raise _transport_error(self._address, self._method, exc) from None
        except (OSError, ValueError) as exc:  # urllib3 ProtocolError/ReadTimeout surface here too
            raise Unavailable(f"{self._address}: {self._method} stream broke: {exc}") from None
        raise Unavailable(f"{self._address}: {self._method} stream closed by the server")


class _TokenRejected(StorageError):
    """Internal: the auth token is missing/expired; the endpoint logs in again and retries."""


def _transport_error(address: str, method: str, exc: BaseException) -> Unavailable:
    """Connection errors before the request was sent are safe to retry anywhere; others not."""
    not_sent = isinstance(exc, requests.ConnectTimeout | ConnectTimeoutError) or _caused_by(
        exc, NewConnectionError
    )
    what = "could not connect" if not_sent else "connection failed"
    return Unavailable(
        f"{address}: {what} during {method}: {_short(exc)}", maybe_applied=not not_sent
    )


def _short(exc: BaseException) -> str:
    """urllib3 nests the useful part ("[Errno 111] Connection refused") deep in a repr."""
    text = str(exc)
    marker = text.rfind("[Errno")
    if marker >= 0:
        return text[marker:].rstrip("')\" ")
    return text


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        cur = stack.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, kind):
            return True
        stack.extend([cur.__cause__, cur.__context__])
        stack.extend(a for a in getattr(cur, "args", ()) if isinstance(a, BaseException))
        reason = getattr(cur, "reason", None)
        if isinstance(reason, BaseException):
            stack.append(reason)
    return False


def _status_error(address: str, method: str, resp: requests.Response) -> StorageError:
    return _error_from_body(address, method, resp.status_code, resp.content)


def _error_from_body(address: str, method: str, status: int, body: bytes) -> StorageError:
    try:
        data = json.loads(body)
        message = str(data.get("error") or data.get("message") or data)
        code = int(data.get("code") or data.get("grpc_code") or 0)
    except (ValueError, AttributeError):
        message, code = body[:200].decode("utf-8", "replace"), 0
    return _grpc_error(address, method, code, message, status)


def _stream_error(address: str, method: str, err: dict[str, Any]) -> StorageError:
    message = str(err.get("message") or err)
    code = int(err.get("grpc_code") or err.get("code") or 0)
    return _grpc_error(address, method, code, message, int(err.get("http_code") or 0))


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

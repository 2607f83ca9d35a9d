"""The CML half of the `aws` provider: ask a Cisco Modeling Labs 2.x host how it is, license it.

A lab worker is an EC2 metal instance running CML. Once EC2 says the instance runs, this
module talks to CML's REST API (``/api/v0``) on the instance's address:

- ``GET  /system_information`` (no auth): ``version`` and ``ready`` (a compute can start nodes);
- ``POST /authenticate`` with ``{"username", "password"}``: a JWT, sent as ``Bearer`` after;
- ``GET  /licensing``: ``registration.status`` (``COMPLETED`` when registered) and
  ``authorization.status`` (``IN_COMPLIANCE`` when licensed);
- ``POST /licensing/registration`` with ``{"token", "reregister": false}``: 204, after which
  CML registers with Smart Licensing in the background (a bad token shows up later as
  ``registration.register_time.failure``);
- ``GET  /labs?show_all=true`` (lab ids of every user) and ``GET /labs/{id}/state``: a lab
  hosts students while its state is ``STARTED`` (virl2-client's ``Lab.is_active``).

Why httpx against those endpoints rather than Cisco's ``virl2-client``: its ``ClientLibrary``
is one object per host that, on construction, checks the controller version, authenticates,
may prompt on stdin, and keeps a local, auto-syncing model of labs behind its own locks; its
licensing helper waits by sleeping in a loop (``register_wait``). A reconcile worker thread
needs the opposite: one short call per question, a timeout on every call, no sleeping, no
per-host object to build or tear down, and a clear split between "host still booting" and
"broken". httpx gives per-request timeouts, TLS verification control (an ``SSLContext`` from
our CA bundle), connection pooling, and one ``httpx.Client`` that "can be shared between
threads" (its docstring); the five endpoints are a few lines each.

What a call can end in, and why:

- connection refused, connect timeout, or 502/503/504 (nginx up, controller not yet) mean the
  host is booting: ``health`` answers ``HostHealth(ready=False, ready_in=boot_poll)`` and logs
  at debug, because every worker passes through this for minutes and it is not an error;
- 401 on a call with a cached token means the token expired: drop it, authenticate once, and
  repeat the call once; 401/403 after that (or on ``/authenticate``) is ``ProviderFatalError``
  naming host and user, since retrying the same credentials cannot help;
- a TLS verification failure is a transient ``ProviderError`` with the fix in its message:
  it is a controller setting, so fixing LAB_CML_CA_CERT and restarting must heal the fleet
  without anyone editing every worker (a fatal error would park them all in Failed);
- anything else (read timeout, 4xx/5xx, a body that is not the documented JSON) is a
  transient ``ProviderError`` with a one-line message.

Secrets: the password is read (from LAB_CML_PASSWORD_FILE on every authentication, so a
rotated file is picked up) and sent only in the ``/authenticate`` body; license tokens are
sent only in the registration body and are masked in CML's messages before they are logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import ssl
import string
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from controller.labworker.provider import HostHealth, ProviderError, ProviderFatalError

log = logging.getLogger("controller.labworker.aws.cml")

API_PREFIX: Final = "/api/v0"
DEFAULT_URL_TEMPLATE: Final = "https://{address}"
URL_PLACEHOLDERS: Final = frozenset({"address"})

LAB_RUNNING_STATE: Final = "STARTED"
REGISTERED: Final = "COMPLETED"
AUTHORIZED: Final = frozenset({"IN_COMPLIANCE"})
REGISTRATION_FAILED: Final = frozenset({"FAILED", "RETRY_IN_PROGRESS"})
NOT_REGISTERED: Final = "NOT_REGISTERED"
"""Registration states besides these (and REGISTERED) mean CML is still working on it."""

BOOTING_STATUS: Final = frozenset({502, 503, 504})
CONNECT_TIMEOUT_CAP: Final = 5.0
LICENSING_FRESH: Final = 5.0
"""Seconds a licensing status read by `health` stands in for the one `register_license` needs."""
"""A booting instance drops SYNs; learning that should not cost a reconcile thread the
whole per-call timeout."""
MESSAGE_LIMIT: Final = 300
TOKEN_MASK: Final = "<license token>"

ENV_URL_TEMPLATE: Final = "LAB_CML_URL_TEMPLATE"
ENV_USERNAME: Final = "LAB_CML_USERNAME"
ENV_PASSWORD: Final = "LAB_CML_PASSWORD"
ENV_PASSWORD_FILE: Final = "LAB_CML_PASSWORD_FILE"
ENV_CA_CERT: Final = "LAB_CML_CA_CERT"
ENV_INSECURE: Final = "LAB_CML_INSECURE"
ENV_TIMEOUT: Final = "LAB_CML_TIMEOUT"
ENV_BOOT_POLL: Final = "LAB_CML_BOOT_POLL"
ENV_NAMES: Final = (
    ENV_URL_TEMPLATE,
    ENV_USERNAME,
    ENV_PASSWORD,
    ENV_PASSWORD_FILE,
    ENV_CA_CERT,
    ENV_INSECURE,
    ENV_TIMEOUT,
    ENV_BOOT_POLL,
)


# -- settings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CmlSettings:
    """How to reach and log in to the CML API of every lab host (one set for the fleet)."""

    url_template: str = DEFAULT_URL_TEMPLATE
    """Base URL of a host's CML; ``{address}`` is the instance's address (IP or name)."""
    username: str = "admin"
    password: str | None = field(default=None, repr=False)
    """Inline password (LAB_CML_PASSWORD); prefer ``password_file``."""
    password_file: str | None = None
    """File holding the password (LAB_CML_PASSWORD_FILE), read on every authentication."""
    ca_cert: str | None = None
    """CA bundle that signed CML's certificate; the system's CAs when None."""
    insecure: bool = False
    """Skip TLS verification (LAB_CML_INSECURE=true): an explicit, logged opt-in."""
    timeout: float = 10.0
    """Seconds per HTTP request (connect capped at CONNECT_TIMEOUT_CAP)."""
    boot_poll: float = 10.0
    """``ready_in`` reported for a host that is not answering yet: when to look again."""

    def __post_init__(self) -> None:
        _check_url_template(self.url_template)
        if not self.username:
            raise ValueError("username must not be empty")
        if self.password is not None and self.password_file is not None:
            raise ValueError("give the password or the password file, not both")
        if self.insecure and self.ca_cert:
            raise ValueError("a CA bundle and insecure=true contradict each other; pick one")
        for name in ("timeout", "boot_poll"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> CmlSettings:
        """Read LAB_CML_* from `environ`; a bad value raises ValueError naming its variable.

        A password (file or inline) is required, and the file must be readable now, so a
        typo fails at start rather than on the first host to come up.
        """

        def get(name: str) -> str | None:
            value = environ.get(name, "").strip()
            return value or None

        template = get(ENV_URL_TEMPLATE) or DEFAULT_URL_TEMPLATE
        try:
            _check_url_template(template)
        except ValueError as exc:
            raise ValueError(f"{ENV_URL_TEMPLATE}={template!r}: {exc}") from None
        password_file, inline = get(ENV_PASSWORD_FILE), environ.get(ENV_PASSWORD) or None
        if password_file and inline:
            raise ValueError(f"set {ENV_PASSWORD_FILE} or {ENV_PASSWORD}, not both")
        if not password_file and not inline:
            raise ValueError(
                f"{ENV_PASSWORD_FILE} (a file holding the CML password) or {ENV_PASSWORD} "
                "must be set"
            )
        if password_file:
            try:
                _read_password(password_file)
            except ProviderError as exc:
                raise ValueError(f"{ENV_PASSWORD_FILE}={password_file!r}: {exc}") from None
        ca_cert = get(ENV_CA_CERT)
        if ca_cert and not Path(ca_cert).is_file():
            raise ValueError(f"{ENV_CA_CERT}={ca_cert!r}: no such file")
        insecure = _parse_bool(ENV_INSECURE, get(ENV_INSECURE))
        if insecure and ca_cert:
            raise ValueError(f"set {ENV_CA_CERT} or {ENV_INSECURE}=true, not both")
        return cls(
            url_template=template,
            username=get(ENV_USERNAME) or "admin",
            password=inline,
            password_file=password_file,
            ca_cert=ca_cert,
            insecure=insecure,
            timeout=_parse_seconds(ENV_TIMEOUT, get(ENV_TIMEOUT), 10.0),
            boot_poll=_parse_seconds(ENV_BOOT_POLL, get(ENV_BOOT_POLL), 10.0),
        )

    def base_url(self, address: str) -> str:
        """The host's API root, e.g. ``https://10.0.3.7/api/v0``."""
        return self.url_template.format(address=address).rstrip("/") + API_PREFIX

    def current_password(self) -> str:
        """The password as of now (the file is re-read, so rotation needs no restart)."""
        if self.password_file is not None:
            return _read_password(self.password_file)
        if self.password:
            return self.password
        raise ProviderFatalError(
            f"no CML password configured: set {ENV_PASSWORD_FILE} (or {ENV_PASSWORD})"
        )


def _check_url_template(template: str) -> None:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ValueError(f"not a valid template ({exc})") from None
    if "address" not in names:
        raise ValueError("must contain {address}, e.g. https://{address}")
    unknown = names - URL_PLACEHOLDERS
    if unknown:
        raise ValueError(f"unknown placeholder(s) {sorted(unknown)}; only {{address}} is filled in")
    parts = urlsplit(template.format(address="192.0.2.1"))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL, e.g. https://{address}")


def _read_password(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ProviderError(f"cannot read the CML password file {path}: {exc.strerror}") from None
    password = text.rstrip("\r\n")
    if not password:
        raise ProviderError(f"the CML password file {path} is empty")
    return password


def _parse_bool(name: str, text: str | None) -> bool:
    if text is None:
        return False
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={text!r}: expected true or false")


def _parse_seconds(name: str, text: str | None, default: float) -> float:
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}={text!r}: expected a number of seconds") from None
    if not value > 0:
        raise ValueError(f"{name}={text!r}: must be a positive number of seconds")
    return value


# -- client ---------------------------------------------------------------------------------


class _HostBooting(Exception):
    """The host does not answer yet (refused, connect timeout, 502/503/504)."""


class CmlClient:
    """Thread-safe: one pooled httpx client and one cached JWT per host address."""

    def __init__(self, settings: CmlSettings) -> None:
        self.settings = settings
        self._http = httpx.Client(
            verify=_tls_verification(settings),
            timeout=httpx.Timeout(
                settings.timeout, connect=min(settings.timeout, CONNECT_TIMEOUT_CAP)
            ),
            headers={"Accept": "application/json"},
            follow_redirects=False,
            trust_env=False,
        )
        self._lock = threading.Lock()
        self._tokens: dict[str, str] = {}
        self._login_locks: dict[str, threading.Lock] = {}
        self._refused_tokens: dict[str, tuple[str, str]] = {}
        """address -> (sha256 of the license token CML last refused there, CML's reason)."""
        self._fresh_licensing: dict[str, tuple[float, Any]] = {}
        """address -> (when, body) of the licensing status `health` just read: the reconciler
        licenses right after a health check, so `register_license` need not ask again."""
        if settings.insecure:
            log.warning(
                "CML TLS certificates are NOT verified (%s=true): anyone on the path to a lab "
                "host can read the CML password; set %s to CML's CA bundle instead",
                ENV_INSECURE,
                ENV_CA_CERT,
            )
        if urlsplit(settings.url_template.format(address="x")).scheme == "http":
            log.warning(
                "CML is reached over plain http (%s=%s): the CML password travels unencrypted",
                ENV_URL_TEMPLATE,
                settings.url_template,
            )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CmlClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _recent_licensing(self, address: str) -> dict[str, Any] | None:
        """The licensing status `health` read in the last LICENSING_FRESH seconds, once."""
        with self._lock:
            seen = self._fresh_licensing.pop(address, None)
        if seen is None or time.monotonic() - seen[0] > LICENSING_FRESH:
            return None
        return seen[1] if isinstance(seen[1], dict) else None

    # -- LabProvider's host half ------------------------------------------------------------

    def health(self, address: str) -> HostHealth:
        """What the CML on `address` reports; a host that is still booting is not an error."""
        try:
            info = self._json(address, "GET", "/system_information", authenticated=False)
            version = info.get("version") if isinstance(info, dict) else None
            version = str(version) if version is not None else None
            if not (isinstance(info, dict) and info.get("ready") is True):
                log.debug(
                    "CML at %s (version %s) is up but not ready to run labs", address, version
                )
                return self._not_ready(version)
            licensing = self._json(address, "GET", "/licensing")
            with self._lock:
                self._fresh_licensing[address] = (time.monotonic(), licensing)
            labs = self._running_labs(address)
        except _HostBooting as why:
            log.debug("CML at %s is not answering yet (%s); looking again later", address, why)
            return self._not_ready(None)
        return HostHealth(
            ready=True, version=version, licensed=_is_licensed(licensing), hosted_labs=labs
        )

    def register_license(self, address: str, token: str) -> bool:
        """Register the host with Smart Licensing using `token`.

        True once CML reports the host registered and authorized. False when it is not (yet):
        CML refused this token (its message is logged, masked; the same token is not sent
        again until it changes, so a bad secret does not hammer Cisco's licensing service),
        registration is still in progress, or the host is registered but not authorized.
        """
        token = token.strip()
        if not token:
            log.warning("CML at %s: the license token is empty; not registering", address)
            return False
        digest = hashlib.sha256(token.encode()).hexdigest()
        try:
            status = self._recent_licensing(address) or self._dict(address, "GET", "/licensing")
            if _is_licensed(status):
                self._forget_refusal(address)
                return True
            state, failure = _registration(status)
            if state == REGISTERED:
                log.warning(
                    "CML at %s is registered but its authorization is %s, not %s: a new "
                    "token will not change that; check the Smart Account's CML licenses",
                    address,
                    _authorization(status),
                    "/".join(sorted(AUTHORIZED)),
                )
                return False
            if state is not None and state != NOT_REGISTERED and state not in REGISTRATION_FAILED:
                log.info("CML at %s: registration is in progress (%s)", address, state)
                return False
            refused = self._refused(address)
            if refused is not None and refused[0] == digest:
                log.info(
                    "CML at %s: this license token was already refused (%s); waiting for a "
                    "new token",
                    address,
                    refused[1],
                )
                return False
            response = self._request(
                address,
                "POST",
                "/licensing/registration",
                body={"token": token, "reregister": False},
            )
            if response.status_code in (400, 422):
                reason = _mask(_description(response), token)
                self._remember_refusal(address, digest, reason)
                log.warning(
                    "CML at %s refused the license token (%d): %s",
                    address,
                    response.status_code,
                    reason,
                )
                return False
            _check(address, "POST", "/licensing/registration", response, secret=token)
            status = self._dict(address, "GET", "/licensing")
        except _HostBooting as why:
            raise ProviderError(
                f"CML at {address} is not answering ({why}); license later"
            ) from None
        if _is_licensed(status):
            self._forget_refusal(address)
            log.info("CML at %s is registered and authorized", address)
            return True
        state, failure = _registration(status)
        if state in REGISTRATION_FAILED or failure:
            reason = _mask(failure or state or "no reason given", token)
            self._remember_refusal(address, digest, reason)
            log.warning("CML at %s: Smart Licensing refused the license token: %s", address, reason)
            return False
        log.info(
            "CML at %s accepted the registration request (now %s); looking again at the next "
            "health check",
            address,
            state,
        )
        return False

    # -- pieces -----------------------------------------------------------------------------

    def _not_ready(self, version: str | None) -> HostHealth:
        return HostHealth(
            ready=False,
            version=version,
            licensed=False,
            hosted_labs=0,
            ready_in=self.settings.boot_poll,
        )

    def _running_labs(self, address: str) -> int:
        lab_ids = self._json(address, "GET", "/labs", params={"show_all": "true"})
        if not isinstance(lab_ids, list) or not all(isinstance(i, str) for i in lab_ids):
            raise ProviderError(f"CML at {address}: GET /labs did not return a list of lab ids")
        running = 0
        for lab_id in lab_ids:
            path = f"/labs/{lab_id}/state"
            response = self._request(address, "GET", path)
            if response.status_code == 404:
                continue  # removed since the listing
            state = _decode(address, "GET", path, _check(address, "GET", path, response))
            running += state == LAB_RUNNING_STATE
        return running

    def _dict(self, address: str, method: str, path: str) -> dict[str, Any]:
        value = self._json(address, method, path)
        if not isinstance(value, dict):
            raise ProviderError(f"CML at {address}: {method} {path} did not return an object")
        return value

    def _json(
        self,
        address: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        authenticated: bool = True,
    ) -> Any:
        response = self._request(address, method, path, params=params, authenticated=authenticated)
        return _decode(address, method, path, _check(address, method, path, response))

    def _request(
        self,
        address: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        authenticated: bool = True,
    ) -> httpx.Response:
        """One API call; with auth, a 401 on a cached token re-authenticates exactly once."""
        url = self.settings.base_url(address) + path
        for attempt in (1, 2):
            headers: dict[str, str] = {}
            token = self._token(address) if authenticated else None
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            response = self._send(address, method, url, params=params, body=body, headers=headers)
            if response.status_code in BOOTING_STATUS:
                raise _HostBooting(f"HTTP {response.status_code} on {method} {path}")
            if response.status_code == 401 and token is not None and attempt == 1:
                log.info(
                    "CML at %s no longer accepts our session (expired?); logging in again as %r",
                    address,
                    self.settings.username,
                )
                self._drop_token(address, token)
                continue
            if response.status_code in (401, 403) and authenticated:
                raise ProviderFatalError(
                    f"CML at {address} denied user {self.settings.username!r} {method} "
                    f"{path} ({response.status_code}: {_description(response)}); that user "
                    "must be a CML admin with a valid password"
                )
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self,
        address: str,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None,
        body: Any,
        headers: Mapping[str, str],
    ) -> httpx.Response:
        try:
            return self._http.request(method, url, params=params, json=body, headers=headers)
        except httpx.ConnectTimeout:
            raise _HostBooting("connect timed out") from None
        except httpx.ConnectError as exc:
            tls = _ssl_cause(exc)
            if tls is None:
                raise _HostBooting(_one_line(str(exc)) or "connection failed") from None
            hint = (
                f"; set {ENV_CA_CERT} to the CA bundle that signed CML's certificate "
                f"(or {ENV_INSECURE}=true to skip verification)"
                if isinstance(tls, ssl.SSLCertVerificationError)
                else ""
            )
            raise ProviderError(
                f"TLS with CML at {address} failed: {_one_line(str(tls))}{hint}"
            ) from None
        except httpx.TimeoutException:
            raise ProviderError(
                f"CML at {address} did not answer {method} {urlsplit(url).path} within "
                f"{self.settings.timeout:g}s"
            ) from None
        except httpx.HTTPError as exc:
            raise ProviderError(
                f"CML at {address}: {method} {urlsplit(url).path} failed: "
                f"{type(exc).__name__}: {_one_line(str(exc))}"
            ) from None

    # -- tokens -----------------------------------------------------------------------------

    def _token(self, address: str) -> str:
        with self._lock:
            token = self._tokens.get(address)
            if token is not None:
                return token
            login_lock = self._login_locks.setdefault(address, threading.Lock())
        with login_lock:  # one login per host, however many threads ask at once
            with self._lock:
                token = self._tokens.get(address)
            if token is None:
                token = self._authenticate(address)
                with self._lock:
                    self._tokens[address] = token
            return token

    def _drop_token(self, address: str, stale: str) -> None:
        with self._lock:
            if self._tokens.get(address) == stale:  # another thread may have renewed it
                del self._tokens[address]

    def _authenticate(self, address: str) -> str:
        path = "/authenticate"
        password = self.settings.current_password()
        credentials = {"username": self.settings.username, "password": password}
        response = self._request(address, "POST", path, body=credentials, authenticated=False)
        if response.status_code in (401, 403):
            raise ProviderFatalError(
                f"CML at {address} rejected the credentials of user {self.settings.username!r} "
                f"({response.status_code}: {_mask(_description(response), password, '***')}); "
                f"check {ENV_USERNAME} and {ENV_PASSWORD_FILE}"
            )
        response = _check(address, "POST", path, response, secret=password)
        token = _decode(address, "POST", path, response)
        if not isinstance(token, str) or not token:
            raise ProviderError(f"CML at {address}: POST {path} did not return a token")
        log.debug("CML at %s: logged in as %r", address, self.settings.username)
        return token

    def _refused(self, address: str) -> tuple[str, str] | None:
        with self._lock:
            return self._refused_tokens.get(address)

    def _remember_refusal(self, address: str, digest: str, reason: str) -> None:
        with self._lock:
            self._refused_tokens[address] = (digest, reason)

    def _forget_refusal(self, address: str) -> None:
        with self._lock:
            self._refused_tokens.pop(address, None)


# -- helpers --------------------------------------------------------------------------------


def _tls_verification(settings: CmlSettings) -> ssl.SSLContext | bool:
    if settings.insecure:
        return False
    if settings.ca_cert:
        try:
            return ssl.create_default_context(cafile=settings.ca_cert)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(
                f"{ENV_CA_CERT}={settings.ca_cert!r}: not a CA bundle ({exc})"
            ) from None
    return True


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _check(
    address: str, method: str, path: str, response: httpx.Response, *, secret: str | None = None
) -> httpx.Response:
    """The response if it is a success, else a one-line ProviderError (`secret` masked)."""
    if response.is_success:
        return response
    description = _description(response)
    raise ProviderError(
        f"CML at {address}: {method} {path} answered {response.status_code}: "
        f"{_mask(description, secret, '***') if secret else description}"
    )


def _decode(address: str, method: str, path: str, response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ProviderError(
            f"CML at {address}: {method} {path} answered {response.status_code} with a body "
            "that is not JSON"
        ) from None


def _description(response: httpx.Response) -> str:
    """CML's error shape is ``{"code": <status>, "description": "..."}``."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _one_line(response.text) or response.reason_phrase
    if isinstance(body, dict) and body.get("description"):
        return _one_line(str(body["description"]))
    return _one_line(response.text) or response.reason_phrase


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= MESSAGE_LIMIT else flat[: MESSAGE_LIMIT - 1] + "…"


def _mask(text: str | None, secret: str, label: str = TOKEN_MASK) -> str:
    """CML echoes the token in its refusal ("The token '...' is not valid"): mask it."""
    return _one_line((text or "").replace(secret, label))


def _section(status: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = status.get(name)
    return value if isinstance(value, Mapping) else {}


def _authorization(status: Mapping[str, Any]) -> str | None:
    value = _section(status, "authorization").get("status")
    return value if isinstance(value, str) else None


def _is_licensed(status: Any) -> bool:
    return isinstance(status, Mapping) and _authorization(status) in AUTHORIZED


def _registration(status: Mapping[str, Any]) -> tuple[str | None, str | None]:
    registration = _section(status, "registration")
    state = registration.get("status")
    register_time = registration.get("register_time")
    failure = register_time.get("failure") if isinstance(register_time, Mapping) else None
    return (
        state if isinstance(state, str) else None,
        str(failure) if failure else None,
    )

"""`connect()`: the one way to build a client from settings (env, flags, users' scripts)."""

from __future__ import annotations

from collections.abc import Iterable

from controller.storage.address import EndpointAddress, parse_endpoints
from controller.storage.client import DEFAULT_TIMEOUT, EtcdClient
from controller.storage.transport import Credentials

__all__ = ["connect", "parse_endpoints"]


def connect(
    endpoints: str | Iterable[str | EndpointAddress],
    *,
    ca_cert: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    username: str | None = None,
    password: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    pool_size: int = 32,
) -> EtcdClient:
    """A client for `endpoints` ("h1:2379,h2:2379", a list, or `EndpointAddress`es).

    Each endpoint's scheme decides TLS: https:// is TLS, verified against `ca_cert` or else
    the system trust store; http:// is plaintext; a bare host:port is TLS when a CA or client
    certificate is given. The settings are checked here, and the CA, certificate and key
    files read: anything unusable raises `InvalidSettings` now. etcd itself is not contacted
    until the first call. Username/password log in on first use and whenever the token
    expires.
    """
    creds = Credentials(ca_cert=ca_cert, cert=cert, key=key, username=username, password=password)
    addresses = parse_endpoints(endpoints, tls_files=creds.has_tls_files)
    return EtcdClient(addresses, credentials=creds, timeout=timeout, pool_size=pool_size)

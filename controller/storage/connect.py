"""`connect()`: the one way to build a client from settings (env, flags, users' scripts)."""

from __future__ import annotations

from collections.abc import Iterable

from controller.storage.client import DEFAULT_TIMEOUT, EtcdClient
from controller.storage.transport import Credentials


def parse_endpoints(endpoints: str | Iterable[str]) -> list[str]:
    """Accept "h1:2379,h2:2379", ["h1:2379"], or URLs ("https://h1:2379") → host:port list."""
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    out = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        if "://" in item:
            item = item.split("://", 1)[1]
        item = item.rstrip("/")
        if ":" not in item:
            item += ":2379"
        out.append(item)
    if not out:
        raise ValueError("no etcd endpoint given (expected host:port[,host:port...])")
    return out


def connect(
    endpoints: str | Iterable[str],
    *,
    ca_cert: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    username: str | None = None,
    password: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    pool_size: int = 32,
) -> EtcdClient:
    """A client for `endpoints`; nothing is contacted until the first call.

    TLS is on when a CA or client certificate is given (or an endpoint is an https:// URL),
    and the server certificate is always verified. Username/password log in on first use
    and again whenever the token expires.
    """
    listed = [endpoints] if isinstance(endpoints, str) else list(endpoints)
    creds = Credentials(
        ca_cert=ca_cert,
        cert=cert,
        key=key,
        username=username,
        password=password,
        use_tls=any("https://" in e for e in listed),
    )
    return EtcdClient(
        parse_endpoints(listed), credentials=creds, timeout=timeout, pool_size=pool_size
    )

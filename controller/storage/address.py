"""Where an etcd endpoint is and whether it speaks TLS, parsed once from the operator's text.

The scheme decides TLS, per endpoint, and the decision travels with the address from the
settings to the socket, so an `https://` endpoint can never be spoken to in plaintext:

- `https://host:port`: TLS, verified against the given CA, or the system trust store;
- `http://host:port`: plaintext; giving a CA or client certificate too is a contradiction;
- `host:port`: TLS exactly when a CA or client certificate is given.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from controller.storage.errors import InvalidSettings

DEFAULT_PORT = 2379


@dataclass(frozen=True)
class EndpointAddress:
    host: str
    port: int
    tls: bool

    @property
    def netloc(self) -> str:
        """host:port, with an IPv6 host in brackets ("[::1]:2379")."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.netloc}"

    def __str__(self) -> str:  # how logs show it: with the scheme, so TLS is visible
        return self.url

    def __repr__(self) -> str:  # short enough for the start-up log line
        return f"EndpointAddress({self.url!r})"


def parse_endpoints(
    endpoints: str | Iterable[str | EndpointAddress], *, tls_files: bool = False
) -> list[EndpointAddress]:
    """Parse "h1:2379,https://[::1]:2379" (or a list of such items) into addresses.

    `tls_files` says whether a CA or client certificate is configured: it turns TLS on for
    bare host:port items and contradicts http:// ones. Raises `InvalidSettings` for anything
    unusable, including a mix of TLS and plaintext endpoints (one cluster speaks one).
    """
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    parsed: list[EndpointAddress] = []
    for item in items:
        if isinstance(item, EndpointAddress):
            parsed.append(item)
        elif item.strip():
            parsed.extend(
                _parse_item(part.strip(), tls_files) for part in item.split(",") if part.strip()
            )
    if not parsed:
        raise InvalidSettings("no etcd endpoint given (expected host:port[,host:port...])")
    if tls_files:
        plaintext = [a.url for a in parsed if not a.tls]
        if plaintext:
            raise InvalidSettings(
                f"etcd endpoint {plaintext[0]} is plaintext (http://) but a CA or client "
                "certificate is configured (ETCD_CA_CERT / ETCD_CERT): use https:// or a bare "
                "host:port, or drop the certificate settings"
            )
    if len({a.tls for a in parsed}) > 1:
        raise InvalidSettings(
            "etcd endpoints mix TLS and plaintext ("
            + ", ".join(a.url for a in parsed)
            + "): every member of one cluster speaks the same; use one scheme"
        )
    return parsed


def _parse_item(item: str, tls_files: bool) -> EndpointAddress:
    scheme, sep, rest = item.partition("://")
    if not sep:
        scheme, rest = "", item
    scheme = scheme.lower()
    if scheme not in ("", "http", "https"):
        raise InvalidSettings(f"etcd endpoint {item!r}: scheme must be http:// or https://")
    if "@" in rest:  # never echo: the part before @ may be a password
        raise InvalidSettings(
            "an etcd endpoint contains user info (user:password@): give the credentials as "
            "ETCD_USERNAME and ETCD_PASSWORD_FILE instead"
        )
    netloc = rest.rstrip("/")
    if "/" in netloc or "?" in netloc or "#" in netloc:
        raise InvalidSettings(f"etcd endpoint {item!r}: expected host:port, without a path")
    host, port_text = _split_host_port(item, netloc)
    if port_text is None:
        port = DEFAULT_PORT
    elif port_text.isdigit() and 0 < int(port_text) < 65536:
        port = int(port_text)
    else:
        raise InvalidSettings(f"etcd endpoint {item!r}: {port_text!r} is not a TCP port")
    tls = scheme == "https" or (scheme == "" and tls_files)
    return EndpointAddress(host, port, tls)


def _split_host_port(item: str, netloc: str) -> tuple[str, str | None]:
    """(host, port text, or None when no port is given)."""
    if netloc.startswith("["):
        host, bracket, after = netloc[1:].partition("]")
        if not bracket or not host or (after and not after.startswith(":")):
            raise InvalidSettings(f"etcd endpoint {item!r}: expected [ipv6-address]:port")
        return host, after[1:] if after else None
    if netloc.count(":") > 1:
        raise InvalidSettings(
            f"etcd endpoint {item!r}: put an IPv6 address in brackets, e.g. [::1]:2379"
        )
    host, colon, port_text = netloc.partition(":")
    if not host:
        raise InvalidSettings(f"etcd endpoint {item!r}: no host")
    return host, port_text if colon else None

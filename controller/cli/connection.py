"""Which etcd a `labctl` verb talks to: flags, then environment, then the current context.

Each setting is resolved on its own, the first source that gives it winning:

1. a flag (`--etcd-endpoints`, or etcdctl's spelling `--endpoints`),
2. the environment: the controller's names (`ETCD_ENDPOINTS` …, as `labctl run` reads
   them) and then etcdctl's (`ETCDCTL_ENDPOINTS`, `ETCDCTL_CACERT`, `ETCDCTL_CERT`,
   `ETCDCTL_KEY`, `ETCDCTL_USER` as `user` or `user:password`, `ETCDCTL_PASSWORD`,
   `ETCDCTL_COMMAND_TIMEOUT`), so a shell set up for etcdctl works as it is,
3. the context named by `--context` / `$LABCTL_CONTEXT`, else the file's current context
   (controller.cli.contextfile),
4. the default (127.0.0.1:2379, /lab-resource-manager).

A context may also name a default namespace, used when `-n` is not given.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.app import repositories
from controller.cli.contextfile import CONTEXT_ENV, load_contexts
from controller.cli.errors import CliError
from controller.resources import DEFAULT_NAMESPACE
from controller.runtime.repository import RepositorySet
from controller.storage import EtcdClient, InvalidSettings, connect


@dataclass(frozen=True)
class Source:
    """One connection setting: its flags, variables (first wins) and context key."""

    attr: str
    flags: tuple[str, ...]
    env: tuple[str, ...]
    context_key: str
    help: str
    default: str | None = None


SOURCES = (
    Source(
        "endpoints",
        ("--etcd-endpoints", "--endpoints"),
        ("ETCD_ENDPOINTS", "ETCDCTL_ENDPOINTS"),
        "endpoints",
        "etcd endpoints, comma-separated (https://h:2379, http://h:2379 or h:2379)",
        "127.0.0.1:2379",
    ),
    Source(
        "prefix",
        ("--etcd-prefix", "--prefix"),
        ("ETCD_PREFIX",),
        "prefix",
        "key prefix of all controller data",
        "/lab-resource-manager",
    ),
    Source(
        "cacert",
        ("--etcd-ca-cert", "--cacert"),
        ("ETCD_CA_CERT", "ETCDCTL_CACERT"),
        "cacert",
        "CA bundle to verify etcd's certificate",
    ),
    Source(
        "cert",
        ("--etcd-cert", "--cert"),
        ("ETCD_CERT", "ETCDCTL_CERT"),
        "cert",
        "client certificate (mutual TLS)",
    ),
    Source(
        "key",
        ("--etcd-key", "--key"),
        ("ETCD_KEY", "ETCDCTL_KEY"),
        "key",
        "client private key (mutual TLS)",
    ),
    Source(
        "username",
        ("--etcd-username", "--user"),
        ("ETCD_USERNAME", "ETCDCTL_USER"),
        "username",
        "etcd user; etcdctl's `user:password` form is accepted",
    ),
    Source(
        "password",
        ("--etcd-password", "--password"),
        ("ETCD_PASSWORD", "ETCDCTL_PASSWORD"),
        "password",
        "etcd password; as a flag it is visible in ps: give it in a password file instead",
    ),
    Source(
        "password_file",
        ("--etcd-password-file",),
        ("ETCD_PASSWORD_FILE",),
        "password-file",
        "file holding the etcd password (a trailing newline is dropped)",
    ),
    Source(
        "timeout",
        ("--etcd-timeout", "--command-timeout"),
        ("ETCD_TIMEOUT", "ETCDCTL_COMMAND_TIMEOUT"),
        "timeout",
        "deadline of one etcd call: seconds, or a duration such as 5s",
        "5",
    ),
)


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "etcd connection (flag > environment > context > default; see `labctl config`)"
    )
    group.add_argument(
        "--context", help=f"the context of the labctl config to use; env {CONTEXT_ENV}"
    )
    for s in SOURCES:
        default = f" (default {s.default})" if s.default else ""
        group.add_argument(
            *s.flags,
            dest=f"conn_{s.attr}",
            default=None,
            metavar=s.attr.upper(),
            help=f"{s.help}; env {' or '.join(s.env)}{default}",
        )


@dataclass
class Session:
    """One command's etcd client, prefix, default namespace and repositories."""

    client: EtcdClient
    root: str
    namespace: str
    repositories: RepositorySet
    context: str | None


def resolve_settings(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> tuple[dict[str, str | None], str | None]:
    """Every setting's value (as text) and the name of the context that was used."""
    env = os.environ if environ is None else environ
    name = getattr(args, "context", None) or env.get(CONTEXT_ENV) or None
    contexts = load_contexts()
    name = name or contexts.current
    context: Mapping[str, str] = contexts.context(name) if name else {}
    values: dict[str, str | None] = {}
    for s in SOURCES:
        value = getattr(args, f"conn_{s.attr}", None)
        for var in s.env:
            if value is None:
                value = env.get(var) or None
        values[s.attr] = value or context.get(s.context_key) or s.default
    if not values["endpoints"] or values["endpoints"] == SOURCES[0].default:
        host = env.get("ETCD_HOST")  # the single-host form `labctl run` also accepts
        if host and not (getattr(args, "conn_endpoints", None) or env.get("ETCD_ENDPOINTS")):
            bracketed = f"[{host}]" if ":" in host and not host.startswith("[") else host
            values["endpoints"] = f"{bracketed}:{env.get('ETCD_PORT') or 2379}"
    user = values["username"]
    if user and ":" in user:  # etcdctl's --user user:password
        values["username"], _, password = user.partition(":")
        values["password"] = values["password"] or password
    values["namespace"] = context.get("namespace")
    return values, name


def parse_timeout(text: str) -> float:
    try:
        seconds = (
            float(text[:-1]) * (60 if text.endswith("m") else 1)
            if text[-1:]
            in (
                "s",
                "m",
            )
            else float(text)
        )
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise CliError(f"etcd timeout {text!r}: expected seconds or a duration such as 5s")
    return seconds


def _password(values: Mapping[str, str | None]) -> str | None:
    path = values["password_file"]
    if not path:
        return values["password"]
    if values["password"]:
        raise CliError(
            "a password and a password file are both given: give the password once "
            "(the file keeps it out of ps and the environment)"
        )
    where = f"password file {path!r}"
    try:
        with open(path, encoding="utf-8") as f:
            password = f.read().rstrip("\r\n")
    except OSError as exc:
        raise CliError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError:  # its message would quote bytes of the password
        raise CliError(f"{where}: not UTF-8 text") from None
    if not password:
        raise CliError(f"{where}: the file is empty")
    return password


def open_session(args: argparse.Namespace) -> Session:
    values, context = resolve_settings(args)
    password = _password(values)
    if bool(values["username"]) != bool(password):
        raise CliError("an etcd user and password must be given together")
    if bool(values["cert"]) != bool(values["key"]):
        raise CliError("a client certificate and key must be given together (mutual TLS)")
    timeout = parse_timeout(str(values["timeout"]))
    try:
        client = connect(
            str(values["endpoints"]),
            ca_cert=values["cacert"],
            cert=values["cert"],
            key=values["key"],
            username=values["username"],
            password=password,
            timeout=timeout,
            pool_size=4,
        )
    except InvalidSettings as exc:
        raise CliError(f"etcd connection: {exc}") from None
    root = str(values["prefix"])
    namespace = getattr(args, "namespace", None) or values["namespace"] or DEFAULT_NAMESPACE
    return Session(client, root, namespace, repositories(client, root), context)


def default_namespace(args: argparse.Namespace) -> str | None:
    """`-n`, else the context's namespace (None: the manifest's own, else `default`)."""
    return getattr(args, "namespace", None) or resolve_settings(args)[0]["namespace"]


def public_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """For display: the password itself never, only whether it is set."""
    return {k: ("(set)" if k == "password" and v else v) for k, v in values.items()}

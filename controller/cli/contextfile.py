"""labctl's config file: named contexts, like kubeconfig, for etcd instead of an API server.

`$LABCTL_CONFIG`, default `~/.config/labctl/config.yaml`:

    current-context: prod
    contexts:
    - name: prod
      endpoints: https://etcd-0:2379,https://etcd-1:2379
      prefix: /lab-resource-manager
      cacert: /etc/labctl/ca.pem
      cert: /etc/labctl/client.pem
      key: /etc/labctl/client-key.pem
      username: operator
      password-file: /etc/labctl/password
      namespace: emea

A context holds paths and names, never a secret itself: the password stays in its file
(`password` is accepted for parity with etcdctl, and always shown redacted). A missing file
is an empty config; a malformed one is one `error:` line naming the file and the entry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from controller.cli.errors import CliError
from controller.resources.names import shorten

CONFIG_ENV = "LABCTL_CONFIG"
CONTEXT_ENV = "LABCTL_CONTEXT"
DEFAULT_PATH = Path("~/.config/labctl/config.yaml")
REDACTED = "REDACTED"

CONTEXT_KEYS = (
    "endpoints",
    "prefix",
    "cacert",
    "cert",
    "key",
    "username",
    "password-file",
    "password",
    "namespace",
    "timeout",
)
SECRET_KEYS = frozenset({"password"})


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_PATH).expanduser()


@dataclass
class ContextFile:
    """The parsed file; `raw` keeps what we do not interpret so `use-context` loses nothing."""

    path: Path
    current: str | None = None
    contexts: dict[str, dict[str, str]] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    def context(self, name: str) -> dict[str, str]:
        try:
            return self.contexts[name]
        except KeyError:
            known = ", ".join(sorted(self.contexts)) or "none defined"
            raise CliError(
                f"context {shorten(name)} not found in {self.path} (contexts: {known})"
            ) from None

    def save(self) -> None:
        doc = dict(self.raw)
        doc["current-context"] = self.current
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        tmp.replace(self.path)  # a crash mid-write never leaves half a config


def load_contexts(path: Path | None = None) -> ContextFile:
    path = path or config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ContextFile(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: cannot read the labctl config: {exc}") from None
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise CliError(f"{path}: not valid YAML{at}") from None
    if not isinstance(doc, dict):
        raise CliError(f"{path}: expected a mapping with current-context and contexts")
    entries = doc.get("contexts") or []
    if not isinstance(entries, list):
        raise CliError(f"{path}: contexts must be a list of named contexts")
    contexts: dict[str, dict[str, str]] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise CliError(f"{path}: contexts[{index}] needs a name")
        unknown = sorted(set(entry) - {"name", *CONTEXT_KEYS})
        if unknown:
            raise CliError(
                f"{path}: context {entry['name']!r}: unknown key(s) {', '.join(unknown)} "
                f"(known: {', '.join(CONTEXT_KEYS)})"
            )
        contexts[entry["name"]] = {
            k: str(v) for k, v in entry.items() if k != "name" and v is not None
        }
    current = doc.get("current-context")
    return ContextFile(path, str(current) if current else None, contexts, doc)


def redacted(doc: dict[str, Any]) -> dict[str, Any]:
    """The file as `config view` shows it: every secret value replaced."""
    out = dict(doc)
    contexts = out.get("contexts")
    if isinstance(contexts, list):
        out["contexts"] = [
            {k: (REDACTED if k in SECRET_KEYS else v) for k, v in c.items()}
            if isinstance(c, dict)
            else c
            for c in contexts
        ]
    return out

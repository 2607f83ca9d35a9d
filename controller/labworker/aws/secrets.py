"""License tokens: `spec.host.licenseSecretRef` names a file under LAB_SECRETS_DIR.

Two layouts of a mounted Kubernetes Secret (or docker secret) are accepted, so either
mount works without renaming keys:

- `<LAB_SECRETS_DIR>/<ref>`: one Secret mounted at LAB_SECRETS_DIR, each key a file
  (`kubectl create secret generic lab-licenses --from-literal=ccna-license=...`);
- `<LAB_SECRETS_DIR>/<ref>/token`: one Secret per license, each mounted at its own
  directory with the token under the key `token`.

The file is read at the moment of use and the token returned to the caller, never kept:
a rotated Secret is picked up by the next license attempt, and no token sits in memory,
status, logs or errors. Only the ref and the paths looked at appear in messages.

A ref is a plain name, as Kubernetes Secret keys are (`[-._a-zA-Z0-9]+`); anything with a
path separator or `..` is refused, so a worker's spec cannot make the controller read
files outside LAB_SECRETS_DIR.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from controller.labworker.provider import LicenseSecretMissing, ProviderFatalError

DIRECTORY_KEY: Final = "token"
_PLAIN_NAME: Final = re.compile(r"[-._a-zA-Z0-9]+")


def check_ref(ref: str) -> str:
    """The ref, if it is a plain name; ProviderFatalError (fix the spec) otherwise."""
    if not _PLAIN_NAME.fullmatch(ref) or ref in (".", "..") or ".." in ref:
        raise ProviderFatalError(
            f"spec.host.licenseSecretRef {ref!r} is not a plain secret name (letters, digits, "
            "'-', '_' and '.', no '/' or '..')"
        )
    return ref


def read_license_token(secrets_dir: str | Path | None, ref: str | None) -> str:
    """The token the ref names, read now. LicenseSecretMissing when there is none."""
    if not ref:
        raise LicenseSecretMissing("spec.host.licenseSecretRef is not set")
    check_ref(ref)
    if secrets_dir is None or not str(secrets_dir).strip():
        raise LicenseSecretMissing(
            f"license secret {ref!r} cannot be read: LAB_SECRETS_DIR is not set"
        )
    base = Path(secrets_dir) / ref
    candidates = (base / DIRECTORY_KEY, base) if base.is_dir() else (base,)
    for path in candidates:
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            continue
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise LicenseSecretMissing(
                f"license secret {ref!r}: cannot read {path}: {reason}"
            ) from None
        if not token:
            raise LicenseSecretMissing(f"license secret {ref!r}: {path} is empty")
        return token
    raise LicenseSecretMissing(
        f"license secret {ref!r} not found: neither {base} nor {base / DIRECTORY_KEY} exists"
    )

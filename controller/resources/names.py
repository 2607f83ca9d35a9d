"""Kubernetes naming rules shared by metadata validation and label selectors.

Each check returns an operator-facing message (or None when the value is valid) instead of
raising, so pydantic validators and the selector parser can wrap the same wording in their
own error types. The rules mirror k8s.io/apimachinery/pkg/util/validation so manifests that
work in Kubernetes work here, and names stay safe to embed in etcd keys (no '/').
"""

from __future__ import annotations

import re
from functools import lru_cache

DNS1123_LABEL_MAX_LENGTH = 63
DNS1123_SUBDOMAIN_MAX_LENGTH = 253
QUALIFIED_NAME_MAX_LENGTH = 63
LABEL_VALUE_MAX_LENGTH = 63

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")

# Exported for JSON Schema so editors can flag bad names before `labctl apply` does.
DNS1123_LABEL_PATTERN = "^" + _DNS1123_LABEL.pattern + "$"
DNS1123_SUBDOMAIN_PATTERN = "^" + _DNS1123_SUBDOMAIN.pattern + "$"


def shorten(text: str, limit: int = 80) -> str:
    """repr() of `text`, cut to about `limit` characters: a 1 MiB label key must not become
    a 1 MiB error message."""
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit]) + f"... ({len(text)} characters)"


def dns1123_label_error(value: str) -> str | None:
    """Namespaces are DNS-1123 labels: they become one segment of the etcd key."""
    if len(value) > DNS1123_LABEL_MAX_LENGTH:
        return (
            f"{shorten(value)} is {len(value)} characters long; a DNS-1123 label allows at most "
            f"{DNS1123_LABEL_MAX_LENGTH}"
        )
    if not _DNS1123_LABEL.fullmatch(value):
        return (
            f"{shorten(value)} is not a valid DNS-1123 label: use lowercase letters, digits and '-', "
            "starting and ending with a letter or digit (e.g. 'emea', 'lab-01')"
        )
    return None


def dns1123_subdomain_error(value: str) -> str | None:
    """Object names are DNS-1123 subdomains, as for most Kubernetes kinds."""
    if len(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        return (
            f"{shorten(value)} is {len(value)} characters long; a DNS-1123 subdomain allows at most "
            f"{DNS1123_SUBDOMAIN_MAX_LENGTH}"
        )
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        return (
            f"{shorten(value)} is not a valid DNS-1123 subdomain: use lowercase letters, digits, '-' "
            "and '.', starting and ending with a letter or digit (e.g. 'ccna-worker-01')"
        )
    return None


LONGEST_LABEL_KEY = DNS1123_SUBDOMAIN_MAX_LENGTH + 1 + QUALIFIED_NAME_MAX_LENGTH

MEMO_SIZE = 4096
"""Label keys, label values and finalizers repeat across a fleet (a few dozen distinct ones
in 100k objects), and a listing validates every one of them: their checks are memoized, for
strings short enough to be valid only, so a huge invalid one is never kept."""


def label_key_error(key: str) -> str | None:
    """Label keys (and finalizers) are qualified names: optional DNS prefix, '/', name."""
    if len(key) > LONGEST_LABEL_KEY:
        return _label_key_error(key)
    return _label_key_error_memo(key)


def label_value_error(value: str) -> str | None:
    """Label values may be empty; otherwise they follow the qualified-name character rules."""
    if len(value) > LABEL_VALUE_MAX_LENGTH:
        return _label_value_error(value)
    return _label_value_error_memo(value)


def _label_key_error(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            return f"label key {shorten(key)} has an empty prefix before '/'"
        prefix_error = dns1123_subdomain_error(prefix)
        if prefix_error is not None:
            return f"label key {shorten(key)} has an invalid prefix: {prefix_error}"
    if not name:
        return f"label key {shorten(key)} has an empty name"
    if len(name) > QUALIFIED_NAME_MAX_LENGTH:
        return (
            f"label key {shorten(key)}: the name part is {len(name)} characters long; at most "
            f"{QUALIFIED_NAME_MAX_LENGTH} are allowed"
        )
    if not _QUALIFIED_NAME.fullmatch(name):
        return (
            f"label key {shorten(key)} is invalid: the name part must be letters, digits, '-', '_' "
            "or '.', starting and ending with a letter or digit, optionally after a DNS "
            "prefix and '/' (e.g. 'tier', 'example.com/tier')"
        )
    return None


def _label_value_error(value: str) -> str | None:
    if not value:
        return None
    if len(value) > LABEL_VALUE_MAX_LENGTH:
        return (
            f"label value {shorten(value)} is {len(value)} characters long; at most "
            f"{LABEL_VALUE_MAX_LENGTH} are allowed"
        )
    if not _QUALIFIED_NAME.fullmatch(value):
        return (
            f"label value {shorten(value)} is invalid: use letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit, or leave it empty"
        )
    return None


_label_key_error_memo = lru_cache(maxsize=MEMO_SIZE)(_label_key_error)
_label_value_error_memo = lru_cache(maxsize=MEMO_SIZE)(_label_value_error)

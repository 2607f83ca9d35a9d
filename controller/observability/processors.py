"""structlog processors shared by every log line (structlog's own and stdlib's).

They are plain ``(logger, method_name, event_dict) -> event_dict`` callables so they can
sit both in structlog's chain and in ``ProcessorFormatter``'s ``foreign_pre_chain``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from structlog.typing import EventDict, WrappedLogger

REDACTED = "[REDACTED]"

# Compared against the key lower-cased with "_" and "-" removed, so "licenseToken",
# "license_token", "private-key" and "privateKey" all hit. Over-redaction (e.g.
# "licenseSecretRef") is the price of never leaking a credential into a log store.
_SECRET_KEY_PARTS = (
    "password",
    "passwd",
    "secret",
    "token",
    "privatekey",
    "authorization",
    "apikey",
    "credential",
)

# Keys the logging machinery owns; their values are not user data (and ``exc_info`` must
# stay a real exception tuple until it is formatted and then redacted as text).
_MACHINERY_KEYS = frozenset({"exc_info", "stack_info", "_record", "_from_structlog"})

_PEM_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"
    r"(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY-----|.*)",  # a truncated block is masked to the end
    re.DOTALL,
)
_KEY_VALUE_SECRET = re.compile(
    r"(?P<key>\b[\w.-]*(?:password|passwd|secret|token|api[_-]?key|private[_-]?key"
    r"|authorization|credentials?)[\w.-]*)"
    r"(?P<sep>[\"']?\s*[=:]\s*)"
    r"(?!(?:(?:bearer|basic)\s+)?\[REDACTED)"  # already masked: keep redaction idempotent
    r"(?:(?P<scheme>bearer|basic)\s+)?"
    r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s,;&\"'}\])]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(
    r"\b(?P<scheme>bearer|basic)\s+(?!\[REDACTED\])[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE
)
_URL_USERINFO = re.compile(r"(?P<prefix>\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@", re.IGNORECASE)


def is_secret_key(key: str) -> bool:
    """Whether a field named ``key`` is presumed to carry a credential."""
    normalized = key.lower().replace("_", "").replace("-", "")
    return any(part in normalized for part in _SECRET_KEY_PARTS)


def _mask_key_value(match: re.Match[str]) -> str:
    scheme = f"{match['scheme']} " if match["scheme"] else ""
    return f"{match['key']}{match['sep']}{scheme}{REDACTED}"


def redact_text(text: str) -> str:
    """Mask credentials embedded in free text (messages, exception text, repr of objects)."""
    if not text:
        return text
    text = _PEM_PRIVATE_KEY.sub("[REDACTED PRIVATE KEY]", text)
    text = _KEY_VALUE_SECRET.sub(_mask_key_value, text)
    text = _BEARER.sub(lambda m: f"{m['scheme']} {REDACTED}", text)
    return _URL_USERINFO.sub(lambda m: f"{m['prefix']}{REDACTED}@", text)


_PLAIN_TYPES = (int, float, bool, type(None), bytes)


def redact_value(value: Any) -> Any:
    """Redact ``value`` recursively; containers are copied, never mutated in place."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, _PLAIN_TYPES):
        return value
    if isinstance(value, Mapping):
        return {
            k: REDACTED if isinstance(k, str) and is_secret_key(k) else redact_value(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        items = [redact_value(v) for v in value]
        # A namedtuple cannot be rebuilt from one iterable; a list renders the same.
        return items if isinstance(value, list) or hasattr(value, "_fields") else type(value)(items)
    # Arbitrary objects (exceptions, models) are rendered with str()/repr() later; only
    # replace them when their text would actually leak something.
    text = str(value)
    masked = redact_text(text)
    return value if masked == text else masked


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Replace secret-looking fields and secret-looking text with ``[REDACTED]``.

    Runs last before rendering, after exceptions have been formatted to text, so the
    traceback message is covered too.
    """
    for key, value in list(event_dict.items()):
        if key in _MACHINERY_KEYS:
            continue
        event_dict[key] = REDACTED if is_secret_key(key) else redact_value(value)
    return event_dict


def add_trace_context(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Add the current span's ids so a log line can be joined to its trace."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(context.span_id, "016x"))
    return event_dict

"""The one logging configuration of the process: structlog in front, stdlib underneath.

structlog loggers hand their event dict to stdlib logging (``wrap_for_formatter``); one
root handler with a ``ProcessorFormatter`` renders both those and plain stdlib records
(etcd3, urllib3, opentelemetry, ...). Redaction and rendering happen only in that
formatter, so a library's log line cannot bypass them.
"""

from __future__ import annotations

import logging
import sys
from typing import IO, Any

import structlog
from structlog.typing import EventDict, Processor

from controller.observability.processors import add_trace_context, redact_secrets

LOG_FORMATS = ("json", "console", "auto")

# Marks the handler we install so a second configure_logging() replaces it instead of
# stacking a duplicate (which would print every line twice).
_HANDLER_MARK = "_lab_controller_log_handler"


def _parse_level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    resolved = logging.getLevelName(level.strip().upper())
    if not isinstance(resolved, int):
        raise ValueError(
            f"unknown log level {level!r}: use one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
        )
    return resolved


def _wants_json(fmt: str | None, stream: IO[str]) -> bool:
    choice = (fmt or "auto").strip().lower()
    if choice not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: use one of {', '.join(LOG_FORMATS)}")
    if choice == "auto":
        return not _is_tty(stream)
    return choice == "json"


def _is_tty(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except ValueError:  # closed stream
        return False


def _keep_sentence(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """Runs before ExtraAdder: a stdlib line's sentence, before a stable name replaces it."""
    if "_record" in event_dict and not event_dict.get("_from_structlog"):
        event_dict.setdefault("message", event_dict.get("event"))
    return event_dict


def _stable_event_name(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """A stdlib call naming its line (``extra={"event": "reconcile_failed", ...}``) keeps
    its human sentence as ``message``: ``event`` is what an operator filters or alerts on,
    ``message`` what they read. Lines that name nothing keep the sentence as ``event``."""
    if event_dict.get("message") == event_dict.get("event"):
        del event_dict["message"]
    return event_dict


def _shared_processors() -> list[Processor]:
    """Enrichment applied to every record, whichever API produced it."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        _keep_sentence,
        structlog.stdlib.ExtraAdder(),
        _stable_event_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        add_trace_context,
    ]


_LEADING_KEYS = ("timestamp", "level", "logger", "event", "message")


def _lead_with_standard_keys(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """Put timestamp/level/logger/event/message first so raw JSON lines read left to right."""
    ordered = {key: event_dict.pop(key) for key in _LEADING_KEYS if key in event_dict}
    ordered.update(event_dict)
    return ordered


def _renderers(json_output: bool, colors: bool) -> list[Processor]:
    if json_output:
        return [_lead_with_standard_keys, structlog.processors.JSONRenderer(default=str)]
    return [_sentence_first, structlog.dev.ConsoleRenderer(colors=colors)]


def _sentence_first(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """On a terminal a person reads the sentence; the stable name follows as a key."""
    if "message" in event_dict:
        event_dict["event_name"] = event_dict["event"]
        event_dict["event"] = event_dict.pop("message")
    return event_dict


def configure_logging(
    level: str | int = "INFO", fmt: str | None = None, stream: IO[str] | None = None
) -> None:
    """Route all logging of the process through one structlog pipeline.

    ``fmt``: ``"json"``, ``"console"`` or ``None``/``"auto"`` (JSON unless ``stream`` is a
    terminal). Console output is coloured only on a terminal, so redirected console logs
    carry no escape codes. Safe to call again (e.g. after reading flags): the previous
    handler is replaced, never duplicated.
    """
    out: IO[str] = stream if stream is not None else sys.stderr
    numeric_level = _parse_level(level)
    json_output = _wants_json(fmt, out)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Loggers created at import time (before this runs) must still pick up this
        # configuration, so bound loggers are not frozen on first use.
        cache_logger_on_first_use=False,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Exceptions become text *before* redaction so their messages are masked too.
            structlog.processors.format_exc_info,
            redact_secrets,
            *_renderers(json_output, colors=_is_tty(out)),
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric_level)
    for chatty in _PER_REQUEST_LOGGERS:
        # One INFO line per HTTP request (httpx) or credential lookup (botocore) would drown
        # the controller's own lines; their warnings and errors still come through.
        logging.getLogger(chatty).setLevel(max(numeric_level, logging.WARNING))


_PER_REQUEST_LOGGERS = ("httpx", "httpcore", "botocore.credentials")


def get_logger(name: str | None = None, **initial_context: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger named ``name`` (use ``__name__``), optionally pre-bound.

    The logger is a lazy proxy: it is safe to create at import time, before
    configure_logging() runs, and follows any later reconfiguration.
    """
    return structlog.stdlib.get_logger(name, **initial_context)

"""structlog set-up: JSON lines when stdout is not a terminal, readable console output when it is."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_SECRET_KEYS = frozenset({"password", "passwd", "secret"})


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Never let a password reach a log line, whatever a caller passes."""
    for key in _SECRET_KEYS & event.keys():
        event[key] = "***"
    return event


def _orjson_dumps(obj: Any, default: Any = None) -> bytes:
    return orjson.dumps(obj, default=default or str)


def _json_str(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


# True while the level is debug: a per-message debug call site checks it first (a filtered structlog call
# through a module's lazy logger still costs ~2 µs; loggers are not cached so that SIGHUP can change level)
DEBUG = False


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog for the whole process (idempotent; SIGHUP calls it again for a new level)."""
    global DEBUG
    DEBUG = level == "debug"
    as_json = fmt == "json" or (fmt == "auto" and not sys.stdout.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    if as_json:
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer(_orjson_dumps)]
        factory: Any = structlog.BytesLoggerFactory(sys.stdout.buffer)
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty()))
        factory = structlog.PrintLoggerFactory(sys.stdout)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
    # what libraries log through the standard library (asyncio, paho, asyncpg) comes out as the same
    # structlog events (JSON lines when not on a terminal), at warning and above
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.JSONRenderer(_json_str) if as_json else processors[-1]],
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *processors[:-1]],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(logging.WARNING, _LEVELS.get(level, logging.INFO)))

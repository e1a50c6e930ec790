"""structlog set-up: JSON lines when stdout is not a terminal, readable console output when it is.

Loggers bound once and kept (an SMPP session binds ``smsc`` and ``session`` when it is created) must follow a
later change of format or level (SIGHUP), so the processor chain and the output are fixed objects that read the
current settings on every line: one format at a time, whenever a logger was bound.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO, cast

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


class _Settings:
    """What every line reads when it is written (changed by :func:`configure`)."""

    as_json = True
    level = logging.INFO
    stream: TextIO = sys.stdout
    console: structlog.dev.ConsoleRenderer | None = None    # set when not as_json


_NOW = _Settings()
_JSON_RENDER = structlog.processors.JSONRenderer(_orjson_dumps)
_JSON_RENDER_STR = structlog.processors.JSONRenderer(_json_str)
_EXC_INFO = structlog.processors.format_exc_info


def _level_gate(_: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Drop what is below the current level (a logger bound before a level change has the old filter)."""
    if _LEVELS.get(method, logging.INFO) < _NOW.level:
        raise structlog.DropEvent
    return event


def _render(logger: Any, method: str, event: MutableMapping[str, Any]) -> bytes | str:
    if _NOW.as_json:
        return _JSON_RENDER(logger, method, _EXC_INFO(logger, method, event))
    return cast(structlog.dev.ConsoleRenderer, _NOW.console)(logger, method, event)   # set when not as_json


def _render_str(logger: Any, method: str, event: MutableMapping[str, Any]) -> str:
    """For records of the standard library's logging (ProcessorFormatter wants a str)."""
    if _NOW.as_json:
        return cast(str, _JSON_RENDER_STR(logger, method, event))   # its serializer returns str
    return cast(structlog.dev.ConsoleRenderer, _NOW.console)(logger, method, event)


def _write(stream: TextIO, line: bytes | str) -> None:
    """One line to the current output; a hung-up terminal (EIO: the terminal was closed while the process goes
    on) is replaced by /dev/null instead of failing the caller, and a line that cannot be written is dropped."""
    try:
        if isinstance(line, bytes):
            stream.buffer.write(line + b"\n")
        else:
            stream.write(line + "\n")
        stream.flush()
    except OSError as exc:
        if exc.errno == errno.EIO:
            detach_terminal()


def detach_terminal() -> None:
    """Point stdout and stderr at /dev/null when they are a terminal that is gone (hung up)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            fd = stream.fileno()
        except (OSError, ValueError):
            continue
        if _terminal_gone(fd):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)


def _terminal_gone(fd: int) -> bool:
    try:
        os.write(fd, b"")
    except OSError as exc:
        return exc.errno == errno.EIO
    try:
        os.tcgetpgrp(fd)          # on a hung-up terminal: EIO (ENOTTY: not a terminal, which is fine)
    except OSError as exc:
        return exc.errno == errno.EIO
    return False


class _Sink:
    """The logger structlog calls with the rendered line: writes to the current stream."""

    def msg(self, line: bytes | str) -> None:
        _write(_NOW.stream, line)

    log = debug = info = warn = warning = err = error = critical = exception = fatal = failure = msg


_SINK = _Sink()


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog for the whole process (idempotent; SIGHUP calls it again for a new level or format).

    ``stream`` is where lines go (default stdout; commands whose stdout is their output pass stderr)."""
    global DEBUG
    DEBUG = level == "debug"
    out = stream or sys.stdout
    _NOW.stream = out
    _NOW.level = _LEVELS.get(level, logging.INFO)
    _NOW.as_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    _NOW.console = None if _NOW.as_json else structlog.dev.ConsoleRenderer(colors=out.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _level_gate,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
        _render,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_NOW.level),
        logger_factory=lambda *_: _SINK,
        cache_logger_on_first_use=False,
    )
    # what libraries log through the standard library (asyncio, paho, asyncpg) comes out as the same
    # structlog events (JSON lines when not on a terminal), at warning and above
    handler = logging.StreamHandler(out)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _render_str],
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *processors[:2], *processors[3:-1]],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(logging.WARNING, _NOW.level))


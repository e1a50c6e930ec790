"""The engine's small HTTP endpoint: GET /metrics (Prometheus) and GET /healthz.

A plain ``asyncio.start_server`` handler: two read-only routes do not justify a web framework, and
prometheus-client's own ``start_http_server`` would run in a thread that cannot look at the
engine's event-loop state safely. HTTP/1.0-style: one request per connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import structlog
from prometheus_client import CONTENT_TYPE_LATEST

from .view import EngineView

log = structlog.get_logger(__name__)

MAX_HEADER_BYTES = 8192
READ_TIMEOUT_S = 5.0


def health(engine: EngineView) -> tuple[bool, dict[str, Any]]:
    """(healthy, document): healthy when MQTT is connected and every SMSC has at least one bind up."""
    reasons: list[str] = []
    connected = engine.mqtt_connected
    if not connected:
        reasons.append(f"mqtt not connected ({engine.mqtt_url})")
    smsc: dict[str, Any] = {}
    for name, c in engine.smscs.items():
        bound = c.bound_sessions
        smsc[name] = {"bound": bound, "configured": c.configured_sessions}
        if bound == 0:
            reasons.append(f"smsc {name}: no session bound")
    if engine.store_failed:
        reasons.append("store: the last commit failed")
    ok = not reasons
    doc: dict[str, Any] = {
        "status": "ok" if ok else "unhealthy", "instance": engine.instance,
        "mqtt": connected, "smsc": smsc, "backlog": engine.backlog,
    }
    if reasons:
        doc["reasons"] = reasons
    return ok, doc


def _response(status: str, body: bytes, content_type: str) -> bytes:
    head = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n")
    return head.encode() + body


def route(engine: EngineView, scrape: Callable[[], bytes], method: str, path: str) -> bytes:
    """The response to one request: ``scrape`` renders /metrics (Metrics.scrape)."""
    path = path.split("?", 1)[0]
    if method not in ("GET", "HEAD"):
        return _response("405 Method Not Allowed", b"only GET\n", "text/plain")
    if path == "/metrics":
        return _response("200 OK", scrape(), CONTENT_TYPE_LATEST)
    if path == "/healthz":
        ok, doc = health(engine)
        return _response("200 OK" if ok else "503 Service Unavailable", orjson.dumps(doc) + b"\n",
                         "application/json")
    return _response("404 Not Found", b"try /metrics or /healthz\n", "text/plain")


async def serve(engine: EngineView, scrape: Callable[[], bytes], host: str, port: int) -> asyncio.Server:
    """Start serving; the caller closes the returned server."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(parts) != 3:
                writer.write(_response("400 Bad Request", b"bad request line\n", "text/plain"))
            else:
                out = route(engine, scrape, parts[0], parts[1])
                if parts[0] == "HEAD":
                    out = out.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
                writer.write(out)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        except Exception as exc:  # a bug in a handler must not kill the server
            log.error("http_handler_failed", error=repr(exc))
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port, limit=MAX_HEADER_BYTES)
    log.info("http_listening", address=f"{host}:{port}", paths=["/metrics", "/healthz"])
    return server

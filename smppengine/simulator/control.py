"""A small HTTP/1.1 JSON control API for the SMSC simulator (stdlib only, asyncio streams).

Endpoints (see docs/simulator.md):

* ``GET  /stats``            counters (submits, ok, throttled, duplicates, binds, bound_sessions, ...)
* ``GET  /knobs``            current knob values
* ``GET  /submits?since=N&limit=M``  submit records N.. (short_message hex)
* ``POST /knobs``            set knobs: tps_limit, response_delay, refuse_binds, receipt_stat, ...
* ``POST /drop``             drop every connection (RST)
* ``POST /unbind``           unbind every session from the SMSC side
* ``POST /mo``               inject a mobile-originated message {"from", "to", "text", "data_coding"}

One request per connection (the response carries ``Connection: close``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import structlog

from smppengine.simulator.mo import NoReceiverError
from smppengine.simulator.receipts import MESSAGE_STATES
from smppengine.simulator.server import Simulator

log = structlog.get_logger(__name__)

_MAX_BODY = 1 << 20
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
            413: "Payload Too Large", 500: "Internal Server Error", 504: "Gateway Timeout"}


class _HttpError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _num_or_none(body: dict[str, Any], key: str) -> float | None:
    v = body[key]
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
        raise _HttpError(400, f"{key}: expected a non-negative number or null")
    return float(v)


def _int(v: Any, key: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise _HttpError(400, f"{key}: expected a non-negative integer")
    return v


def apply_knobs(sim: Simulator, body: dict[str, Any]) -> None:
    """Apply a POST /knobs body. Every key is validated before anything changes."""
    known = {
        "tps_limit", "response_delay", "refuse_binds", "refuse_binds_status", "receipt_stat", "receipt_delay",
        "receipt_id_format", "receipt_tlvs", "fail_next", "fail_next_status", "fail_destination",
        "drop_responses", "receipt_before_resp", "enquire_link_s", "hold_responses",
    }
    unknown = sorted(set(body) - known)
    if unknown:
        raise _HttpError(400, f"unknown knob(s): {', '.join(unknown)}")
    actions: list[Any] = []
    if "tps_limit" in body:
        tps = _num_or_none(body, "tps_limit")
        actions.append(lambda: sim.set_tps_limit(tps))
    if "response_delay" in body:
        delay = _num_or_none(body, "response_delay") or 0.0
        actions.append(lambda: sim.set_response_delay(delay))
    if "refuse_binds" in body:
        refuse = body["refuse_binds"]
        if not isinstance(refuse, bool):
            raise _HttpError(400, "refuse_binds: expected true or false")
        status = _int(body.get("refuse_binds_status", 0x0E), "refuse_binds_status")
        actions.append(lambda: sim.refuse_binds(refuse, status))
    stat = body.get("receipt_stat")
    rdelay = _num_or_none(body, "receipt_delay") if "receipt_delay" in body else None
    rfmt = body.get("receipt_id_format")
    rtlvs = body.get("receipt_tlvs")
    if stat is not None or rdelay is not None or rfmt is not None or rtlvs is not None:
        if rtlvs is not None and not isinstance(rtlvs, bool):
            raise _HttpError(400, "receipt_tlvs: expected true or false")
        if stat is not None and stat not in MESSAGE_STATES:
            raise _HttpError(400, f"receipt_stat: one of {', '.join(sorted(MESSAGE_STATES))}")
        if rfmt is not None and rfmt not in ("same", "hex", "dec"):
            raise _HttpError(400, "receipt_id_format: one of same, hex, dec")
        actions.append(lambda: sim.set_receipt(stat=stat, delay=rdelay, id_format=rfmt, tlvs=rtlvs))
    if "fail_next" in body:
        n = _int(body["fail_next"], "fail_next")
        fstatus = _int(body.get("fail_next_status", 0x08), "fail_next_status")
        actions.append(lambda: sim.fail_next(n, fstatus))
    if "fail_destination" in body:
        fd = body["fail_destination"]
        if not isinstance(fd, dict) or not isinstance(fd.get("destination_addr"), str):
            raise _HttpError(400, 'fail_destination: expected {"destination_addr": str, "status": int}')
        fd_status = _int(fd.get("status", 0), "fail_destination.status")
        actions.append(lambda: sim.fail_destination(fd["destination_addr"], fd_status))
    if "drop_responses" in body:
        dn = _int(body["drop_responses"], "drop_responses")
        actions.append(lambda: sim.drop_responses(dn))
    if "receipt_before_resp" in body:
        rn = _int(body["receipt_before_resp"], "receipt_before_resp")
        actions.append(lambda: sim.receipt_before_resp(rn))
    if "enquire_link_s" in body:
        el = _num_or_none(body, "enquire_link_s")
        actions.append(lambda: setattr(sim, "enquire_link_s", el or 0.0))
    if "hold_responses" in body:
        actions.append(_hold_action(sim, body["hold_responses"]))
    for act in actions:
        act()


def _hold_action(sim: Simulator, spec: Any) -> Any:
    """``"hold_responses": {"unbind_at": 48, "release_after": 0.15, "close_after": 0.6}`` or ``null``."""
    if spec is None:
        return sim.clear_hold
    if not isinstance(spec, dict) or set(spec) - {"unbind_at", "release_after", "close_after", "unbind_resp_first"}:
        raise _HttpError(400, 'hold_responses: expected {"unbind_at": int, "release_after": s, "close_after": s, '
                              '"unbind_resp_first": bool} or null')
    first = spec.get("unbind_resp_first", False)
    if not isinstance(first, bool):
        raise _HttpError(400, "hold_responses.unbind_resp_first: expected true or false")
    unbind_at = _int(spec.get("unbind_at", 0), "hold_responses.unbind_at")
    times = []
    for key, default in (("release_after", 0.15), ("close_after", 0.6)):
        v = spec.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
            raise _HttpError(400, f"hold_responses.{key}: expected a non-negative number")
        times.append(float(v))
    return lambda: sim.hold_responses(unbind_at, times[0], times[1], first)


async def _route(sim: Simulator, method: str, target: str, body: bytes) -> tuple[int, Any]:
    url = urlsplit(target)
    path = url.path.rstrip("/") or "/"
    query = parse_qs(url.query)

    def json_body() -> dict[str, Any]:
        if not body:
            return {}
        try:
            data = json.loads(body)
        except ValueError:
            raise _HttpError(400, "body is not JSON") from None
        if not isinstance(data, dict):
            raise _HttpError(400, "body must be a JSON object")
        return data

    if path == "/stats":
        if method != "GET":
            raise _HttpError(405, "GET only")
        return 200, sim.stats()
    if path == "/submits":
        if method != "GET":
            raise _HttpError(405, "GET only")
        try:
            since = int(query.get("since", ["0"])[0])
            limit = int(query.get("limit", ["10000"])[0])
        except ValueError:
            raise _HttpError(400, "since and limit must be integers") from None
        since = max(0, since)
        records = sim.submits[since : since + max(0, limit)]
        return 200, {
            "since": since,
            "next": since + len(records),
            "total": len(sim.submits),
            "submits": [r.to_json() for r in records],
        }
    if path == "/knobs":
        if method == "GET":
            return 200, sim.knobs()
        if method != "POST":
            raise _HttpError(405, "GET or POST")
        apply_knobs(sim, json_body())
        return 200, sim.knobs()
    if path == "/drop":
        if method != "POST":
            raise _HttpError(405, "POST only")
        return 200, {"dropped": await sim.drop_connections()}
    if path == "/unbind":
        if method != "POST":
            raise _HttpError(405, "POST only")
        await sim.unbind_all()
        return 200, {"ok": True}
    if path == "/mo":
        if method != "POST":
            raise _HttpError(405, "POST only")
        data = json_body()
        src, dst, text = data.get("from"), data.get("to"), data.get("text")
        dc = data.get("data_coding", 0)
        if not (isinstance(src, str) and isinstance(dst, str) and isinstance(text, str)):
            raise _HttpError(400, 'expected {"from": str, "to": str, "text": str, "data_coding": int}')
        if isinstance(dc, bool) or not isinstance(dc, int):
            raise _HttpError(400, "data_coding: expected an integer")
        system_id = data.get("system_id")
        before = len(sim.deliver_resps)
        try:
            receiver_id = system_id if isinstance(system_id, str) else None
            await sim.inject_mo(src, dst, text, dc, system_id=receiver_id)
        except NoReceiverError as exc:
            raise _HttpError(409, str(exc)) from None
        except TimeoutError:
            raise _HttpError(504, "no deliver_sm_resp within 10 s") from None
        except ConnectionError as exc:
            raise _HttpError(409, str(exc)) from None
        status = sim.deliver_resps[-1][1] if len(sim.deliver_resps) > before else None
        return 200, {"ok": True, "deliver_sm_resp_status": status}
    raise _HttpError(404, f"no such endpoint: {path}")


async def _handle(sim: Simulator, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    status, payload = 500, {"error": "internal error"}
    try:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            return
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, _version = lines[0].split(" ", 2)
        except ValueError:
            status, payload = 400, {"error": "bad request line"}
        else:
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                length = -1
            if length < 0 or length > _MAX_BODY:
                status, payload = 413 if length > 0 else 400, {"error": "bad Content-Length"}
            else:
                body = await reader.readexactly(length) if length else b""
                try:
                    status, payload = await _route(sim, method.upper(), target, body)
                except _HttpError as exc:
                    status, payload = exc.status, {"error": exc.detail}
                except Exception as exc:
                    log.exception("sim_control_error", smsc=sim.name, error=str(exc))
                    status, payload = 500, {"error": str(exc)}
        data = json.dumps(payload).encode()
        writer.write(
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + data
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def start_control(sim: Simulator, host: str, port: int) -> asyncio.Server:
    """Start the control API for ``sim`` on host:port (0 = a free port; read it from the server's socket)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _handle(sim, reader, writer)

    server = await asyncio.start_server(handler, host, port)
    log.info("sim_control_listening", smsc=sim.name, host=host, port=server.sockets[0].getsockname()[1])
    return server

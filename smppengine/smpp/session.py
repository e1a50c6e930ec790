"""One SMPP session (one TCP connection, one bind) on asyncio streams.

The session owns the wire: bind, the reader loop, responses matched by
sequence number, enquire_link both ways, unbind, generic_nack for what it
cannot decode. It knows nothing of messages; the SMSC client above it decides
what to send and when.

Unbind, either side (SMPP 3.4 lets responses cross an unbind on the wire): once
an ``unbind`` is sent or received the session sends no new request, but keeps
reading and hands every response that still arrives to its request (and every
receipt to the handler). After the SMSC's ``unbind`` it reads until the SMSC
closes or ``response_timeout_s`` passes; after its own, until the unbind_resp and
every outstanding response came, the SMSC closes, or the unbind's time is up.
Only requests whose response never came end in :class:`SessionClosed`.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog

from ..config import SmscConfig
from . import pdu as P
from .status import status_name

log = structlog.get_logger(__name__)

BIND_COMMANDS = {"transceiver": "bind_transceiver", "transmitter": "bind_transmitter", "receiver": "bind_receiver"}
MAX_CONSECUTIVE_TIMEOUTS = 3
_SUBMIT_SM_ID = P.COMMAND_IDS["submit_sm"]


class SessionClosed(Exception):
    """The connection went away before the response came."""


class ResponseTimeout(Exception):
    """No response within response_timeout_s."""


class BindFailed(Exception):
    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(f"bind refused: {status_name(status)} (0x{status:08X})")


# The deliver_sm handler answers with the command_status at once (an int), with a future that resolves
# once what the PDU carried is committed (any result: 0; an exception: ESME_RSYSERR), or with a coroutine
# returning the status (run as a task). A future costs no task: the usual receipt takes that path.
DeliverHandler = Callable[["Session", P.Pdu], "int | asyncio.Future[Any] | Coroutine[Any, Any, int]"]


def tls_context(smsc: SmscConfig) -> ssl.SSLContext:
    """TLS towards an SMSC: the system's CAs or ``tls_ca_file``; ``tls_verify = false`` skips the check."""
    ctx = ssl.create_default_context(cafile=smsc.tls_ca_file or None)
    if not smsc.tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Session:
    def __init__(self, smsc: SmscConfig, session_id: str, mode: str, on_deliver: DeliverHandler | None,
                 on_change: Callable[[], None] | None = None,
                 on_slot_free: Callable[[], None] | None = None) -> None:
        self.smsc = smsc
        self.id = session_id
        self.mode = mode
        self.can_submit = mode in ("transceiver", "transmitter")
        self.window = smsc.window
        self.reserved = 0                      # submit slots taken (sent or about to be sent)
        self.bound = False
        self.closed = asyncio.Event()
        self.close_reason = ""
        self._on_deliver = on_deliver
        self._on_change = on_change or (lambda: None)
        self._on_slot_free = on_slot_free or self._on_change     # a submit ended: one window slot is free
        self._seq = 0
        # requests awaiting their response, in the order sent, with their deadline (loop time); one timer
        # (_sweep) watches the oldest instead of a timer per request
        self._pending: dict[int, tuple[asyncio.Future[P.Pdu], float]] = {}
        self._sweep: asyncio.TimerHandle | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._wbuf: list[bytes] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timeouts = 0
        self._last_rx = time.monotonic()
        self._log = log.bind(smsc=smsc.name, session=session_id)
        # "" while usable; "smsc" / "engine" once that side sent unbind: no new request goes out, responses
        # still arriving are used
        self.unbinding = ""
        self._idle: asyncio.Future[None] | None = None     # the engine's unbind waits for _pending to empty
        self._unbind_timer: asyncio.TimerHandle | None = None
        self._enquirer: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ state
    @property
    def free(self) -> int:
        return self.window - self.reserved if self.bound and self.can_submit else 0

    def _next_seq(self) -> int:
        self._seq = P.next_seq(self._seq)
        return self._seq

    def _send(self, pdu: P.Pdu) -> None:
        """Queue a PDU for the socket. PDUs queued in one turn of the event loop leave in one write (one
        system call for a burst of submit_sm and deliver_sm_resp instead of one each), at the end of it."""
        if self._writer is None or self._writer.is_closing():
            raise SessionClosed(self.close_reason or "not connected")
        if not self._wbuf:
            asyncio.get_running_loop().call_soon(self._flush)
        self._wbuf.append(P.encode(pdu))

    def _flush(self) -> None:
        data, self._wbuf = self._wbuf, []
        w = self._writer
        if w is not None and not w.is_closing() and data:
            w.writelines(data)

    async def _drain(self) -> None:
        w = self._writer
        if w is not None and w.transport.get_write_buffer_size() > 65536:
            try:
                await w.drain()
            except (ConnectionError, OSError) as exc:
                self._close_now(f"write failed: {exc}")

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        """Connect and bind; raises BindFailed, OSError or ResponseTimeout."""
        s = self.smsc
        ctx = tls_context(s) if s.tls else None
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(s.host, s.port, ssl=ctx), timeout=s.response_timeout_s)
        self._spawn(self._read_loop())
        params = {"system_id": s.system_id, "password": s.password, "system_type": s.system_type,
                  "interface_version": 0x34, "addr_ton": 0, "addr_npi": 0, "address_range": ""}
        try:
            resp = await self.request(BIND_COMMANDS[self.mode], params)
        except BaseException:
            self._close_now("bind not answered")
            raise
        if resp.status != 0:
            self._close_now("bind refused")
            raise BindFailed(resp.status)
        self.bound = True
        self._log.info("session_bound", mode=self.mode, peer=resp.params.get("system_id"))
        self._enquirer = self._spawn(self._enquire_loop())
        self._on_change()

    async def unbind(self, timeout: float = 5.0) -> None:
        """The engine's graceful close: send unbind, keep reading until the unbind_resp and every outstanding
        response came (each is handed to its request), the SMSC closed, or ``timeout`` passed; then close."""
        if self.closed.is_set():
            return
        if self.unbinding:                  # the SMSC unbound first: its drain ends with its close (bounded)
            try:
                await asyncio.wait_for(self.closed.wait(), timeout)
            except TimeoutError:
                pass
            self._close_now(self._unbound_reason())
            return
        self._start_unbinding("engine")
        try:
            async with asyncio.timeout(timeout):
                await self._request("unbind", {})
                while self._pending and not self.closed.is_set():
                    self._idle = asyncio.get_running_loop().create_future()
                    await self._idle
        except (SessionClosed, ResponseTimeout, TimeoutError, OSError):
            pass
        finally:
            self._idle = None
        self._close_now(self._unbound_reason())

    def _start_unbinding(self, by: str) -> None:
        """No new request from now on (the client sees the session unbound); responses are still read."""
        self.unbinding = by
        self.bound = False
        if self._enquirer is not None and self._enquirer is not asyncio.current_task():
            self._enquirer.cancel()
        self._log.info("session_unbinding", by=by, outstanding=len(self._pending))
        self._on_change()

    def _unbound_reason(self) -> str:
        return "unbound by SMSC" if self.unbinding == "smsc" else "unbound by engine"

    def _peer_unbind(self) -> None:
        """The SMSC sent unbind (answered already): requests not yet written are not sent (their callers get
        SessionClosed: never sent, safe to send again); the ones written keep waiting for their responses
        until the SMSC closes, or response_timeout_s from now."""
        if self.unbinding:                  # both sides unbind at once: the engine's unbind wait goes on
            return
        unsent = self._take_unsent_submits()
        self._start_unbinding("smsc")
        for fut in unsent:
            if not fut.done():
                fut.set_exception(SessionClosed("not sent: unbind from SMSC"))
        self._unbind_timer = asyncio.get_running_loop().call_later(
            self.smsc.response_timeout_s, self._close_now,
            f"unbound by SMSC; it did not close within {self.smsc.response_timeout_s}s")

    def _take_unsent_submits(self) -> list[asyncio.Future[P.Pdu]]:
        """Remove the submit_sm still queued for the socket (not written yet) and their pending entries."""
        futs = []
        keep = []
        for frame in self._wbuf:
            if int.from_bytes(frame[4:8], "big") == _SUBMIT_SM_ID:
                entry = self._pending.pop(int.from_bytes(frame[12:16], "big"), None)
                if entry is not None:
                    futs.append(entry[0])
                    continue
            keep.append(frame)
        self._wbuf[:] = keep
        return futs

    def _close_now(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.close_reason = reason
        self.bound = False
        self.closed.set()
        if self._writer is not None:
            self._flush()              # what was queued (an unbind_resp, a generic_nack) still goes out
            self._writer.close()
        for fut, _ in self._pending.values():
            if not fut.done():
                fut.set_exception(SessionClosed(reason))
        self._pending.clear()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        if self._unbind_timer is not None:
            self._unbind_timer.cancel()
            self._unbind_timer = None
        self._wake_idle()
        current = asyncio.current_task()
        for t in self._tasks:
            if t is not current:
                t.cancel()
        self._log.info("session_closed", reason=reason)
        self._on_change()

    async def close(self, reason: str = "closed") -> None:
        self._close_now(reason)

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ requests
    async def request(self, command: str, params: dict[str, Any]) -> P.Pdu:
        """Send a request PDU and await its response (or generic_nack). Refused (SessionClosed, nothing
        sent) once an unbind was sent or received."""
        if self.unbinding:
            raise SessionClosed(f"unbinding ({self.unbinding}): {command} not sent")
        return await self._request(command, params)

    async def _request(self, command: str, params: dict[str, Any]) -> P.Pdu:
        seq = self._next_seq()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[P.Pdu] = loop.create_future()
        self._send(P.Pdu(command, seq, 0, params))
        deadline = loop.time() + self.smsc.response_timeout_s
        self._pending[seq] = (fut, deadline)
        if self._sweep is None:
            self._sweep = loop.call_at(deadline, self._sweep_timeouts)
        await self._drain()
        return await fut

    def _sweep_timeouts(self) -> None:
        """Time out the requests whose deadline passed (the oldest first: deadlines grow with the order of
        sending), then watch the oldest left."""
        self._sweep = None
        loop = asyncio.get_running_loop()
        now = loop.time() + 0.001       # timers may fire up to a clock tick early
        expired = []
        for seq, (_, deadline) in self._pending.items():
            if deadline > now:
                break
            expired.append(seq)
        for seq in expired:
            self._timeout(seq)
        if self._idle is not None and not self._pending:
            self._wake_idle()
        if self._pending and not self.closed.is_set():
            _, deadline = next(iter(self._pending.values()))
            self._sweep = loop.call_at(deadline, self._sweep_timeouts)

    def _timeout(self, seq: int) -> None:
        entry = self._pending.pop(seq, None)
        if entry is None or entry[0].done():
            return
        fut = entry[0]
        fut.set_exception(ResponseTimeout(f"no response within {self.smsc.response_timeout_s}s"))
        self._timeouts += 1
        self._log.warning("response_timeout", seq=seq, consecutive=self._timeouts)
        if self._timeouts >= MAX_CONSECUTIVE_TIMEOUTS:
            self._close_now(f"{self._timeouts} responses timed out in a row")

    def reserve(self) -> None:
        self.reserved += 1

    async def submit(self, params: dict[str, Any]) -> P.Pdu:
        """Send one submit_sm on a slot taken with :meth:`reserve`; returns submit_sm_resp or generic_nack."""
        try:
            return await self.request("submit_sm", params)
        finally:
            self.reserved -= 1
            self._on_slot_free()

    # ------------------------------------------------------------------ reader
    async def _read_loop(self) -> None:
        assert self._reader is not None
        reader = self._reader
        frames = P.FrameSplitter()
        while True:
            try:
                data = await reader.read(65536)
            except (ConnectionError, OSError) as exc:
                self._close_now(f"connection lost: {exc}")
                return
            if not data:
                try:
                    frames.eof()
                except EOFError:
                    self._close_now(self._unbound_reason() if self.unbinding else "connection closed by SMSC")
                except P.FrameError as exc:
                    self._close_now(f"unreadable stream: {exc}")
                return
            self._last_rx = time.monotonic()
            for frame in frames.feed(data):
                try:
                    pdu = P.decode(frame)
                except P.PduError as exc:
                    self._log.warning("pdu_malformed", seq=exc.seq, command_status=exc.status, error=str(exc))
                    self._reply(P.generic_nack(exc.seq, exc.status))
                    continue
                try:
                    self._dispatch(pdu)
                except SessionClosed:
                    return
            if frames.error is not None:
                self._close_now(f"unreadable stream: {frames.error}")
                return

    def _reply(self, pdu: P.Pdu) -> None:
        try:
            self._send(pdu)
        except SessionClosed:
            pass

    def _dispatch(self, pdu: P.Pdu) -> None:
        if pdu.is_response:
            entry = self._pending.pop(pdu.seq, None)
            if entry is None:
                self._log.warning("unexpected_response", command=pdu.command, seq=pdu.seq,
                                  command_status=pdu.status)
                return
            self._timeouts = 0
            fut = entry[0]
            if not fut.done():
                fut.set_result(pdu)
            if self._idle is not None and not self._pending:
                self._wake_idle()
            return
        cmd = pdu.command
        if cmd == "deliver_sm" and self._on_deliver is not None and self.mode != "transmitter":
            try:
                res = self._on_deliver(self, pdu)
            except Exception as exc:  # noqa: BLE001 - the SMSC gets an error status and redelivers
                self._log.error("deliver_failed", seq=pdu.seq, error=str(exc))
                self._reply(P.response_for(pdu, P.ESME_RSYSERR))
                return
            if isinstance(res, int):
                self._reply(P.response_for(pdu, res))
            elif isinstance(res, asyncio.Future):
                res.add_done_callback(functools.partial(self._delivered, pdu))
            else:
                self._spawn(self._deliver(pdu, res))
        elif cmd == "enquire_link":
            self._reply(P.response_for(pdu))
        elif cmd == "unbind":
            self._reply(P.response_for(pdu))
            self._peer_unbind()
        else:
            self._log.warning("request_unsupported", command=cmd, seq=pdu.seq)
            self._reply(P.generic_nack(pdu.seq, P.ESME_RINVCMDID))

    def _delivered(self, pdu: P.Pdu, fut: asyncio.Future[Any]) -> None:
        status = 0
        if fut.cancelled():
            status = P.ESME_RSYSERR
        elif (exc := fut.exception()) is not None:   # the store could not commit: let the SMSC redeliver
            self._log.error("deliver_failed", seq=pdu.seq, error=str(exc))
            status = P.ESME_RSYSERR
        self._reply(P.response_for(pdu, status))

    async def _deliver(self, pdu: P.Pdu, handling: Coroutine[Any, Any, int]) -> None:
        try:
            status = await handling
        except Exception as exc:  # the store could not commit: let the SMSC redeliver
            self._log.error("deliver_failed", seq=pdu.seq, error=str(exc))
            status = P.ESME_RSYSERR
        self._reply(P.response_for(pdu, status))
        await self._drain()

    def _wake_idle(self) -> None:
        idle, self._idle = self._idle, None
        if idle is not None and not idle.done():
            idle.set_result(None)

    async def _enquire_loop(self) -> None:
        interval = self.smsc.enquire_link_s
        while self.bound:
            await asyncio.sleep(max(0.05, interval - (time.monotonic() - self._last_rx)))
            if time.monotonic() - self._last_rx < interval:
                continue
            try:
                await self.request("enquire_link", {})
            except (ResponseTimeout, SessionClosed):
                if not self.unbinding:
                    self._close_now("enquire_link unanswered")
                return

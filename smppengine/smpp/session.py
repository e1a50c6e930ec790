"""One SMPP session (one TCP connection, one bind): the asyncio adapter of ``smpp/protocol.py``.

The protocol core decides everything about the wire (sequence numbers, response deadlines, what is
answered automatically, enquire_link timing, both unbinds); this adapter connects, reads the socket
into it, writes what it queued once per loop turn, keeps one timer at its next deadline, and turns its
events into futures and callbacks. It knows nothing of messages; the SMSC client above it decides what
to send and when.

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
from . import protocol as proto
from .protocol import MAX_CONSECUTIVE_TIMEOUTS  # noqa: F401  (re-exported)
from .status import status_name

log = structlog.get_logger(__name__)

BIND_COMMANDS = {"transceiver": "bind_transceiver", "transmitter": "bind_transmitter", "receiver": "bind_receiver"}


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
        self._loop = asyncio.get_running_loop()
        self._proto = proto.Protocol(smsc.response_timeout_s, smsc.enquire_link_s,
                                     on_deliver is not None and mode != "transmitter", self._loop.time())
        self._sweep: asyncio.TimerHandle | None = None     # one timer, at the protocol's next deadline
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._flushing = False                             # a flush is scheduled for the end of this turn
        self._on_sent: list[Callable[[float], None]] = []  # told the time once the queued requests were written
        self._tasks: set[asyncio.Task[Any]] = set()
        self._log = log.bind(smsc=smsc.name, session=session_id)
        self._idle: asyncio.Future[None] | None = None     # the engine's unbind waits for the last response
        self._enquirer: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ state
    @property
    def free(self) -> int:
        return self.window - self.reserved if self.bound and self.can_submit else 0

    @property
    def unbinding(self) -> str:
        """"smsc" / "engine" once that side sent unbind (no new request goes out), else ""."""
        return self._proto.unbinding

    @property
    def outstanding(self) -> int:
        """Requests sent and not answered yet."""
        return len(self._proto.pending)

    def _kick(self) -> None:
        """PDUs the protocol queued in one turn of the event loop leave in one write (one system call for a
        burst of submit_sm and deliver_sm_resp instead of one each), at the end of it."""
        if not self._flushing and self._proto.out:
            self._flushing = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        data = self._proto.take_output()
        w = self._writer
        if w is not None and not w.is_closing() and data:
            w.writelines(data)
        if self._on_sent:
            callbacks, self._on_sent = self._on_sent, []
            now = time.monotonic()             # after the write returned: the bytes are with the kernel
            for cb in callbacks:
                cb(now)

    def _arm(self) -> None:
        if self._sweep is None:
            when = self._proto.next_deadline()
            if when is not None:
                self._sweep = self._loop.call_at(when, self._sweep_timeouts)

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
        fut: asyncio.Future[P.Pdu] = self._loop.create_future()
        self._proto.bind(BIND_COMMANDS[self.mode], params, fut, self._loop.time())
        self._kick()
        self._arm()
        try:
            resp = await fut
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
        if self.unbinding:                  # unbinding already (the SMSC's, or an earlier call): wait for its end
            try:
                await asyncio.wait_for(self.closed.wait(), timeout)
            except TimeoutError:
                pass
            self._close_now(f"unbound by {'SMSC' if self.unbinding == 'smsc' else 'engine'}")
            return
        fut: asyncio.Future[P.Pdu] = self._loop.create_future()
        self._proto.unbind(fut, self._loop.time())
        self._unbinding("engine", self.outstanding - 1)
        self._kick()
        self._arm()
        try:
            async with asyncio.timeout(timeout):
                await fut
                while not self._proto.unbind_done and not self.closed.is_set():
                    self._idle = self._loop.create_future()
                    await self._idle
        except (SessionClosed, ResponseTimeout, TimeoutError, OSError):
            pass
        finally:
            self._idle = None
        self._close_now("unbound by engine")

    def _unbinding(self, by: str, outstanding: int) -> None:
        """No new request from now on (the client sees the session unbound); responses are still read."""
        self.bound = False
        if self._enquirer is not None and self._enquirer is not asyncio.current_task():
            self._enquirer.cancel()
        self._log.info("session_unbinding", by=by, outstanding=outstanding)
        self._on_change()

    def _close_now(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.close_reason = reason
        self.bound = False
        self.closed.set()
        if self._writer is not None:
            self._flush()              # what was queued (an unbind_resp, a generic_nack) still goes out
            self._writer.close()
        for fut in self._proto.close(reason):
            if not fut.done():
                fut.set_exception(SessionClosed(reason))
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
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
    async def request(self, command: str, params: dict[str, Any],
                      on_sent: Callable[[float], None] | None = None) -> P.Pdu:
        """Send a request PDU and await its response (or generic_nack). Refused (SessionClosed, nothing
        sent) once an unbind was sent or received, or the session closed. ``on_sent`` is called with
        ``time.monotonic()`` taken just after the PDU was written (the flush at the end of this turn)."""
        loop = self._loop
        fut: asyncio.Future[P.Pdu] = loop.create_future()
        try:
            self._proto.request(command, params, fut, loop.time())
        except proto.RequestRefused as exc:
            raise SessionClosed(self.close_reason or str(exc)) from None
        if on_sent is not None:
            self._on_sent.append(on_sent)
        if not self._flushing:
            self._flushing = True
            loop.call_soon(self._flush)
        if self._sweep is None:
            self._arm()
        await self._drain()
        return await fut

    def _sweep_timeouts(self) -> None:
        """The protocol's next deadline came: time out what is due, then watch the next one."""
        self._sweep = None
        self._handle(self._proto.expire(self._loop.time()))
        if not self.closed.is_set():
            self._arm()

    def reserve(self) -> None:
        self.reserved += 1

    async def submit(self, params: dict[str, Any], on_sent: Callable[[float], None] | None = None) -> P.Pdu:
        """Send one submit_sm on a slot taken with :meth:`reserve`; returns submit_sm_resp or generic_nack.
        ``on_sent``: see :meth:`request`."""
        try:
            return await self.request("submit_sm", params, on_sent)
        finally:
            self.reserved -= 1
            self._on_slot_free()

    # ------------------------------------------------------------------ reader
    async def _read_loop(self) -> None:
        assert self._reader is not None
        reader = self._reader
        p = self._proto
        loop = self._loop
        while True:
            try:
                data = await reader.read(65536)
            except (ConnectionError, OSError) as exc:
                self._close_now(f"connection lost: {exc}")
                return
            if not data:
                self._close_now(p.receive_eof().reason)
                return
            self._handle(p.receive_data(data, loop.time()))
            if self.closed.is_set():
                return
            if p.out and not self._flushing:
                self._flushing = True
                loop.call_soon(self._flush)

    def _handle(self, events: list[proto.Event]) -> None:
        """Turn the protocol's events into futures, callbacks and log lines."""
        for ev in events:
            if isinstance(ev, proto.Response):                    # the usual event first
                fut = ev.token
                if not fut.done():
                    fut.set_result(ev.pdu)
            elif isinstance(ev, proto.Deliver):
                self._deliver_sm(ev.pdu)
            elif isinstance(ev, proto.Timeout):
                if not ev.token.done():
                    ev.token.set_exception(ResponseTimeout(f"no response within {self.smsc.response_timeout_s}s"))
                self._log.warning("response_timeout", seq=ev.seq, consecutive=ev.consecutive)
            elif isinstance(ev, proto.Closed):
                self._close_now(ev.reason)
                return
            elif isinstance(ev, proto.PeerUnbind):
                self._unbinding("smsc", ev.outstanding)
                for fut in ev.unsent:
                    if not fut.done():
                        fut.set_exception(SessionClosed("not sent: unbind from SMSC"))
                self._arm()
            elif isinstance(ev, proto.Malformed):
                self._log.warning("pdu_malformed", seq=ev.seq, command_status=ev.status, error=ev.error)
            elif isinstance(ev, proto.Unexpected):
                pdu = ev.pdu
                self._log.warning("unexpected_response", command=pdu.command, seq=pdu.seq, command_status=pdu.status)
            elif isinstance(ev, proto.Unsupported):
                self._log.warning("request_unsupported", command=ev.pdu.command, seq=ev.pdu.seq)
        if self._idle is not None and self._proto.unbind_done:
            self._wake_idle()

    def _reply(self, pdu: P.Pdu) -> None:
        self._proto.respond(pdu)
        self._kick()

    def _deliver_sm(self, pdu: P.Pdu) -> None:
        assert self._on_deliver is not None
        try:
            res = self._on_deliver(self, pdu)
        except Exception as exc:  # noqa: BLE001 - the SMSC gets an error status and redelivers
            self._log.error("deliver_failed", seq=pdu.seq, error=str(exc))
            self._reply(P.response_for(pdu, P.ESME_RSYSERR))
            return
        if isinstance(res, int):
            self._reply(P.response_for(pdu, res))             # written with this read's other output
        elif isinstance(res, asyncio.Future):
            res.add_done_callback(functools.partial(self._delivered, pdu))
        else:
            self._spawn(self._deliver(pdu, res))

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
        p = self._proto
        while self.bound:
            wait = p.enquire_wait(self._loop.time())
            if wait > 0:
                await asyncio.sleep(max(0.05, wait))
                continue
            try:
                await self.request("enquire_link", {})
            except (ResponseTimeout, SessionClosed):
                if not self.unbinding:
                    self._close_now("enquire_link unanswered")
                return

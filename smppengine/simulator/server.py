"""The SMSC simulator's server: :class:`Simulator` listens, binds, answers submit_sm, applies the
knobs and keeps the observations (receipts: :mod:`.receipts`, MO: :mod:`.mo`).

Used by the zero-setup demo (in-process), by the integration tests (in-process, port 0)
and by benchmarks / kill tests (its own process, ``smppengine sim``). See docs/simulator.md.

Hot-path PDUs whose body is trivial (submit_sm_resp, deliver_sm_resp, enquire_link[_resp],
unbind[_resp]) are packed / recognised with ``struct`` directly; everything else goes through
``smppengine.smpp.pdu``. PDUs are cut from each read by the engine's own framer
(``smppengine.smpp.pdu.FrameSplitter``, as in the engine's sessions). No task is created per PDU:
responses are written inline (or with ``loop.call_later`` when delayed) and the writer is drained
only when its buffer grows large.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from smppengine.simulator.mo import MoInjection
from smppengine.simulator.receipts import MESSAGE_STATES, Receipts, _receipt_excerpt
from smppengine.simulator.records import SubmitRecord, _recorded_tlvs
from smppengine.simulator.session import (
    _CMD_DELIVER_SM_RESP,
    _CMD_ENQUIRE_LINK,
    _CMD_ENQUIRE_LINK_RESP,
    _CMD_GENERIC_NACK,
    _CMD_UNBIND,
    _CMD_UNBIND_RESP,
    _HEADER,
    _header_only,
    _Mo,
    _Receipt,
    _Session,
    _submit_resp,
)
from smppengine.smpp import pdu as P
from smppengine.smpp.pdu import (
    ESME_RALYBND,
    ESME_RINVBNDSTS,
    ESME_RINVCMDID,
    ESME_RINVPASWD,
    ESME_ROK,
    ESME_RSYSERR,
    ESME_RTHROTTLED,
    FrameError,
    Pdu,
    PduError,
    decode,
    encode,
    generic_nack,
)

log = structlog.get_logger(__name__)

_DRAIN_ABOVE = 256 * 1024  # bytes buffered in a transport before the reader awaits drain()
_READ_SIZE = 64 * 1024  # bytes asked of the socket per read; FrameSplitter cuts every whole PDU out of them
_ID_FORMATS = ("hex", "dec")

_BIND_COMMANDS = {
    "bind_transmitter": (True, False),
    "bind_receiver": (False, True),
    "bind_transceiver": (True, True),
}


@dataclass(slots=True)
class _HoldPlan:
    unbind_at: int  # send unbind once this many resps are held on a session; 0 = wait for the ESME's unbind
    release_after: float  # seconds from the unbind to sending the held resps
    close_after: float  # seconds from the unbind to closing the connection
    unbind_resp_first: bool  # ESME unbind: answer it at once, the held resps follow (else resps, then it)


def _check_jitter(jitter: float) -> float:
    jitter = float(jitter)
    if not 0.0 <= jitter < 1.0:
        raise ValueError(f"tps_jitter must be in [0, 1) seconds, not {jitter!r}")
    return jitter


def _format_id(n: int, fmt: str) -> str:
    return format(n, "x") if fmt == "hex" else str(n)


class Simulator(Receipts, MoInjection):
    """An SMSC on a TCP port. All knobs take effect immediately; all observations are plain attributes."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        credentials: dict[str, str] | None = None,
        id_format: str = "hex",
        receipt_id_format: str = "same",
        receipt_delay: float = 0.0,
        receipt_stat: str = "DELIVRD",
        tps_limit: float | None = None,
        tps_jitter: float = 0.0,
        name: str = "sim",
        enquire_link_s: float = 30.0,
        receipt_tlvs: bool = True,
        receipt_resp_timeout: float = 10.0,
        receipt_retry_s: float = 5.0,
        record_submits: bool = True,
        first_message_id: int | None = None,
        ssl: Any = None,
    ) -> None:
        if id_format not in _ID_FORMATS:
            raise ValueError(f"id_format must be 'hex' or 'dec', not {id_format!r}")
        if receipt_id_format not in ("same", *_ID_FORMATS):
            raise ValueError(f"receipt_id_format must be 'same', 'hex' or 'dec', not {receipt_id_format!r}")
        self._check_stat(receipt_stat)
        self.host = host
        self._ssl = ssl                      # an ssl.SSLContext: SMPP over TLS
        self.port = port
        self.name = name
        self.credentials = dict(credentials) if credentials is not None else None
        self.id_format = id_format
        self.receipt_id_format = receipt_id_format
        self.receipt_delay = receipt_delay
        self.receipt_stat = receipt_stat
        self.receipt_tlvs = receipt_tlvs
        # more TLVs on every receipt's deliver_sm: params by name (network_error_code=b"...") and/or
        # other_tlvs={tag: octets} (vendor tags); see set_receipt
        self.receipt_extra_tlvs: dict[str, Any] = {}
        self.receipt_resp_timeout = receipt_resp_timeout
        self.receipt_retry_s = receipt_retry_s
        self.enquire_link_s = enquire_link_s
        self.tps_limit = tps_limit
        self.tps_jitter = _check_jitter(tps_jitter)
        self.response_delay = 0.0
        self.record_submits = record_submits

        # knobs
        self._fail_destinations: dict[str, int] = {}
        self._fail_next_n = 0
        self._fail_next_status = 0
        self._drop_n = 0
        self._refuse_binds: int | None = None
        self._receipt_first_n = 0
        self._hold: _HoldPlan | None = None

        # observations
        self.submits: list[SubmitRecord] = []
        self.submit_count = 0
        self.ok_count = 0
        self.throttled = 0
        self.duplicates = 0
        self.binds = 0
        self.bind_failures = 0
        self.unbinds_received = 0
        self.deliver_resps: list[tuple[int, int]] = []
        self.generic_nacks_received = 0
        self.receipts_sent = 0
        self.receipts_acked = 0
        self.enquire_links_received = 0
        self.enquire_links_sent = 0
        self.enquire_link_resps_received = 0
        self.mo_sent = 0
        self.connections = 0
        self.unbinds_sent = 0  # by hold_responses (unbind_all is not counted)
        self.submits_after_unbind = 0  # submit_sm received on a session after an unbind (sent or received)

        # state
        if first_message_id is None:
            first_message_id = int(time.time()) << 16  # unique across restarts below 65k submits/s
        self._ids = itertools.count(first_message_id)
        self._sid = itertools.count(1)
        self._sessions: dict[int, _Session] = {}
        self._rr: dict[str, int] = {}
        self._mo_rr = 0
        self._pending_receipts: dict[str, deque[_Receipt]] = {}
        self._window: deque[float] = deque()
        self._ok_keys: set[int] = set()
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._log = log.bind(smsc=name)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, limit=2**20, ssl=self._ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ticker = asyncio.create_task(self._enquire_loop())
        self._log.info("sim_listening", host=self.host, port=self.port)

    async def stop(self, graceful: bool = True) -> None:
        """Stop listening and close every session (after an unbind when ``graceful``)."""
        if self._server is not None:
            self._server.close()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if graceful:
            await self.unbind_all(timeout=2.0)
        else:
            await self.drop_connections()
        for sess in list(self._sessions.values()):
            self._close(sess)
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        for _, fut in self._waiters:
            if not fut.done():
                fut.cancel()
        self._waiters.clear()
        self._log.info("sim_stopped")

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ observations

    @property
    def bound_sessions(self) -> int:
        return sum(1 for s in self._sessions.values() if s.bound and not s.closed)

    def ok_submits(self) -> list[SubmitRecord]:
        return [r for r in self.submits if r.status == ESME_ROK]

    def pending_receipts(self) -> int:
        """Receipts generated but not yet acknowledged with an OK deliver_sm_resp (queued or in flight)."""
        queued = sum(len(q) for q in self._pending_receipts.values())
        inflight = sum(
            1 for s in self._sessions.values() for o in s.outstanding.values() if isinstance(o, _Receipt)
        )
        return queued + inflight

    def stats(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "port": self.port,
            "submits": self.submit_count,
            "ok": self.ok_count,
            "throttled": self.throttled,
            "duplicates": self.duplicates,
            "binds": self.binds,
            "bind_failures": self.bind_failures,
            "bound_sessions": self.bound_sessions,
            "connections": self.connections,
            "unbinds_received": self.unbinds_received,
            "receipts_sent": self.receipts_sent,
            "receipts_acked": self.receipts_acked,
            "receipts_pending": self.pending_receipts(),
            "deliver_resps": len(self.deliver_resps),
            "generic_nacks_received": self.generic_nacks_received,
            "enquire_links_received": self.enquire_links_received,
            "enquire_links_sent": self.enquire_links_sent,
            "enquire_link_resps_received": self.enquire_link_resps_received,
            "mo_sent": self.mo_sent,
            "held_responses": self.held_responses(),
            "unbinds_sent": self.unbinds_sent,
            "submits_after_unbind": self.submits_after_unbind,
        }

    def knobs(self) -> dict[str, Any]:
        return {
            "tps_limit": self.tps_limit,
            "tps_jitter": self.tps_jitter,
            "response_delay": self.response_delay,
            "refuse_binds": self._refuse_binds is not None,
            "refuse_binds_status": self._refuse_binds,
            "receipt_stat": self.receipt_stat,
            "receipt_delay": self.receipt_delay,
            "receipt_id_format": self.receipt_id_format,
            "receipt_tlvs": self.receipt_tlvs,
            "id_format": self.id_format,
            "fail_next": self._fail_next_n,
            "fail_next_status": self._fail_next_status,
            "fail_destinations": dict(self._fail_destinations),
            "drop_responses": self._drop_n,
            "receipt_before_resp": self._receipt_first_n,
            "enquire_link_s": self.enquire_link_s,
            "hold_responses": (
                None if self._hold is None else {
                    "unbind_at": self._hold.unbind_at, "release_after": self._hold.release_after,
                    "close_after": self._hold.close_after, "unbind_resp_first": self._hold.unbind_resp_first,
                }
            ),
        }

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:  # noqa: ASYNC109
        """Return once ``predicate()`` is true (checked after every state change); TimeoutError otherwise."""
        if predicate():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (predicate, fut)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await fut
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    def _changed(self) -> None:
        if not self._waiters:
            return
        for pred, fut in list(self._waiters):
            if not fut.done():
                try:
                    ok = pred()
                except Exception as exc:  # a broken predicate fails its waiter, not the simulator
                    fut.set_exception(exc)
                    continue
                if ok:
                    fut.set_result(None)

    # ------------------------------------------------------------------ knobs

    @staticmethod
    def _check_stat(stat: str) -> None:
        if stat not in MESSAGE_STATES:
            raise ValueError(f"receipt stat must be one of {sorted(MESSAGE_STATES)}, not {stat!r}")

    def set_tps_limit(self, tps: float | None) -> None:
        self.tps_limit = tps

    def fail_destination(self, destination_addr: str, status: int | None) -> None:
        """submit_sm to ``destination_addr`` is answered with ``status``; status None / 0 clears it."""
        if status:
            self._fail_destinations[destination_addr] = status
        else:
            self._fail_destinations.pop(destination_addr, None)

    def fail_next(self, n: int, status: int) -> None:
        self._fail_next_n = n
        self._fail_next_status = status

    def set_response_delay(self, seconds: float) -> None:
        self.response_delay = max(0.0, seconds)

    def drop_responses(self, n: int) -> None:
        self._drop_n = n

    def refuse_binds(self, refuse: bool, status: int = ESME_RINVPASWD) -> None:
        self._refuse_binds = status if refuse else None

    def receipt_before_resp(self, n: int) -> None:
        self._receipt_first_n = n

    def hold_responses(
        self, unbind_at: int = 0, release_after: float = 0.15, close_after: float = 0.6, unbind_resp_first: bool = False
    ) -> None:
        """Responses crossing an unbind: from now on every submit_sm_resp is held (not sent). Once
        ``unbind_at`` (> 0) resps are held on one session, the simulator sends ``unbind`` on it; with
        ``unbind_at`` 0 it waits for the ESME's unbind instead. ``release_after`` seconds after the unbind it
        sends that session's held resps (and then their receipts); after an ESME unbind it answers with
        unbind_resp after the resps, or at once with ``unbind_resp_first``. ``close_after`` seconds after the
        unbind it closes the connection. Submits that arrive after the unbind get ESME_RINVBNDSTS (counted in
        ``submits_after_unbind``). Used up by the first unbind: resps held on other sessions go out at once,
        later submits are answered as usual."""
        if unbind_at < 0 or release_after < 0 or close_after < 0:
            raise ValueError("hold_responses: unbind_at, release_after and close_after must be >= 0")
        self._hold = _HoldPlan(unbind_at, release_after, close_after, unbind_resp_first)

    def clear_hold(self) -> None:
        """Stop holding: every held resp goes out now."""
        self._hold = None
        for sess in list(self._sessions.values()):
            self._release_held(sess, None)

    def held_responses(self) -> int:
        return sum(len(sess.held) for sess in self._sessions.values())

    def _unbind_under_hold(self, sess: _Session, esme_unbind_seq: int | None) -> None:
        """An unbind (ours, or the ESME's with its seq) while holding: release, answer, close on schedule."""
        plan = self._hold
        assert plan is not None
        self._hold = None
        sess.unbinding = True
        sess.can_tx = False
        by = "smsc" if esme_unbind_seq is None else "esme"
        if esme_unbind_seq is None:
            sess.write(_header_only(_CMD_UNBIND, sess.next_seq()))
            self.unbinds_sent += 1
        elif plan.unbind_resp_first:
            sess.write(_header_only(_CMD_UNBIND_RESP, esme_unbind_seq))
            esme_unbind_seq = None
        self._log.info("sim_unbind_holding", session=sess.id, held=len(sess.held), by=by)
        loop = asyncio.get_running_loop()
        loop.call_later(plan.release_after, self._release_held, sess, esme_unbind_seq)
        loop.call_later(plan.close_after, self._close, sess)
        for other in list(self._sessions.values()):
            if other is not sess:
                self._release_held(other, None)
        self._changed()

    def _release_held(self, sess: _Session, unbind_seq: int | None) -> None:
        held, sess.held = sess.held, []
        if sess.closed:
            return
        for resp, receipt in held:
            self._write_resp(sess, resp, receipt)
        if unbind_seq is not None:
            sess.write(_header_only(_CMD_UNBIND_RESP, unbind_seq))
        self._changed()

    def set_receipt(
        self,
        stat: str | None = None,
        delay: float | None = None,
        id_format: str | None = None,
        tlvs: bool | None = None,
        extra_tlvs: dict[str, Any] | None = None,
    ) -> None:
        if extra_tlvs is not None:
            encode(Pdu("deliver_sm", 1, 0, dict(extra_tlvs)))   # ValueError now, not at the first receipt
            self.receipt_extra_tlvs = dict(extra_tlvs)
        if stat is not None:
            self._check_stat(stat)
            self.receipt_stat = stat
        if delay is not None:
            self.receipt_delay = max(0.0, delay)
        if id_format is not None:
            if id_format not in ("same", *_ID_FORMATS):
                raise ValueError(f"receipt id_format must be 'same', 'hex' or 'dec', not {id_format!r}")
            self.receipt_id_format = id_format
        if tlvs is not None:
            self.receipt_tlvs = tlvs

    async def drop_connections(self) -> int:
        """Abruptly close every session (RST: SO_LINGER 0, no unbind). Returns how many were closed."""
        n = 0
        for sess in list(self._sessions.values()):
            if sess.closed:
                continue
            sock = sess.writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sess.transport.abort()
            self._close(sess)
            n += 1
        if n:
            self._log.info("sim_dropped_connections", count=n)
        await asyncio.sleep(0)  # let the reader tasks observe the abort
        return n

    async def unbind_all(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Send unbind on every bound session, wait (up to ``timeout``) for unbind_resp, then close them."""
        loop = asyncio.get_running_loop()
        waits: list[asyncio.Future[None]] = []
        for sess in list(self._sessions.values()):
            if sess.closed or not sess.bound:
                continue
            sess.unbind_waiter = loop.create_future()
            waits.append(sess.unbind_waiter)
            sess.write(_header_only(_CMD_UNBIND, sess.next_seq()))
        if waits:
            await asyncio.wait(waits, timeout=timeout)
        for sess in list(self._sessions.values()):
            if sess.unbind_waiter is not None:
                self._close(sess)

    # ------------------------------------------------------------------ connection handling

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        sess = _Session(next(self._sid), writer)
        self._sessions[sess.id] = sess
        self.connections += 1
        slog = self._log.bind(session=sess.id)
        slog.info("sim_connected", peer=str(sess.peer))
        transport = sess.transport
        split = P.FrameSplitter()  # the engine's own framer: whole PDUs cut from each read
        try:
            while not sess.closed:
                try:
                    data = await reader.read(_READ_SIZE)
                except (ConnectionError, OSError):
                    break
                if not data:
                    try:
                        split.eof()
                    except FrameError as exc:  # the stream ended inside a PDU
                        slog.warning("sim_bad_frame", error=str(exc))
                    except EOFError:
                        pass
                    break
                for frame in split.feed(data):
                    try:
                        self._on_frame(sess, frame)
                    except Exception as exc:  # never let one PDU take the simulator down
                        seq = _HEADER.unpack_from(frame)[3]
                        slog.exception("sim_pdu_error", seq=seq, error=str(exc))
                        sess.write(encode(generic_nack(seq, ESME_RSYSERR)))
                    if sess.closed:  # e.g. unbind: the PDUs after it are not read
                        break
                if sess.closed:
                    break
                if split.error is not None:  # a bad command_length: the stream cannot be cut any further
                    slog.warning("sim_bad_frame", error=str(split.error))
                    break
                if transport.get_write_buffer_size() > _DRAIN_ABOVE:
                    try:
                        await writer.drain()
                    except (ConnectionError, OSError):
                        break
        except asyncio.CancelledError:
            pass
        finally:
            self._close(sess)
            slog.info("sim_disconnected", system_id=sess.system_id)
            if task is not None:
                self._tasks.discard(task)

    def _close(self, sess: _Session) -> None:
        if sess.closed:
            return
        sess.flush()  # e.g. the unbind_resp (after an abort, is_closing() makes this a no-op)
        sess.closed = True
        self._sessions.pop(sess.id, None)
        if not sess.transport.is_closing():
            sess.transport.close()
        if sess.unbind_waiter is not None and not sess.unbind_waiter.done():
            sess.unbind_waiter.set_result(None)
        outstanding = list(sess.outstanding.values())
        sess.outstanding.clear()
        for item in outstanding:
            if isinstance(item, _Mo):
                if not item.future.done():
                    item.future.set_exception(ConnectionError("session closed before deliver_sm_resp"))
            else:
                if item.timer is not None:
                    item.timer.cancel()
                    item.timer = None
                self._dispatch_receipt(item)  # to another receiver of the system_id, or queued
        self._changed()

    def _on_frame(self, sess: _Session, frame: bytes) -> None:
        _, command_id, status, seq = _HEADER.unpack_from(frame)
        # fast paths: header-only PDUs
        if command_id == _CMD_DELIVER_SM_RESP:
            self._on_deliver_resp(sess, seq, status)
            return
        if command_id == _CMD_ENQUIRE_LINK:
            self.enquire_links_received += 1
            sess.write(_header_only(_CMD_ENQUIRE_LINK_RESP, seq))
            return
        if command_id == _CMD_ENQUIRE_LINK_RESP:
            self.enquire_link_resps_received += 1
            self._changed()
            return
        if command_id == _CMD_UNBIND:
            self.unbinds_received += 1
            if self._hold is not None and sess.bound:
                self._unbind_under_hold(sess, seq)
                return
            sess.write(_header_only(_CMD_UNBIND_RESP, seq))
            self._log.info("sim_unbind", session=sess.id, system_id=sess.system_id)
            self._close(sess)  # transport.close() flushes the unbind_resp first
            return
        if command_id == _CMD_UNBIND_RESP:
            if sess.unbind_waiter is not None and not sess.unbind_waiter.done():
                sess.unbind_waiter.set_result(None)
            return
        if command_id == _CMD_GENERIC_NACK:
            self.generic_nacks_received += 1
            self._log.info("sim_generic_nack", session=sess.id, seq=seq, command_status=status)
            item = sess.outstanding.pop(seq, None)
            if item is not None:
                self._on_deliver_failed(item, status or ESME_RSYSERR)
            self._changed()
            return
        try:
            pdu = decode(frame)
        except PduError as exc:
            self._log.info("sim_malformed_pdu", session=sess.id, seq=exc.seq, command_status=exc.status)
            sess.write(encode(generic_nack(exc.seq, exc.status)))
            return
        cmd = pdu.command
        if cmd == "submit_sm":
            if sess.unbinding:
                self.submits_after_unbind += 1
            self._on_submit(sess, pdu)
        elif cmd in _BIND_COMMANDS:
            self._on_bind(sess, pdu)
        elif cmd.endswith("_resp"):
            pass  # a response to nothing we sent: ignore
        else:
            sess.write(encode(generic_nack(seq, ESME_RINVCMDID)))

    # ------------------------------------------------------------------ bind

    def _on_bind(self, sess: _Session, pdu: Pdu) -> None:
        system_id = str(pdu.params.get("system_id", "") or "")
        password = str(pdu.params.get("password", "") or "")
        can_tx, can_rx = _BIND_COMMANDS[pdu.command]
        resp_cmd = pdu.command + "_resp"
        if sess.bound:
            status = ESME_RALYBND
        elif self._refuse_binds is not None:
            status = self._refuse_binds
        elif self.credentials is not None and self.credentials.get(system_id) != password:
            status = ESME_RINVPASWD
        else:
            status = ESME_ROK
        if status == ESME_ROK:
            sess.system_id = system_id
            sess.can_tx = can_tx
            sess.can_rx = can_rx
            self.binds += 1
        elif status != ESME_RALYBND:
            self.bind_failures += 1
        sess.write(encode(Pdu(command=resp_cmd, seq=pdu.seq, status=status, params={"system_id": self.name})))
        self._log.info(
            "sim_bind", session=sess.id, system_id=system_id, bind=pdu.command, command_status=status
        )
        if status == ESME_ROK and can_rx:
            self._flush_receipts(system_id)
        self._changed()

    # ------------------------------------------------------------------ submit_sm

    def _on_submit(self, sess: _Session, pdu: Pdu) -> None:
        p = pdu.params
        seq = pdu.seq
        now = time.monotonic()
        self.submit_count += 1
        short_message = p.get("short_message") or b""
        if isinstance(short_message, str):
            short_message = short_message.encode("latin-1", "replace")
        destination = str(p.get("destination_addr", "") or "")
        message_id = ""
        respond = True
        if not sess.can_tx:
            status = ESME_RINVBNDSTS
        elif self._drop_n > 0:
            self._drop_n -= 1
            status = -1
            respond = False
        elif self._fail_next_n > 0:
            self._fail_next_n -= 1
            status = self._fail_next_status
        elif destination in self._fail_destinations:
            status = self._fail_destinations[destination]
        elif self._throttle(now):
            status = ESME_RTHROTTLED
            self.throttled += 1
        else:
            status = ESME_ROK
        receipt: _Receipt | None = None
        if status == ESME_ROK:
            n = next(self._ids)
            message_id = _format_id(n, self.id_format)
            self.ok_count += 1
            tlv_key = (
                p.get("message_payload"), p.get("sar_msg_ref_num"), p.get("sar_total_segments"),
                p.get("sar_segment_seqnum"),
            )
            key = hash((destination, short_message, tlv_key))
            if key in self._ok_keys:
                self.duplicates += 1
            else:
                self._ok_keys.add(key)
            rd = int(p.get("registered_delivery", 0) or 0)
            stat = self.receipt_stat
            if rd & 1 or (rd & 3 == 2 and stat != "DELIVRD"):
                rid_fmt = self.id_format if self.receipt_id_format == "same" else self.receipt_id_format
                receipt = _Receipt(
                    system_id=sess.system_id or "",
                    message_id=_format_id(n, rid_fmt),
                    source_addr=str(p.get("source_addr", "") or ""),
                    source_addr_ton=int(p.get("source_addr_ton", 0) or 0),
                    source_addr_npi=int(p.get("source_addr_npi", 0) or 0),
                    destination_addr=destination,
                    dest_addr_ton=int(p.get("dest_addr_ton", 0) or 0),
                    dest_addr_npi=int(p.get("dest_addr_npi", 0) or 0),
                    submit_date=time.strftime("%y%m%d%H%M", time.gmtime()),
                    text=_receipt_excerpt(
                        short_message or (p.get("message_payload") or b""),
                        int(p.get("esm_class", 0) or 0),
                        int(p.get("data_coding", 0) or 0),
                    ),
                    stat=stat,
                    tlvs=self.receipt_tlvs,
                )
        if self.record_submits:
            self.submits.append(
                SubmitRecord(
                    system_id=sess.system_id or "",
                    session_id=sess.id,
                    seq=seq,
                    message_id=message_id,
                    at=now,
                    source_addr=str(p.get("source_addr", "") or ""),
                    source_addr_ton=int(p.get("source_addr_ton", 0) or 0),
                    source_addr_npi=int(p.get("source_addr_npi", 0) or 0),
                    destination_addr=destination,
                    dest_addr_ton=int(p.get("dest_addr_ton", 0) or 0),
                    dest_addr_npi=int(p.get("dest_addr_npi", 0) or 0),
                    esm_class=int(p.get("esm_class", 0) or 0),
                    data_coding=int(p.get("data_coding", 0) or 0),
                    registered_delivery=int(p.get("registered_delivery", 0) or 0),
                    priority_flag=int(p.get("priority_flag", 0) or 0),
                    validity_period=str(p.get("validity_period", "") or ""),
                    short_message=bytes(short_message),
                    tlvs=_recorded_tlvs(p),
                    status=status,
                    schedule_delivery_time=str(p.get("schedule_delivery_time", "") or ""),
                )
            )
        if respond:
            resp = _submit_resp(seq, status, message_id)
            if receipt is not None and self._receipt_first_n > 0:
                self._receipt_first_n -= 1
                self._receipt_then_resp(sess, resp, receipt)
            elif self.response_delay > 0:
                loop = asyncio.get_running_loop()
                loop.call_later(self.response_delay, self._send_resp, sess, resp, receipt)
            else:
                self._send_resp(sess, resp, receipt)
        self._changed()

    def _throttle(self, now: float) -> bool:
        """Sliding window over the submits that reached this check and were not throttled (tracked even
        with no limit set, so a limit set mid-stream counts the last second's traffic): more than
        ``tps_limit`` of them within 1 s - ``tps_jitter`` is a throttle. ``now`` is when this process read
        the submit, which lags its arrival when the process waits for a CPU; the jitter tolerance keeps
        that lag from making evenly spaced submits look bunched (what a real SMSC allows for network
        jitter). 0 = a strict 1 s window."""
        window = self._window
        edge = now - (1.0 - self.tps_jitter)
        while window and window[0] <= edge:
            window.popleft()
        if self.tps_limit is not None and len(window) >= self.tps_limit:
            return True
        window.append(now)
        return False

    def _send_resp(self, sess: _Session, resp: bytes, receipt: _Receipt | None) -> None:
        if sess.closed:
            return  # a delayed response for a connection that is gone: like a real SMSC, nothing
        plan = self._hold
        if plan is not None and not sess.unbinding:
            sess.held.append((resp, receipt))
            if plan.unbind_at and len(sess.held) >= plan.unbind_at:
                self._unbind_under_hold(sess, None)
            self._changed()
            return
        self._write_resp(sess, resp, receipt)

    def _write_resp(self, sess: _Session, resp: bytes, receipt: _Receipt | None) -> None:
        sess.write(resp)
        if receipt is not None:
            if self.receipt_delay > 0:
                asyncio.get_running_loop().call_later(self.receipt_delay, self._dispatch_receipt, receipt)
            else:
                self._dispatch_receipt(receipt)

    def _receipt_then_resp(self, sess: _Session, resp: bytes, receipt: _Receipt) -> None:
        """Send the receipt now; the submit_sm_resp follows once the receipt's deliver_sm_resp arrived (or
        after 1 s, so an engine that holds unknown receipts cannot deadlock us), then ``response_delay``."""
        loop = asyncio.get_running_loop()
        fired = False

        def release() -> None:
            nonlocal fired
            if fired:
                return
            fired = True
            fallback.cancel()
            if self.response_delay > 0:
                loop.call_later(self.response_delay, self._send_resp, sess, resp, None)
            else:
                self._send_resp(sess, resp, None)

        fallback = loop.call_later(1.0, release)
        receipt.after_ack = release
        self._dispatch_receipt(receipt)

    # ------------------------------------------------------------------ enquire_link from our side

    async def _enquire_loop(self) -> None:
        while True:
            await asyncio.sleep(self.enquire_link_s if self.enquire_link_s > 0 else 3600)
            if self.enquire_link_s <= 0:
                continue
            for sess in list(self._sessions.values()):
                if sess.bound and not sess.closed:
                    sess.write(_header_only(_CMD_ENQUIRE_LINK, sess.next_seq()))
                    self.enquire_links_sent += 1

"""One SMPP 3.4 session as a sans-I/O state machine: bytes in → events, requests → bytes.

Modelled on h11: no socket, no event loop, no clock of its own (every call that depends on time takes
``now``, any monotonic clock in seconds). Everything the session decides lives here and is tested by
feeding bytes and reading bytes (tests/test_protocol.py): sequence numbers, the response deadlines, what
is answered automatically (enquire_link, unbind, generic_nack for what cannot be decoded or is not
supported), when an enquire_link is due, and both unbinds. ``smpp/session.py`` is the asyncio adapter:
it reads the socket into :meth:`Protocol.receive_data`, writes :meth:`Protocol.take_output` once per
loop turn, keeps one timer at :meth:`Protocol.next_deadline`, and turns events into futures.

Each request carries a ``token`` (the adapter's future), given back in its :class:`Response` or
:class:`Timeout`: one dict holds both the deadline and the waiter.

States: ``OPEN`` (connected, bind not answered) → ``BOUND`` (bind_*_resp OK) → ``UNBINDING`` (either
side sent unbind: :attr:`Protocol.unbinding` says which) → ``CLOSED``. Once unbinding, no new request is
accepted (:class:`RequestRefused`), every response that still arrives is handed out, and deliver_sm is
still handed out and may be answered. After the SMSC's unbind the session lasts until the SMSC closes
(:meth:`receive_eof`) or ``response_timeout_s`` passes (a :class:`Closed` from :meth:`expire`); after
the engine's, :attr:`Protocol.unbind_done` tells when the unbind_resp and every outstanding response came.
"""

from __future__ import annotations

from typing import Any

from . import pdu as P

MAX_CONSECUTIVE_TIMEOUTS = 3
OPEN, BOUND, UNBINDING, CLOSED = "open", "bound", "unbinding", "closed"
_SUBMIT_SM_ID = P.COMMAND_IDS["submit_sm"]
_EARLY = 0.001          # timers may fire up to a clock tick early


class RequestRefused(Exception):
    """The session does not accept this request now (unbinding or closed): nothing was sent."""


# ---------------------------------------------------------------------------------------------- events
class Event:
    __slots__ = ()


class Response(Event):
    """The response (or generic_nack) to the request sent with ``token``."""

    __slots__ = ("token", "pdu")

    def __init__(self, token: Any, pdu: P.Pdu) -> None:
        self.token = token
        self.pdu = pdu


class Timeout(Event):
    """No response to the request sent with ``token`` within response_timeout_s (``consecutive``: how many
    in a row, reset by any response)."""

    __slots__ = ("token", "seq", "consecutive")

    def __init__(self, token: Any, seq: int, consecutive: int) -> None:
        self.token = token
        self.seq = seq
        self.consecutive = consecutive


class Deliver(Event):
    """A deliver_sm to handle; answer it with :meth:`Protocol.respond` (``P.response_for(pdu, status)``)."""

    __slots__ = ("pdu",)

    def __init__(self, pdu: P.Pdu) -> None:
        self.pdu = pdu


class Bound(Event):
    """The bind was answered OK: requests may go."""

    __slots__ = ("pdu",)

    def __init__(self, pdu: P.Pdu) -> None:
        self.pdu = pdu


class PeerUnbind(Event):
    """The SMSC sent unbind (answered already). ``unsent``: tokens of the requests that were still queued
    for the socket, taken back (never sent: safe to send again elsewhere)."""

    __slots__ = ("unsent", "outstanding")

    def __init__(self, unsent: list[Any], outstanding: int) -> None:
        self.unsent = unsent
        self.outstanding = outstanding


class Closed(Event):
    """The session is over (EOF, unreadable stream, responses timed out in a row, unbind drain done)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class Malformed(Event):
    """An undecodable PDU, answered with generic_nack (``status``)."""

    __slots__ = ("seq", "status", "error")

    def __init__(self, seq: int, status: int, error: str) -> None:
        self.seq = seq
        self.status = status
        self.error = error


class Unexpected(Event):
    """A response that matches no request (late, after its timeout; or a confused peer)."""

    __slots__ = ("pdu",)

    def __init__(self, pdu: P.Pdu) -> None:
        self.pdu = pdu


class Unsupported(Event):
    """A request the session does not handle, answered with generic_nack ESME_RINVCMDID."""

    __slots__ = ("pdu",)

    def __init__(self, pdu: P.Pdu) -> None:
        self.pdu = pdu


# ---------------------------------------------------------------------------------------------- protocol
class Protocol:
    """The state of one SMPP session (see the module docstring)."""

    __slots__ = ("response_timeout_s", "enquire_link_s", "can_deliver", "state", "unbinding", "pending", "out",
                 "last_rx", "close_at", "_seq", "_timeouts", "_frames", "_refused", "_bind_seq")

    def __init__(self, response_timeout_s: float, enquire_link_s: float, can_deliver: bool, now: float) -> None:
        self.response_timeout_s = response_timeout_s
        self.enquire_link_s = enquire_link_s
        self.can_deliver = can_deliver          # deliver_sm handed out (else answered generic_nack)
        self.state = OPEN
        self.unbinding = ""                     # "smsc" / "engine": who sent unbind
        # requests awaiting their response, in the order sent: seq -> (token, deadline)
        self.pending: dict[int, tuple[Any, float]] = {}
        self.out: list[bytes] = []              # encoded PDUs not taken by the adapter yet
        self.last_rx = now
        self.close_at: float | None = None      # after the SMSC's unbind: closed at this time at the latest
        self._seq = 0
        self._timeouts = 0
        self._frames = P.FrameSplitter()
        self._refused = ""                      # why requests are refused now ("" = they are not)
        self._bind_seq = -1

    # ------------------------------------------------------------------ sending
    def request(self, command: str, params: dict[str, Any], token: Any, now: float) -> int:
        """Queue a request; returns its sequence number. RequestRefused once unbinding or closed."""
        if self._refused:
            raise RequestRefused(f"{self._refused}: {command} not sent")
        seq = self._seq = P.next_seq(self._seq)
        self.out.append(P.encode(P.Pdu(command, seq, 0, params)))
        self.pending[seq] = (token, now + self.response_timeout_s)
        return seq

    def bind(self, command: str, params: dict[str, Any], token: Any, now: float) -> int:
        """Queue the bind_* request; its OK response moves the session to BOUND (a :class:`Bound` event)."""
        if self.state is not OPEN or self._bind_seq != -1:
            raise RequestRefused(f"{command}: the session is {self.state}")
        seq = self._bind_seq = self.request(command, params, token, now)
        return seq

    def respond(self, pdu: P.Pdu) -> None:
        """Queue a response (deliver_sm_resp ...); dropped once closed."""
        if self.state is not CLOSED:
            self.out.append(P.encode(pdu))

    def unbind(self, token: Any, now: float) -> int:
        """The engine's unbind: no new request from now on; the unbind goes out with ``token``."""
        if self.state is CLOSED or self.unbinding:
            raise RequestRefused(self._refused or "unbinding")
        seq = self._seq = P.next_seq(self._seq)
        self.out.append(P.encode(P.Pdu("unbind", seq, 0, {})))
        self.pending[seq] = (token, now + self.response_timeout_s)
        self._start_unbinding("engine")
        return seq

    @property
    def unbind_done(self) -> bool:
        """The engine's unbind is complete: its unbind_resp and every outstanding response came."""
        return not self.pending

    def take_output(self) -> list[bytes]:
        out, self.out = self.out, []
        return out

    def close(self, reason: str) -> list[Any]:
        """The session is over: returns the tokens still waiting (their requests have no response)."""
        if self.state is CLOSED:
            return []
        self.state = CLOSED
        self._refused = reason or "closed"
        tokens = [t for t, _ in self.pending.values()]
        self.pending.clear()
        self.close_at = None
        return tokens

    def _start_unbinding(self, by: str) -> None:
        self.state = UNBINDING
        self.unbinding = by
        self._refused = f"unbinding ({by})"

    # ------------------------------------------------------------------ time
    def next_deadline(self) -> float | None:
        """When :meth:`expire` has something to do next (the oldest request's deadline, or the close after
        the SMSC's unbind), or None."""
        d = next(iter(self.pending.values()))[1] if self.pending else None
        c = self.close_at
        if c is not None and (d is None or c < d):
            return c
        return d

    def expire(self, now: float) -> list[Event]:
        """Requests whose deadline passed (oldest first: deadlines grow with the order of sending)."""
        events: list[Event] = []
        if self.state is CLOSED:
            return events
        edge = now + _EARLY
        pending = self.pending
        expired = []
        for seq, (_, deadline) in pending.items():
            if deadline > edge:
                break
            expired.append(seq)
        for seq in expired:
            token = pending.pop(seq)[0]
            self._timeouts += 1
            events.append(Timeout(token, seq, self._timeouts))
            if self._timeouts >= MAX_CONSECUTIVE_TIMEOUTS:
                events.append(Closed(f"{self._timeouts} responses timed out in a row"))
                return events
        if self.close_at is not None and self.close_at <= edge:
            events.append(Closed(f"unbound by SMSC; it did not close within {self.response_timeout_s}s"))
        return events

    def enquire_wait(self, now: float) -> float:
        """Seconds until an enquire_link is due (<= 0: due now); nothing was received for that long."""
        return self.enquire_link_s - (now - self.last_rx)

    # ------------------------------------------------------------------ receiving
    def receive_eof(self) -> Closed:
        """The SMSC closed the connection."""
        try:
            self._frames.eof()
        except EOFError:
            if self.unbinding:
                return Closed("unbound by SMSC" if self.unbinding == "smsc" else "unbound by engine")
            return Closed("connection closed by SMSC")
        except P.FrameError as exc:
            return Closed(f"unreadable stream: {exc}")
        raise AssertionError("FrameSplitter.eof returned")  # pragma: no cover

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Bytes from the socket: the events of every whole PDU they complete (answers that need no decision
        — enquire_link_resp, unbind_resp, generic_nack — are queued in :attr:`out` already)."""
        if self.state is CLOSED:
            return []
        self.last_rx = now
        events: list[Event] = []
        frames = self._frames
        pending = self.pending
        for frame in frames.feed(data):
            try:
                pdu = P.decode(frame)
            except P.PduError as exc:
                self.out.append(P.encode(P.generic_nack(exc.seq, exc.status)))
                events.append(Malformed(exc.seq, exc.status, str(exc)))
                continue
            if pdu.is_response:
                entry = pending.pop(pdu.seq, None)
                if entry is None:
                    events.append(Unexpected(pdu))
                    continue
                self._timeouts = 0
                if pdu.seq == self._bind_seq:
                    self._bind_seq = -1
                    if pdu.status == 0 and self.state is OPEN:
                        self.state = BOUND
                        events.append(Bound(pdu))
                events.append(Response(entry[0], pdu))
                continue
            cmd = pdu.command
            if cmd == "deliver_sm" and self.can_deliver:
                events.append(Deliver(pdu))
            elif cmd == "enquire_link":
                self.out.append(P.encode(P.response_for(pdu)))
            elif cmd == "unbind":
                self.out.append(P.encode(P.response_for(pdu)))
                if not self.unbinding:           # both sides unbinding at once: the engine's wait goes on
                    unsent = self._take_unsent_submits()
                    self._start_unbinding("smsc")
                    self.close_at = now + self.response_timeout_s
                    events.append(PeerUnbind(unsent, len(pending)))
            else:
                self.out.append(P.encode(P.generic_nack(pdu.seq, P.ESME_RINVCMDID)))
                events.append(Unsupported(pdu))
        if frames.error is not None:
            events.append(Closed(f"unreadable stream: {frames.error}"))
        return events

    def _take_unsent_submits(self) -> list[Any]:
        """Take the submit_sm still queued in :attr:`out` back, with their pending entries."""
        tokens = []
        keep = []
        for frame in self.out:
            if int.from_bytes(frame[4:8], "big") == _SUBMIT_SM_ID:
                entry = self.pending.pop(int.from_bytes(frame[12:16], "big"), None)
                if entry is not None:
                    tokens.append(entry[0])
                    continue
            keep.append(frame)
        self.out = keep
        return tokens

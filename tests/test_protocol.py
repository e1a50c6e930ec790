"""The SMPP session's sans-I/O core (smpp/protocol.py): bytes in, events and bytes out; no socket, no event
loop, the clock passed in. Every rule of the session is checked here by feeding bytes and reading bytes."""

from __future__ import annotations

from typing import Any

import pytest

from smppengine.smpp import pdu as P
from smppengine.smpp import protocol as proto
from smppengine.smpp.protocol import Protocol, RequestRefused

RT = 5.0            # response_timeout_s
EL = 30.0           # enquire_link_s


def out(p: Protocol) -> list[P.Pdu]:
    return [P.decode(b) for b in p.take_output()]


def wire(*pdus: P.Pdu) -> bytes:
    return b"".join(P.encode(x) for x in pdus)


def submit(text: str) -> dict[str, Any]:
    return {"source_addr": "1", "destination_addr": "447700900123", "short_message": text.encode()}


def bound(can_deliver: bool = True) -> Protocol:
    p = Protocol(RT, EL, can_deliver, now=0.0)
    p.bind("bind_transceiver", {"system_id": "x", "password": "y"}, "bind", 0.0)
    (bind,) = out(p)
    assert bind.command == "bind_transceiver" and bind.seq == 1 and p.state == proto.OPEN
    events = p.receive_data(wire(P.response_for(bind, 0, system_id="smsc")), 0.1)
    assert [type(e) for e in events] == [proto.Bound, proto.Response] and p.state == proto.BOUND
    return p


def test_a_refused_bind_stays_open_and_a_second_bind_is_refused() -> None:
    p = Protocol(RT, EL, True, now=0.0)
    p.bind("bind_transmitter", {}, "b", 0.0)
    with pytest.raises(RequestRefused):
        p.bind("bind_transmitter", {}, "b2", 0.0)
    (bind,) = out(p)
    (ev,) = p.receive_data(wire(P.response_for(bind, 0x0E)), 0.1)
    assert isinstance(ev, proto.Response) and ev.pdu.status == 0x0E and p.state == proto.OPEN


def test_requests_get_sequence_numbers_and_responses_find_their_token_in_any_cut() -> None:
    p = bound()
    seqs = [p.request("submit_sm", submit(f"m{i}"), f"tok{i}", 1.0) for i in range(5)]
    assert seqs == [2, 3, 4, 5, 6]
    sent = out(p)
    assert [x.seq for x in sent] == seqs and all(x.command == "submit_sm" for x in sent)
    data = wire(*(P.response_for(x, 0, message_id=f"id{x.seq}") for x in reversed(sent)))
    events = []
    for i in range(0, len(data), 7):                       # cut across PDUs, several to a read
        events += p.receive_data(data[i:i + 7], 1.5)
    assert [(e.token, e.pdu.params["message_id"]) for e in events if isinstance(e, proto.Response)] == [
        (f"tok{i}", f"id{seqs[i]}") for i in reversed(range(5))]
    assert not p.pending and p.next_deadline() is None


def test_sequence_numbers_wrap_within_smpp_range() -> None:
    p = bound()
    p._seq = 0x7FFFFFFF
    assert p.request("enquire_link", {}, "t", 1.0) == 1


def test_one_deadline_per_request_oldest_first_and_three_in_a_row_close() -> None:
    p = bound()
    p.request("submit_sm", submit("a"), "a", 1.0)
    p.request("submit_sm", submit("b"), "b", 1.1)
    assert p.next_deadline() == pytest.approx(1.0 + RT)
    assert p.expire(1.0 + RT - 0.01) == []
    (ev,) = p.expire(1.0 + RT)
    assert isinstance(ev, proto.Timeout) and ev.token == "a" and ev.consecutive == 1
    assert p.next_deadline() == pytest.approx(1.1 + RT)
    p.request("submit_sm", submit("c"), "c", 2.0)
    # a response in between resets the count
    c_seq = max(p.pending)
    p.receive_data(wire(P.Pdu("submit_sm_resp", c_seq, 0, {"message_id": "x"})), 2.5)
    (ev,) = p.expire(1.1 + RT)
    assert isinstance(ev, proto.Timeout) and ev.consecutive == 1
    for i in range(3):
        p.request("submit_sm", submit(f"d{i}"), f"d{i}", 10.0)
    events = p.expire(10.0 + RT)
    assert [type(e) for e in events] == [proto.Timeout, proto.Timeout, proto.Closed]
    assert "3 responses timed out in a row" in events[-1].reason           # type: ignore[attr-defined]


def test_enquire_link_is_answered_and_due_after_a_quiet_interval() -> None:
    p = bound()
    assert p.enquire_wait(10.0) == pytest.approx(EL - 9.9)
    assert p.receive_data(wire(P.Pdu("enquire_link", 77, 0, {})), 20.0) == []
    (resp,) = out(p)
    assert (resp.command, resp.seq) == ("enquire_link_resp", 77)
    assert p.enquire_wait(20.0 + EL) <= 0 < p.enquire_wait(20.0 + EL - 1)


def test_deliver_sm_is_handed_out_unless_transmitter_and_odd_input_gets_generic_nack() -> None:
    p = bound()
    deliver = P.Pdu("deliver_sm", 9, 0, {"source_addr": "4477", "destination_addr": "1", "short_message": b"hi"})
    (ev,) = p.receive_data(wire(deliver), 1.0)
    assert isinstance(ev, proto.Deliver) and ev.pdu.params["short_message"] == b"hi" and p.take_output() == []
    p.respond(P.response_for(ev.pdu, 0))
    assert [(x.command, x.seq) for x in out(p)] == [("deliver_sm_resp", 9)]

    tx = bound(can_deliver=False)
    (ev,) = tx.receive_data(wire(deliver), 1.0)
    assert isinstance(ev, proto.Unsupported)
    (nack,) = out(tx)
    assert (nack.command, nack.seq, nack.status) == ("generic_nack", 9, P.ESME_RINVCMDID)

    bad = bytearray(wire(P.Pdu("enquire_link", 12, 0, {})))
    bad[4:8] = (0x00000077).to_bytes(4, "big")                           # unknown command_id
    (ev,) = p.receive_data(bytes(bad), 2.0)
    assert isinstance(ev, proto.Malformed) and ev.seq == 12
    (nack,) = out(p)
    assert (nack.command, nack.seq, nack.status) == ("generic_nack", 12, P.ESME_RINVCMDID)

    (ev,) = p.receive_data(wire(P.Pdu("submit_sm_resp", 999, 0, {"message_id": "zz"})), 3.0)
    assert isinstance(ev, proto.Unexpected) and p.state == proto.BOUND


def test_an_unreadable_stream_closes() -> None:
    p = bound()
    (ev,) = p.receive_data(b"\x00\x00\x00\x05abcd", 1.0)
    assert isinstance(ev, proto.Closed) and "unreadable stream" in ev.reason
    p2 = bound()
    p2.receive_data(wire(P.Pdu("enquire_link", 3, 0, {}))[:10], 1.0)
    assert "unreadable stream" in p2.receive_eof().reason                 # EOF inside a PDU
    assert bound().receive_eof().reason == "connection closed by SMSC"


def test_smsc_unbind_answers_takes_back_unsent_submits_and_keeps_the_responses_coming() -> None:
    p = bound()
    sent = [p.request("submit_sm", submit(f"s{i}"), f"s{i}", 1.0) for i in range(3)]
    assert len(p.take_output()) == 3                          # written to the socket
    p.request("submit_sm", submit("queued"), "queued", 1.2)  # still queued when the unbind arrives
    p.respond(P.Pdu("deliver_sm_resp", 50, 0, {}))           # queued answers stay queued
    events = p.receive_data(wire(P.Pdu("unbind", 40, 0, {})), 2.0)
    (ev,) = events
    assert isinstance(ev, proto.PeerUnbind) and ev.unsent == ["queued"] and ev.outstanding == 3
    assert [(x.command, x.seq) for x in out(p)] == [("deliver_sm_resp", 50), ("unbind_resp", 40)]
    assert p.state == proto.UNBINDING and p.unbinding == "smsc"
    with pytest.raises(RequestRefused):
        p.request("submit_sm", submit("new"), "new", 2.1)
    with pytest.raises(RequestRefused):
        p.request("enquire_link", {}, "el", 2.1)
    assert p.take_output() == []                              # nothing new was sent
    # responses crossing the unbind are handed to their requests; receipts too
    resps = wire(*(P.Pdu("submit_sm_resp", s, 0, {"message_id": f"id{s}"}) for s in sent))
    receipt = P.Pdu("deliver_sm", 41, 0, {"source_addr": "1", "destination_addr": "2", "esm_class": 4,
                                          "short_message": b"id:x stat:DELIVRD"})
    events = p.receive_data(resps + wire(receipt), 2.15)
    assert [e.token for e in events if isinstance(e, proto.Response)] == ["s0", "s1", "s2"]
    assert isinstance(events[-1], proto.Deliver)
    # the SMSC closes: that is the unbind's end, not a lost connection
    assert p.receive_eof().reason == "unbound by SMSC"
    # ... or does not: closed response_timeout_s after its unbind
    assert p.next_deadline() == pytest.approx(2.0 + RT)
    assert p.expire(2.0 + RT - 0.1) == []
    (closed,) = p.expire(2.0 + RT)
    assert isinstance(closed, proto.Closed) and "did not close" in closed.reason


def test_engine_unbind_sends_nothing_after_it_and_is_done_when_every_response_came() -> None:
    p = bound()
    sent = [p.request("submit_sm", submit(f"e{i}"), f"e{i}", 1.0) for i in range(2)]
    p.take_output()
    useq = p.unbind("unbind", 2.0)
    (unbind,) = out(p)
    assert (unbind.command, unbind.seq) == ("unbind", useq) and p.unbinding == "engine"
    with pytest.raises(RequestRefused):
        p.request("submit_sm", submit("late"), "late", 2.1)
    with pytest.raises(RequestRefused):
        p.unbind("again", 2.1)
    events = p.receive_data(wire(P.Pdu("unbind_resp", useq, 0, {})), 2.2)  # the unbind_resp first
    assert [e.token for e in events if isinstance(e, proto.Response)] == ["unbind"] and not p.unbind_done
    events = p.receive_data(wire(*(P.Pdu("submit_sm_resp", s, 0, {"message_id": "m"}) for s in sent)), 2.3)
    assert [e.token for e in events if isinstance(e, proto.Response)] == ["e0", "e1"] and p.unbind_done
    assert p.receive_eof().reason == "unbound by engine"


def test_an_smsc_unbind_crossing_the_engines_is_answered_and_the_engines_wait_goes_on() -> None:
    p = bound()
    s = p.request("submit_sm", submit("x"), "x", 1.0)
    p.unbind("u", 1.5)
    p.take_output()
    assert p.receive_data(wire(P.Pdu("unbind", 8, 0, {})), 1.6) == []
    assert [(x.command, x.seq) for x in out(p)] == [("unbind_resp", 8)]
    assert p.unbinding == "engine" and p.close_at is None and not p.unbind_done
    (ev,) = p.receive_data(wire(P.Pdu("submit_sm_resp", s, 0, {"message_id": "m"})), 1.7)
    assert isinstance(ev, proto.Response) and ev.token == "x"


def test_close_hands_back_what_waits_and_ignores_what_comes_after() -> None:
    p = bound()
    p.request("submit_sm", submit("a"), "a", 1.0)
    p.request("submit_sm", submit("b"), "b", 1.0)
    assert len(p.take_output()) == 2
    assert p.close("gone") == ["a", "b"] and p.state == proto.CLOSED and p.close("again") == []
    assert p.receive_data(wire(P.Pdu("enquire_link", 5, 0, {})), 2.0) == [] and p.expire(99.0) == []
    p.respond(P.Pdu("deliver_sm_resp", 5, 0, {}))
    assert p.take_output() == [] and p.next_deadline() is None
    with pytest.raises(RequestRefused, match="gone"):
        p.request("submit_sm", submit("c"), "c", 2.0)

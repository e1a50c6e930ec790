"""deliver.py (a deliver_sm sorted into receipt or MO), smpp/resp_order.py (a receipt before its resp) and the
narrow view http.py and metrics.py read (view.py). No sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import orjson
import pytest

from smppengine import http
from smppengine.config import SmscConfig
from smppengine.deliver import mo_parts
from smppengine.metrics import Metrics
from smppengine.smpp import pdu as P
from smppengine.smpp import resp_order
from smppengine.smpp.resp_order import RespOrder
from smppengine.throttle import AdaptiveRate
from smppengine.view import EngineView, SessionView, SmscView


# ------------------------------------------------------------------ mo_parts
def test_mo_parts_of_a_whole_mo() -> None:
    assert mo_parts({"esm_class": 0, "short_message": b"hello"}) == (b"hello", None)
    assert mo_parts({"message_payload": b"long"}) == (b"long", None)
    assert mo_parts({}) == (b"", None)


def test_mo_parts_from_the_udh() -> None:
    sm = bytes.fromhex("050003") + bytes([7, 3, 2]) + b"part two"
    assert mo_parts({"esm_class": 0x40, "short_message": sm}) == (b"part two", (7, 3, 2))
    sixteen = bytes.fromhex("060804") + bytes([0x01, 0x02, 2, 1]) + b"one"
    assert mo_parts({"esm_class": 0x40, "short_message": sixteen}) == (b"one", (0x0102, 2, 1))


def test_mo_parts_from_sar_tlvs_and_a_single_part_is_whole() -> None:
    params = {"short_message": b"x", "sar_msg_ref_num": 300, "sar_total_segments": 2, "sar_segment_seqnum": 2}
    assert mo_parts(params) == (b"x", (300, 2, 2))
    assert mo_parts({**params, "sar_total_segments": 1}) == (b"x", None)
    # UDHI wins over SAR TLVs: the UDH is what the SMSC put in the octets
    sm = bytes.fromhex("050003") + bytes([9, 2, 1]) + b"u"
    assert mo_parts({**params, "esm_class": 0x40, "short_message": sm}) == (b"u", (9, 2, 1))


# ------------------------------------------------------------------ RespOrder
def _ok(seq: int, message_id: str) -> P.Pdu:
    return P.Pdu("submit_sm_resp", seq, 0, {"message_id": message_id})


async def test_a_receipt_whose_resp_was_handled_goes_on_at_once() -> None:
    order = RespOrder()
    n = order.sent()
    order.answered(n, _ok(1, "abc"))
    calls: list[str] = []

    def then() -> asyncio.Future[str]:
        calls.append("stored")
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        fut.set_result("matched")
        return fut

    assert order.known("abc")
    assert await order.after_resp("abc", then) == "matched"
    assert calls == ["stored"]


async def test_a_receipt_that_overtook_its_resp_is_stored_after_the_resp() -> None:
    order = RespOrder()
    n = order.sent()
    events: list[str] = []

    def then() -> asyncio.Future[str]:
        events.append("receipt stored")
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        fut.set_result("matched")
        return fut

    assert not order.known("abc")
    out = order.after_resp("abc", then)
    await asyncio.sleep(0)
    assert events == [] and not out.done()
    events.append("resp handled")
    order.answered(n, _ok(1, "ABC"))          # any case: receipts and resps spell ids differently
    assert await asyncio.wait_for(out, 5) == "matched"
    assert events == ["resp handled", "receipt stored"]


async def test_a_receipt_for_an_id_never_answered_waits_for_the_submits_sent_before_it_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resp_order, "RESP_WAIT_S", 60.0)   # the horizon resolves it, not the timer
    order = RespOrder()
    first = order.sent()
    seen = order.seen("other")
    later = order.sent()                      # sent after the receipt arrived: not waited for
    await asyncio.sleep(0)
    assert not seen.done()
    order.answered(first, _ok(1, "zzz"))
    await asyncio.wait_for(seen, 5)
    order.answered(later, None)


async def test_the_wait_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resp_order, "RESP_WAIT_S", 0.01)
    order = RespOrder()
    order.sent()                              # never answered (an SMSC that answers after the receipt's resp)
    await asyncio.wait_for(order.seen("abc"), 5)


# ------------------------------------------------------------------ the narrow view
@dataclass
class _Session:
    id: str = "a/0"
    can_submit: bool = True
    reserved: int = 3
    window: int = 10


@dataclass
class _Smsc:
    cfg: SmscConfig = field(default_factory=lambda: SmscConfig(name="a", host="h", port=1, system_id="x",
                                                               password="y", tps=50.0))
    bound_sessions: int = 1
    configured_sessions: int = 2
    sessions: Sequence[SessionView] = field(default_factory=lambda: [_Session()])
    adaptive: AdaptiveRate = field(default_factory=lambda: AdaptiveRate(50.0, 0.0))
    throttle_pauses: int = 4
    reconnects: int = 5


@dataclass
class _View:
    instance: str = "i1"
    mqtt_url: str = "mqtt://broker:1883"
    mqtt_connected: bool = True
    mqtt_reconnects: int = 2
    broker_dropped: int | None = None
    smscs: Mapping[str, SmscView] = field(default_factory=lambda: {"a": _Smsc()})
    backlog: int = 7
    events_published: int = 11
    store_failed: bool = False


def test_health_reads_only_the_view() -> None:
    view: EngineView = _View()
    ok, doc = http.health(view)
    assert ok and doc == {"status": "ok", "instance": "i1", "mqtt": True, "backlog": 7,
                          "smsc": {"a": {"bound": 1, "configured": 2}}}
    bad = _View(mqtt_connected=False, store_failed=True, smscs={"a": _Smsc(bound_sessions=0)})
    ok, doc = http.health(bad)
    assert not ok and doc["reasons"] == ["mqtt not connected (mqtt://broker:1883)", "smsc a: no session bound",
                                         "store: the last commit failed"]
    out = http.route(bad, lambda: b"metrics\n", "GET", "/healthz")
    assert out.startswith(b"HTTP/1.1 503") and orjson.loads(out.split(b"\r\n\r\n", 1)[1])["status"] == "unhealthy"
    assert http.route(view, lambda: b"m 1\n", "GET", "/metrics").endswith(b"\r\n\r\nm 1\n")


def test_live_gauges_read_only_the_view() -> None:
    text = Metrics(live=_View(broker_dropped=9)).scrape().decode()
    for line in ('smppengine_sessions_bound{smsc="a"} 1.0', 'smppengine_sessions_configured{smsc="a"} 2.0',
                 'smppengine_window_in_use{session="a/0",smsc="a"} 3.0', "smppengine_dispatcher_backlog 7.0",
                 "smppengine_mqtt_connected 1.0", "smppengine_mqtt_broker_dropped 9.0",
                 "smppengine_events_published_total 11.0", 'smppengine_reconnects_total{smsc="a"} 5.0'):
        assert line in text, line
    assert "smppengine_dispatcher_backlog" not in Metrics().scrape().decode()

"""Delivery receipts: built from an accepted submit_sm, sent as deliver_sm to a bound receiver of the same
system_id (round robin), queued while there is none, retried after a failed or missing deliver_sm_resp.

:class:`Receipts` is a part of :class:`~smppengine.simulator.server.Simulator` (a mixin: the methods use the
simulator's sessions, counters and knobs)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog

from smppengine.receipts import MESSAGE_STATES as RECEIPT_STATES
from smppengine.simulator.session import _Mo, _Receipt, _Session
from smppengine.smpp.fastcodec import encode_deliver_sm as _encode_deliver_sm
from smppengine.smpp.pdu import ESME_ROK, Pdu

#: receipt ``stat:`` word → message_state TLV value (SMPP 3.4 §5.2.28)
MESSAGE_STATES: dict[str, int] = {stat: value for value, stat in RECEIPT_STATES.items()}


def _receipt_excerpt(short_message: bytes, esm_class: int, data_coding: int) -> bytes:
    """The ``text:`` field: the first 20 characters of the message, printable ASCII only."""
    body = short_message
    if esm_class & 0x40 and body:  # UDHI: skip the user data header
        body = body[1 + body[0] :]
    if data_coding == 8:
        chars = body.decode("utf-16-be", "replace")[:20]
    else:
        chars = body[:20].decode("latin-1")
    return "".join(c if " " <= c <= "~" else "?" for c in chars).encode("ascii")


class Receipts:
    """Receipt dispatch, as methods of the simulator."""

    _sessions: dict[int, _Session]
    _rr: dict[str, int]
    _pending_receipts: dict[str, deque[_Receipt]]
    _log: structlog.typing.FilteringBoundLogger
    _changed: Callable[[], None]
    receipt_extra_tlvs: dict[str, Any]
    receipt_resp_timeout: float
    receipt_retry_s: float
    receipts_sent: int
    receipts_acked: int
    deliver_resps: list[tuple[int, int]]

    def _receivers(self, system_id: str) -> list[_Session]:
        return [s for s in self._sessions.values() if s.can_rx and not s.closed and s.system_id == system_id]

    def _dispatch_receipt(self, r: _Receipt) -> None:
        receivers = self._receivers(r.system_id)
        if not receivers:
            self._pending_receipts.setdefault(r.system_id, deque()).append(r)
            return
        i = self._rr.get(r.system_id, 0)
        self._rr[r.system_id] = i + 1
        self._send_receipt(receivers[i % len(receivers)], r)

    def _send_receipt(self, sess: _Session, r: _Receipt) -> None:
        done_date = time.strftime("%y%m%d%H%M", time.gmtime())
        dlvrd = "001" if r.stat == "DELIVRD" else "000"
        err = "000" if r.stat in ("DELIVRD", "ENROUTE", "ACCEPTD") else "001"
        text = (
            f"id:{r.message_id} sub:001 dlvrd:{dlvrd} submit date:{r.submit_date} done date:{done_date} "
            f"stat:{r.stat} err:{err} text:"
        ).encode("ascii") + r.text
        params: dict[str, Any] = {
            "service_type": "",
            "source_addr_ton": r.dest_addr_ton,
            "source_addr_npi": r.dest_addr_npi,
            "source_addr": r.destination_addr,
            "dest_addr_ton": r.source_addr_ton,
            "dest_addr_npi": r.source_addr_npi,
            "destination_addr": r.source_addr,
            "esm_class": 0x04,
            "protocol_id": 0,
            "priority_flag": 0,
            "schedule_delivery_time": "",
            "validity_period": "",
            "registered_delivery": 0,
            "replace_if_present_flag": 0,
            "data_coding": 0,
            "sm_default_msg_id": 0,
            "short_message": text,
        }
        if r.tlvs:
            params["receipted_message_id"] = r.message_id
            params["message_state"] = MESSAGE_STATES[r.stat]
        if self.receipt_extra_tlvs:
            params.update(self.receipt_extra_tlvs)
        seq = sess.next_seq()
        r.attempts += 1
        sess.outstanding[seq] = r
        loop = asyncio.get_running_loop()
        r.timer = loop.call_later(self.receipt_resp_timeout, self._receipt_timeout, sess, seq)
        sess.write(_encode_deliver_sm(Pdu("deliver_sm", seq, 0, params)))  # our own params: no validation
        self.receipts_sent += 1

    def _flush_receipts(self, system_id: str) -> None:
        queue = self._pending_receipts.pop(system_id, None)
        if not queue:
            return
        self._log.info("sim_flush_receipts", system_id=system_id, count=len(queue))
        while queue:
            self._dispatch_receipt(queue.popleft())

    def _receipt_timeout(self, sess: _Session, seq: int) -> None:
        item = sess.outstanding.pop(seq, None)
        if isinstance(item, _Receipt):
            item.timer = None
            self._log.info("sim_receipt_timeout", session=sess.id, seq=seq, system_id=item.system_id)
            self._release(item)
            self._dispatch_receipt(item)

    def _release(self, r: _Receipt) -> None:
        if r.after_ack is not None:
            cb, r.after_ack = r.after_ack, None
            cb()

    def _on_deliver_failed(self, item: _Receipt | _Mo, status: int) -> None:
        if isinstance(item, _Mo):
            if not item.future.done():
                item.future.set_result(status)
            return
        if item.timer is not None:
            item.timer.cancel()
            item.timer = None
        self._release(item)
        asyncio.get_running_loop().call_later(self.receipt_retry_s, self._dispatch_receipt, item)

    def _on_deliver_resp(self, sess: _Session, seq: int, status: int) -> None:
        self.deliver_resps.append((seq, status))
        item = sess.outstanding.pop(seq, None)
        if item is not None:
            if isinstance(item, _Mo):
                if not item.future.done():
                    item.future.set_result(status)
            elif status == ESME_ROK:
                if item.timer is not None:
                    item.timer.cancel()
                    item.timer = None
                self.receipts_acked += 1
                self._release(item)
            else:
                self._on_deliver_failed(item, status)
        self._changed()

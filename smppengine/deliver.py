"""A deliver_sm from the SMSC: a receipt or an MO, and where each goes.

* A receipt (esm_class or the receipt TLVs say so: receipts.is_receipt) is parsed (receipts.parse_receipt) and
  correlated through the store (store.receipt_nowait: a future, no task; the session answers deliver_sm_resp
  once it is committed). A receipt that overtook its submit_sm_resp waits for it first (smpp/resp_order.py).
* An MO is cut from its UDH or SAR TLVs (:func:`mo_parts`), stored (store.mo: reassembled and committed, then
  published on P/inbound), and handed to the opt-out runtime (STOP / START, optout_runtime.py).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import structlog

from . import text
from .config import Config
from .metrics import Metrics
from .optout_runtime import OptOutRuntime
from .receipts import Receipt, is_receipt, parse_receipt
from .smpp import pdu as P
from .smpp.client import SmscClient
from .smpp.session import Session
from .store import Store
from .tlvs import event_tlvs

log = structlog.get_logger(__name__)

Concat = tuple[int, int, int]       # (reference, total parts, this part's number)


def mo_parts(params: Mapping[str, Any]) -> tuple[bytes, Concat | None]:
    """An MO's user data (without its UDH) and its concatenation (ref, total, seq), or None when it is whole:
    from the UDH when esm_class has UDHI (0x40), else from the sar_* TLVs. Pure."""
    data: bytes = params.get("short_message") or params.get("message_payload") or b""
    concat: Concat | None = None
    if int(params.get("esm_class", 0)) & 0x40:
        info, data = text.split_udh(data)
        if info is not None:
            concat = (info.ref, info.total, info.seq)
    elif "sar_msg_ref_num" in params and "sar_total_segments" in params:
        concat = (int(params["sar_msg_ref_num"]), int(params["sar_total_segments"]),
                  int(params.get("sar_segment_seqnum", 1)))
    if concat is not None and concat[1] <= 1:
        concat = None
    return data, concat


class Deliveries:
    """The deliver_sm handler of every SMSC client (``on_deliver``).

    ``clients``: the engine's SMSC clients by name (the same dict a reload updates); ``settings``: the current
    config (compliance rules, default_ttl: a reload may change them); ``counters``: the engine's counters
    (receipts, receipts_held, receipts_unparsable, mo)."""

    def __init__(self, store: Store, clients: Mapping[str, SmscClient], metrics: Metrics, optouts: OptOutRuntime,
                 settings: Callable[[], Config], counters: dict[str, int]) -> None:
        self.store = store
        self.clients = clients
        self.metrics = metrics
        self.optouts = optouts
        self.settings = settings
        self.counters = counters

    def on_deliver(self, session: Session, pdu: P.Pdu) -> int | asyncio.Future[Any] | Coroutine[Any, Any, int]:
        """A deliver_sm: a receipt is correlated through the store (a future: the session answers once it is
        committed); an MO is stored by :meth:`on_mo`."""
        params = pdu.params
        smsc = session.smsc
        if not is_receipt(int(params.get("esm_class", 0)), params):
            return self.on_mo(session, pdu)
        try:
            receipt = parse_receipt(params.get("short_message", b"") or b"", params)
        except ValueError as exc:
            self.counters["receipts_unparsable"] += 1
            self.metrics.receipt(smsc.name, "", "", "unparsable")
            log.warning("receipt_unparsable", smsc=smsc.name, session=session.id, seq=pdu.seq, error=str(exc))
            return 0
        client = self.clients.get(smsc.name)
        if client is not None and not client.order.known(receipt.message_id):    # it overtook its resp
            return client.order.after_resp(receipt.message_id,
                                           functools.partial(self._store_receipt, smsc.name, receipt))
        return self._store_receipt(smsc.name, receipt)

    def _store_receipt(self, smsc: str, receipt: Receipt) -> asyncio.Future[str]:
        fut = self.store.receipt_nowait(smsc, receipt)
        fut.add_done_callback(functools.partial(self._receipt_stored, smsc, receipt))
        return fut

    def _receipt_stored(self, smsc: str, receipt: Receipt, fut: asyncio.Future[str]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return                          # the session answers ESME_RSYSERR and logs it
        outcome = fut.result()
        self.counters["receipts"] += 1
        self.metrics.receipt(smsc, receipt.message_id, receipt.stat, outcome)
        if outcome == "held":
            self.counters["receipts_held"] += 1
            log.info("receipt_held", smsc=smsc, smsc_message_id=receipt.message_id, stat=receipt.stat)
        elif outcome == "late":
            log.info("receipt_late", smsc=smsc, smsc_message_id=receipt.message_id, stat=receipt.stat)

    async def on_mo(self, session: Session, pdu: P.Pdu) -> int:
        params = pdu.params
        smsc = session.smsc
        config = self.settings()
        data, concat = mo_parts(params)
        msg = await self.store.mo(smsc.name, str(params.get("source_addr", "")),
                                  str(params.get("destination_addr", "")), data, int(params.get("data_coding", 0)),
                                  concat, smsc.default_alphabet, config.compliance, tlvs=event_tlvs(params))
        self.counters["mo"] += 1
        self.metrics.mo.labels(smsc.name).inc()
        if msg is not None:
            log.info("mo_received", smsc=smsc.name, session=session.id, mo_id=msg["id"])
            await self.optouts.on_mo(msg, config.compliance, config.engine.default_ttl)
        return 0

"""Mobile-originated messages: :meth:`MoInjection.inject_mo` sends a deliver_sm to a bound receiver and waits
for its deliver_sm_resp. A part of :class:`~smppengine.simulator.server.Simulator` (a mixin)."""

from __future__ import annotations

import asyncio
from typing import Any

from smppengine.simulator.session import _Mo, _Session
from smppengine.smpp.pdu import Pdu, encode


class NoReceiverError(RuntimeError):
    """inject_mo found no bound receiver / transceiver session."""


def _encode_text(text: str, data_coding: int) -> bytes:
    """Encode MO text: UCS-2 for data_coding 8, Latin-1 for 3, else GSM 03.38 unpacked ('?' if not in it)."""
    if data_coding == 8:
        return text.encode("utf-16-be")
    if data_coding == 3:
        return text.encode("latin-1", "replace")
    try:
        from smppengine.gsm0338 import ENCODE_MAP
    except ImportError:  # pragma: no cover - the module ships with the package
        return text.encode("ascii", "replace")
    return b"".join(ENCODE_MAP.get(ord(ch), b"?") for ch in text)


class MoInjection:
    """MO injection, as a method of the simulator."""

    _sessions: dict[int, _Session]
    _mo_rr: int
    mo_sent: int

    async def inject_mo(
        self,
        source: str,
        destination: str,
        text: str | bytes,
        data_coding: int = 0,
        *,
        esm_class: int = 0,
        tlvs: dict[str, Any] | None = None,
        system_id: str | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> None:
        """Send a mobile-originated deliver_sm to a bound receiver/transceiver (round robin; optionally only
        sessions of ``system_id``) and wait for its deliver_sm_resp (recorded in ``deliver_resps``)."""
        candidates = [
            s for s in self._sessions.values()
            if s.can_rx and not s.closed and (system_id is None or s.system_id == system_id)
        ]
        if not candidates:
            raise NoReceiverError("no bound receiver or transceiver session")
        sess = candidates[self._mo_rr % len(candidates)]
        self._mo_rr += 1
        body = text if isinstance(text, bytes) else _encode_text(text, data_coding)
        params: dict[str, Any] = {
            "service_type": "",
            "source_addr_ton": 1 if source.isdigit() else 5,
            "source_addr_npi": 1 if source.isdigit() else 0,
            "source_addr": source,
            "dest_addr_ton": 0,
            "dest_addr_npi": 1,
            "destination_addr": destination,
            "esm_class": esm_class,
            "protocol_id": 0,
            "priority_flag": 0,
            "schedule_delivery_time": "",
            "validity_period": "",
            "registered_delivery": 0,
            "replace_if_present_flag": 0,
            "data_coding": data_coding,
            "sm_default_msg_id": 0,
            "short_message": body,
        }
        if tlvs:
            params.update(tlvs)
        seq = sess.next_seq()
        pdu = Pdu(command="deliver_sm", seq=seq, params=params)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        sess.outstanding[seq] = _Mo(pdu, fut)
        sess.write(encode(pdu))
        self.mo_sent += 1
        try:
            async with asyncio.timeout(timeout):
                await fut
        finally:
            sess.outstanding.pop(seq, None)

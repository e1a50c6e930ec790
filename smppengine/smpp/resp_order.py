"""A receipt before its resp: the one place that orders a receipt after the submit_sm_resp that carries its id.

SMSCs send a receipt on any bind, often before the submit_sm_resp on another bind has been handled (or in the
same read, before the sender has stored that resp). Applied at once, such a receipt finds no SMSC message id
in the store and is held there, then matched again when the resp is committed. Waiting a few milliseconds
here instead keeps the store's work to one operation per receipt.

One :class:`RespOrder` per SMSC account (:class:`~smppengine.smpp.client.SmscClient` owns it): the client
tells it when a submit leaves (:meth:`RespOrder.sent`) and when it ends (:meth:`RespOrder.answered`, with the
resp); the deliver_sm handler (deliver.py) asks :meth:`RespOrder.known` (the usual case: yes, go on) or
chains the receipt's store operation after the resp with :meth:`RespOrder.after_resp`. Futures and
callbacks, no task per receipt.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from ..receipts import receipt_id_keys
from . import pdu as P

T = TypeVar("T")

ANSWERED_KEYS_KEPT = 50_000    # receipt keys of recently answered submits (2-3 per submit)
ANSWERED_KEYS_SLACK = 6_250    # trimmed back to ANSWERED_KEYS_KEPT once this many more are held
RESP_WAIT_S = 0.1              # longest wait of a receipt for its resp (some SMSCs send the resp only after
                               # the receipt's deliver_sm_resp: then the store holds the receipt)


class RespOrder:
    def __init__(self) -> None:
        # submits sent and not answered yet (ordinals in send order), and the receipt keys of the SMSC message
        # ids answered lately
        self._sent = 0
        self._unanswered: dict[int, None] = {}
        self._answered_keys: dict[str, None] = {}
        self._key_waiters: dict[str, asyncio.Future[None]] = {}                # receipt key -> its waiter
        self._horizon_waiters: deque[tuple[int, asyncio.Future[None]]] = deque()  # (last ordinal sent before)

    def sent(self) -> int:
        """A submit_sm is about to leave: its ordinal, for :meth:`answered`."""
        self._sent += 1
        ordinal = self._sent
        self._unanswered[ordinal] = None
        return ordinal

    def answered(self, ordinal: int, resp: P.Pdu | None) -> None:
        """The submit ``ordinal`` ended (``resp`` None: no resp, e.g. the connection went away). Called in the
        sending task as its submit ends, before the caller stores the resp: a receipt woken here goes on after
        that store operation was queued, so the receipt is applied after it."""
        del self._unanswered[ordinal]
        if resp is not None and resp.status == 0 and resp.command == "submit_sm_resp":
            keys = self._answered_keys
            waiting = self._key_waiters
            for k in receipt_id_keys(str(resp.params.get("message_id", ""))):
                keys[k] = None
                if waiting:
                    w = waiting.pop(k, None)
                    if w is not None and not w.done():
                        w.set_result(None)
            if len(keys) > ANSWERED_KEYS_KEPT + ANSWERED_KEYS_SLACK:
                # Trimmed in bulk, not a few keys per resp: a dict keeps the slots of deleted keys until it
                # grows again, and iterating it from the oldest end walks over every one of them. Trimming
                # 2-3 keys per resp made each trim walk tens of thousands of slots (~15 µs per message
                # once 50,000 keys were held); in bulk it is one walk per ~2,000 resps.
                for k in list(itertools.islice(keys, len(keys) - ANSWERED_KEYS_KEPT)):
                    del keys[k]
        hw = self._horizon_waiters
        if hw:
            lowest = next(iter(self._unanswered), self._sent + 1)
            while hw and hw[0][0] < lowest:
                w = hw.popleft()[1]
                if not w.done():
                    w.set_result(None)

    def known(self, message_id: str) -> bool:
        """True when a receipt for ``message_id`` need not wait (:meth:`seen` would return at once)."""
        if not self._unanswered:
            return True
        keys = receipt_id_keys(message_id)
        return not keys or not self._answered_keys.keys().isdisjoint(keys)

    def seen(self, message_id: str) -> asyncio.Future[None]:
        """A receipt arrived for ``message_id``: a future resolved once the resp that carries this id has been
        handled (already resolved when it was, the usual case), or once every submit sent before the receipt
        arrived has been answered (the receipt is then for an older message, or a resp this process never
        saw: the store holds it), at most RESP_WAIT_S."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        if self.known(message_id):
            waiter.set_result(None)
            return waiter
        keys = receipt_id_keys(message_id)
        for k in keys:
            self._key_waiters[k] = waiter
        self._horizon_waiters.append((self._sent, waiter))
        timer = loop.call_later(RESP_WAIT_S, _resolve, waiter)

        def forget(_: asyncio.Future[None]) -> None:
            timer.cancel()
            for k in keys:
                if self._key_waiters.get(k) is waiter:
                    del self._key_waiters[k]

        waiter.add_done_callback(forget)
        return waiter

    def after_resp(self, message_id: str, then: Callable[[], asyncio.Future[T]]) -> asyncio.Future[T]:
        """``then()`` (a receipt's store operation) once :meth:`seen` resolves; its result, through a future.
        Callbacks, not a task (the usual receipt on a busy bind arrives in the same read as its resp, before
        the sender has stored that resp)."""
        if self.known(message_id):
            return then()
        out: asyncio.Future[T] = asyncio.get_running_loop().create_future()

        def stored(fut: asyncio.Future[T]) -> None:
            if out.done():
                return
            if fut.cancelled():
                out.cancel()
            elif (exc := fut.exception()) is not None:
                out.set_exception(exc)
            else:
                out.set_result(fut.result())

        def seen(_: asyncio.Future[None]) -> None:
            if not out.done():
                then().add_done_callback(stored)

        self.seen(message_id).add_done_callback(seen)
        return out


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)

"""One SMPP session against a minimal SMSC over real TCP: response timeouts (one timer for the oldest
request, not one per request) and PDUs that arrive several to a read or cut across reads."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from smppengine.config import SmscConfig
from smppengine.smpp import pdu as P
from smppengine.smpp.session import ResponseTimeout, Session, SessionClosed

from .helpers import FrameReader


class MuteSmsc:
    """Binds, answers a submit_sm only when its text is b"answer"; ``chunk`` bytes per write (to cut PDUs)."""

    def __init__(self, chunk: int = 0) -> None:
        self.chunk = chunk
        self.server: asyncio.Server | None = None
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frames = FrameReader(reader)
        with contextlib.suppress(EOFError, P.FrameError, ConnectionError):
            while True:
                pdu = await frames.pdu()
                if pdu.command == "bind_transceiver":
                    out = P.encode(P.response_for(pdu, 0, system_id="mute"))
                elif pdu.command == "submit_sm" and pdu.params.get("short_message") == b"answer":
                    # answered twice over: three resps in one write, or cut in small writes
                    out = P.encode(P.response_for(pdu, 0, message_id=f"id{pdu.seq}"))
                else:
                    continue
                if self.chunk:
                    for i in range(0, len(out), self.chunk):
                        writer.write(out[i:i + self.chunk])
                        await writer.drain()
                else:
                    writer.write(out)

    async def __aenter__(self) -> MuteSmsc:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


@contextlib.asynccontextmanager
async def session_to(smsc: MuteSmsc, timeout_s: float) -> AsyncIterator[Session]:
    cfg = SmscConfig(name="m", host="127.0.0.1", port=smsc.port, system_id="x", password="y",
                     window=50, response_timeout_s=timeout_s, enquire_link_s=60)
    s = Session(cfg, "m-1", "transceiver", None)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def submit(text: bytes) -> dict[str, object]:
    return {"source_addr": "1", "destination_addr": "2", "short_message": text}


async def test_unanswered_requests_time_out_at_their_deadline_and_three_close_the_session() -> None:
    async with MuteSmsc() as smsc, session_to(smsc, 0.3) as s, asyncio.timeout(10):
        t0 = time.monotonic()
        answered = await s.request("submit_sm", submit(b"answer"))
        assert answered.params["message_id"].startswith("id")
        first = asyncio.ensure_future(s.request("submit_sm", submit(b"mute")))
        await asyncio.sleep(0.1)                      # sent 0.1 s apart: each must wait its own 0.3 s
        second = asyncio.ensure_future(s.request("submit_sm", submit(b"mute")))
        with pytest.raises(ResponseTimeout):
            await first
        t_first = time.monotonic()
        assert not second.done()                      # not swept with the first: its deadline is later
        with pytest.raises(ResponseTimeout):
            await second
        t_second = time.monotonic()
        assert 0.25 <= t_first - t0 < 2.0 and t_second - t_first >= 0.05
        assert not s.closed.is_set()                  # two in a row: still open
        with pytest.raises(ResponseTimeout):
            await s.request("submit_sm", submit(b"mute"))
        assert s.closed.is_set() and "timed out in a row" in s.close_reason
        with pytest.raises(SessionClosed):
            await s.request("submit_sm", submit(b"answer"))


@pytest.mark.parametrize("chunk", [0, 3])
async def test_responses_several_to_a_read_or_cut_across_reads(chunk: int) -> None:
    async with MuteSmsc(chunk) as smsc, session_to(smsc, 5) as s:
        resps = await asyncio.gather(*(s.request("submit_sm", submit(b"answer")) for _ in range(100)))
        assert [r.params["message_id"] for r in resps] == [f"id{r.seq}" for r in resps]
        assert len({r.seq for r in resps}) == 100 and s.outstanding == 0


async def test_receipt_keys_of_answered_submits_are_kept_within_bounds_and_forget_the_oldest(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A receipt for a submit answered lately need not wait for its resp; the client keeps the receipt keys of
    at least the last ANSWERED_KEYS_KEPT answered ids, never more than the slack above that, and the oldest
    are the ones it forgets (trimmed in bulk: a trim of a few keys per resp walked the dict's dead slots)."""
    from smppengine.smpp import resp_order

    monkeypatch.setattr(resp_order, "ANSWERED_KEYS_KEPT", 300)
    monkeypatch.setattr(resp_order, "ANSWERED_KEYS_SLACK", 30)
    c = resp_order.RespOrder()
    sizes = []
    for i in range(1, 1001):
        assert c.sent() == i
        c._unanswered[i + 10_000] = None        # a submit still unanswered: receipts may have to wait
        c.answered(i, P.Pdu("submit_sm_resp", i, 0, {"message_id": f"zz{i:04d}"}))   # one key per id
        sizes.append(len(c._answered_keys))
    assert max(sizes) <= 330 and min(sizes[300:]) >= 300
    assert c.known("zz1000") and c.known("ZZ0701")       # the newest 300: known, any case
    assert not c.known("zz0001") and not c.known("zz0600")  # the oldest: forgotten


def test_micro_session_bench_prints_one_json_line() -> None:
    """bench/micro_session.py (one Session against a stub SMSC) runs and reports its figures."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "bench/micro_session.py", "--n", "500", "--window", "20"], cwd=root,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stdout[-2000:]
    doc = json.loads(lines[0])
    assert doc["n"] == 500 and doc["msg_s"] > 0 and doc["cpu_us_per_msg"] > 0 and doc["machine"]["yardstick_ms"] > 0

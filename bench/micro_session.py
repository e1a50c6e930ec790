"""Micro-benchmark of one SMPP session (smpp/session.py over smpp/protocol.py): prints ONE JSON line.

The engine's per-message pattern on one bind over loopback TCP, in one process: ``window`` senders each
loop Session.submit (request → submit_sm → submit_sm_resp), and a minimal SMSC in the same event loop
answers every submit_sm with a pre-encoded submit_sm_resp and a receipt deliver_sm, which the session
hands to a handler that answers 0 at once (deliver_sm_resp). Reported: messages per second and CPU µs per
message (process time: the session, the SMSC stub and the event loop together; the stub is the same for
every tree compared).

  --tree PATH   import smppengine from PATH (default: this checkout), to compare two trees A B A B ...

Usage: python bench/micro_session.py [--n 20000] [--window 200] [--tree PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
_HEADER = struct.Struct(">IIII")


async def smsc(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, receipt_body: bytes) -> None:
    """Bind OK, then for each submit_sm: submit_sm_resp + deliver_sm (receipt); everything else ignored."""
    buf = b""
    seq_out = 0
    while True:
        data = await reader.read(65536)
        if not data:
            return
        buf += data
        out = []
        pos = 0
        while len(buf) - pos >= 16:
            length, cid, _, seq = _HEADER.unpack_from(buf, pos)
            if len(buf) - pos < length:
                break
            pos += length
            if cid == 0x00000004:                                   # submit_sm
                mid = b"%x\x00" % seq
                out.append(_HEADER.pack(16 + len(mid), 0x80000004, 0, seq) + mid)
                seq_out += 1
                out.append(_HEADER.pack(16 + len(receipt_body), 0x00000005, 0, seq_out) + receipt_body)
            elif cid in (0x00000009, 0x00000002, 0x00000001):      # bind_*
                body = b"stub\x00"
                out.append(_HEADER.pack(16 + len(body), cid | 0x80000000, 0, seq) + body)
            elif cid == 0x00000006:                                 # unbind: answer, close
                writer.write(b"".join(out) + _HEADER.pack(16, 0x80000006, 0, seq))
                writer.close()
                return
        buf = buf[pos:]
        if out:
            writer.write(b"".join(out))


async def run(n: int, window: int) -> dict[str, Any]:
    from smppengine.config import SmscConfig
    from smppengine.smpp import pdu as P
    from smppengine.smpp.session import Session

    receipt = P.encode(P.Pdu("deliver_sm", 1, 0, {
        "source_addr": "447700900123", "destination_addr": "ACME", "esm_class": 4,
        "short_message": b"id:1 sub:001 dlvrd:001 submit date:2611241200 done date:2611241200 stat:DELIVRD "
                         b"err:000 text:Your code is 123456"}))[16:]
    server = await asyncio.start_server(lambda r, w: smsc(r, w, receipt), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cfg = SmscConfig(name="b", host="127.0.0.1", port=port, system_id="x", password="y", window=window,
                     response_timeout_s=30, enquire_link_s=600)
    delivered = 0
    all_delivered = asyncio.Event()

    def on_deliver(_s: Any, _pdu: Any) -> int:
        nonlocal delivered
        delivered += 1
        if delivered >= n:
            all_delivered.set()
        return 0

    s = Session(cfg, "b/0", "transceiver", on_deliver)
    await s.open()
    params = {"source_addr_ton": 5, "source_addr_npi": 0, "source_addr": "ACME", "dest_addr_ton": 1,
              "dest_addr_npi": 1, "destination_addr": "447700900123", "registered_delivery": 1,
              "short_message": b"Your code is 123456"}
    left = n

    async def sender() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            s.reserve()
            resp = await s.submit(params)
            assert resp.status == 0

    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(sender() for _ in range(window)))
    await all_delivered.wait()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    await s.unbind(2)
    server.close()
    await server.wait_closed()
    return {"msg_s": round(n / wall), "cpu_us_per_msg": round(cpu / n * 1e6, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--window", type=int, default=200)
    ap.add_argument("--tree", default=str(HERE))
    args = ap.parse_args()
    sys.path.insert(0, args.tree)
    sys.path.insert(0, str(HERE / "bench"))
    import structlog
    from harness import machine  # type: ignore[import-not-found]

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    res = asyncio.run(run(args.n, args.window))
    print(json.dumps({"bench": "micro_session", "n": args.n, "window": args.window, "tree": args.tree, **res,
                      "machine": machine()}))


if __name__ == "__main__":
    main()

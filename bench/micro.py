"""Micro-benchmarks of the per-message hot path: prints ONE JSON line of µs per operation.

  pdu_*            smppengine.smpp.pdu encode / decode of the four PDUs a message costs
  parse_request_us smppengine.ingress.parse_request of a typical request
  receipt_parse_us smppengine.receipts.parse_receipt of a decoded receipt deliver_sm
  text_*           smppengine.text.segment + build_parts (1-part GSM 7-bit, 3-part UCS-2)
  store_*          SqliteStore (a WAL file in a temp dir), µs per message, committed:
                   accept in batches of 100 and 1000; begin_attempt, part_submitted and receipt each
                   issued 1,000 at a time (group commit) and one at a time (a commit each)

Best of 5 rounds for the CPU benchmarks; one pass for the store (it grows). --quick: fewer iterations.
Usage: python bench/micro.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402
from harness import bench_id, machine  # noqa: E402
from micro_pdu import RECEIPT, SUBMIT_PARAMS  # noqa: E402
from micro_text import GSM_1, UCS2_3  # noqa: E402

from smppengine import logs, text  # noqa: E402
from smppengine.ingress import parse_request  # noqa: E402
from smppengine.model import Request  # noqa: E402
from smppengine.receipts import Receipt, parse_receipt  # noqa: E402
from smppengine.smpp import pdu as P  # noqa: E402
from smppengine.store.sqlite import SqliteStore  # noqa: E402

KEYS = ("pdu_encode_submit_sm_us", "pdu_decode_submit_sm_resp_us", "pdu_decode_deliver_sm_us",
        "pdu_encode_deliver_sm_resp_us", "parse_request_us", "receipt_parse_us", "text_gsm7_1part_us",
        "text_ucs2_3part_us", "store_accept_batch100_us", "store_accept_batch1000_us",
        "store_begin_attempt_us", "store_part_submitted_us", "store_receipt_us",
        "store_part_submitted_serial_us")


def best_us(fn: Any, number: int) -> float:
    return round(min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6, 3)


def cpu_benchmarks(number: int) -> dict[str, float]:
    submit = P.Pdu("submit_sm", 42, 0, dict(SUBMIT_PARAMS))
    resp_raw = P.encode(P.Pdu("submit_sm_resp", 42, 0, {"message_id": "6b06f3fb0001"}))
    receipt_raw = P.encode(RECEIPT)
    receipt_pdu = P.decode(receipt_raw)
    deliver_resp = P.response_for(receipt_pdu)
    request = orjson.dumps({"id": "order-1234-otp", "to": "+447700900123", "from": "ACME",
                            "text": "Your code is 123456", "meta": {"tenant": "t1"}})
    sm = receipt_pdu.params["short_message"]
    params = receipt_pdu.params
    refs = text.ConcatRefs(seed=0)
    return {
        "pdu_encode_submit_sm_us": best_us(lambda: P.encode(submit), number),
        "pdu_decode_submit_sm_resp_us": best_us(lambda: P.decode(resp_raw), number),
        "pdu_decode_deliver_sm_us": best_us(lambda: P.decode(receipt_raw), number),
        "pdu_encode_deliver_sm_resp_us": best_us(lambda: P.encode(deliver_resp), number),
        "parse_request_us": best_us(lambda: parse_request(request), number),
        "receipt_parse_us": best_us(lambda: parse_receipt(sm, params), number),
        "text_gsm7_1part_us": best_us(
            lambda: text.build_parts(text.segment(GSM_1, "auto", "udh"), "udh", refs.next("+4477")), number),
        "text_ucs2_3part_us": best_us(
            lambda: text.build_parts(text.segment(UCS2_3, "auto", "udh"), "udh", refs.next("+4477")), number),
    }


def _request(i: int, tag: str) -> Request:
    return Request(id=bench_id(tag, i), to="+447700900123", text="Your code is 123456", sender="ACME",
                   meta={"tenant": "t1"})


def _receipt(smsc_id: str) -> Receipt:
    return Receipt(message_id=smsc_id, stat="DELIVRD", err="000", submit_date="2611241200",
                   done_date="2611241200", text="Your code is 123456", network_error_code=None)


async def store_benchmarks(n: int, serial: int) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="bench-micro-"))
    store = SqliteStore(str(work / "micro.db"), "sms")
    await store.open()
    out: dict[str, float] = {}
    try:
        async def accept(tag: str, batch: int) -> float:
            t = time.perf_counter()
            for start in range(0, n, batch):
                await store.accept([_request(i, tag) for i in range(start, min(n, start + batch))], [], 86400)
            return (time.perf_counter() - t) / n * 1e6

        out["store_accept_batch100_us"] = round(await accept("a", 100), 2)
        out["store_accept_batch1000_us"] = round(await accept("b", 1000), 2)
        ids = [bench_id("b", i) for i in range(n)]

        async def grouped(make: Any) -> float:
            t = time.perf_counter()
            for start in range(0, n, 1000):
                await asyncio.gather(*(make(i) for i in range(start, min(n, start + 1000))))
            return round((time.perf_counter() - t) / n * 1e6, 2)

        out["store_begin_attempt_us"] = await grouped(lambda i: store.begin_attempt(ids[i], "sim", 1, 0))
        out["store_part_submitted_us"] = await grouped(
            lambda i: store.part_submitted(ids[i], 0, "sim", f"{0x6b000000 + i:x}"))
        out["store_receipt_us"] = await grouped(lambda i: store.receipt("sim", _receipt(f"{0x6b000000 + i:x}")))
        # one at a time: every operation waits for its own commit (the latency floor of a lone message)
        sids = [bench_id("a", i) for i in range(serial)]
        for s in sids:
            await store.begin_attempt(s, "sim", 1, 0)
        t = time.perf_counter()
        for i, s in enumerate(sids):
            await store.part_submitted(s, 0, "sim", f"{0x7c000000 + i:x}")
        out["store_part_submitted_serial_us"] = round((time.perf_counter() - t) / serial * 1e6, 2)
    finally:
        await store.close()
        shutil.rmtree(work, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few iterations (smoke test)")
    args = ap.parse_args(argv)
    logs.configure("warning", "json")   # the store logs at info on open; stdout is for the JSON line
    number, n, serial = (500, 2000, 100) if args.quick else (20000, 20000, 1000)
    out: dict[str, Any] = {"bench": "micro", "quick": args.quick}
    out.update(cpu_benchmarks(number))
    out.update(asyncio.run(store_benchmarks(n, serial)))
    out["machine"] = machine()
    print(json.dumps(out, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()

"""Micro-benchmark of the PDU codec: prints ONE JSON line.

µs per submit_sm encode and per delivery-receipt deliver_sm decode:
  smpplib            — smpplib.smpp.make_pdu(...).generate() / parse_pdu(...) (the reference)
  fast               — smppengine.smpp.fastcodec, the struct codec alone
  pdu                — smppengine.smpp.pdu.encode / decode, the public API (parameter validation + fast codec)

Usage: python bench/micro_pdu.py [--number N]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import timeit
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import smpplib.smpp  # noqa: E402

from smppengine.smpp import fastcodec  # noqa: E402
from smppengine.smpp import pdu as P  # noqa: E402

SUBMIT_PARAMS: dict[str, Any] = {
    "source_addr_ton": 5,
    "source_addr_npi": 0,
    "source_addr": "ACME",
    "dest_addr_ton": 1,
    "dest_addr_npi": 1,
    "destination_addr": "447700900123",
    "registered_delivery": 1,
    "data_coding": 0,
    "short_message": b"Your code is 123456",
}
RECEIPT = P.Pdu(
    "deliver_sm",
    77,
    0,
    {
        "source_addr_ton": 1,
        "source_addr_npi": 1,
        "source_addr": "447700900123",
        "destination_addr": "ACME",
        "esm_class": 4,
        "short_message": b"id:7f3a01 sub:001 dlvrd:001 submit date:2611241200 done date:2611241200 "
        b"stat:DELIVRD err:000 text:Your code is 12",
        "receipted_message_id": "7f3a01",
        "message_state": 2,
        "network_error_code": b"\x03\x00\x00",
    },
)


class _NoSeq:
    sequence = 0

    def next_sequence(self) -> int:
        return 0


_CLIENT = _NoSeq()


def smpplib_encode_submit() -> bytes:
    p = smpplib.smpp.make_pdu("submit_sm", client=_CLIENT, **SUBMIT_PARAMS)
    p.sequence = 42
    return p.generate()


def best_us(fn: Any, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--number", type=int, default=20000)
    n = ap.parse_args().number

    submit = P.Pdu("submit_sm", 42, 0, dict(SUBMIT_PARAMS))
    receipt_raw = P.encode(RECEIPT)
    assert smpplib_encode_submit() == fastcodec.encode_submit_sm(submit) == P.encode(submit)
    parsed = smpplib.smpp.parse_pdu(receipt_raw, client=_CLIENT, allow_unknown_opt_params=True)
    assert parsed.receipted_message_id == b"7f3a01"
    decoded = P.decode(receipt_raw)
    assert decoded == fastcodec.decode_deliver_sm(receipt_raw, 0, 77)
    assert RECEIPT.params.items() <= decoded.params.items()

    out = {
        "bench": "micro_pdu",
        "python": platform.python_version(),
        "number": n,
        "encode_submit_sm_us": {
            "smpplib": round(best_us(smpplib_encode_submit, n), 3),
            "fast": round(best_us(lambda: fastcodec.encode_submit_sm(submit), n), 3),
            "pdu": round(best_us(lambda: P.encode(submit), n), 3),
        },
        "decode_deliver_sm_receipt_us": {
            "smpplib": round(
                best_us(
                    lambda: smpplib.smpp.parse_pdu(receipt_raw, client=_CLIENT, allow_unknown_opt_params=True),
                    n,
                ),
                3,
            ),
            "fast": round(best_us(lambda: fastcodec.decode_deliver_sm(receipt_raw, 0, 77), n), 3),
            "pdu": round(best_us(lambda: P.decode(receipt_raw), n), 3),
        },
    }
    for k in ("encode_submit_sm_us", "decode_deliver_sm_receipt_us"):
        out[k]["speedup_pdu_vs_smpplib"] = round(out[k]["smpplib"] / out[k]["pdu"], 1)
    print(json.dumps(out, separators=(",", ":")))


if __name__ == "__main__":
    main()

"""End to end over a private mosquitto and the simulator on real TCP: requests in, receipts out."""

from __future__ import annotations

from pathlib import Path

from smppengine.broker import Mosquitto
from smppengine.simulator import Simulator

from .helpers import Watcher, make_config, running_engine, smsc, wait_bound


async def test_contract_example_is_delivered(tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("carrier-a", sim.port)])
    async with Watcher(broker.url) as w, running_engine(cfg) as engine:
        await wait_bound(engine)
        await w.publish({"id": "order-1234-otp", "to": "+447700900123", "from": "ACME",
                         "text": "Your code is 123456", "dlr": True, "validity": 3600, "route": "carrier-a",
                         "encoding": "auto", "meta": {"tenant": "t1"}})
        await w.wait_final(["order-1234-otp"])
        assert w.states("order-1234-otp") == ["queued", "submitted", "delivered"]
        final = w.final("order-1234-otp")[0]
        rec = sim.ok_submits()[0]
        assert final["smsc_message_ids"] == [rec.message_id]
        assert final["meta"] == {"tenant": "t1"} and final["smsc"] == "carrier-a" and final["parts"] == 1
        assert rec.destination_addr == "447700900123" and (rec.dest_addr_ton, rec.dest_addr_npi) == (1, 1)
        assert rec.source_addr == "ACME" and rec.source_addr_ton == 5
        assert rec.short_message == b"Your code is 123456" and rec.data_coding == 0
        assert rec.registered_delivery == 1 and rec.validity_period == "000000010000000R"

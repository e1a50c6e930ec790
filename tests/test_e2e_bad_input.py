"""Contract §1.3: every kind of bad request gets one `rejected` event, and nothing else is disturbed."""

from __future__ import annotations

from pathlib import Path

import orjson

from smppengine.broker import Mosquitto
from smppengine.simulator import Simulator

from .helpers import Watcher, make_config, running_engine, smsc, wait_bound

BAD_WITH_ID = {
    "no-to": ({"id": "no-to", "text": "x"}, "to"),
    "no-text": ({"id": "no-text", "to": "+441"}, "text"),
    "bad-to": ({"id": "bad-to", "to": "+44-77", "text": "x"}, "to"),
    "long-to": ({"id": "long-to", "to": "1" * 21, "text": "x"}, "to"),
    "to-int": ({"id": "to-int", "to": 447700, "text": "x"}, "to"),
    "text-int": ({"id": "text-int", "to": "+441", "text": 5}, "text"),
    "bad-from": ({"id": "bad-from", "to": "+441", "text": "x", "from": "TOOLONGSENDER"}, "from"),
    "bad-enc": ({"id": "bad-enc", "to": "+441", "text": "x", "encoding": "utf8"}, "encoding"),
    "gsm7-unfit": ({"id": "gsm7-unfit", "to": "+441", "text": "abc й", "encoding": "gsm7"}, "text"),
    "bad-dlr": ({"id": "bad-dlr", "to": "+441", "text": "x", "dlr": "yes"}, "dlr"),
    "bad-validity": ({"id": "bad-validity", "to": "+441", "text": "x", "validity": -5}, "validity"),
    "bad-ttl": ({"id": "bad-ttl", "to": "+441", "text": "x", "ttl": "1h"}, "ttl"),
    "bad-priority": ({"id": "bad-priority", "to": "+441", "text": "x", "priority": 9}, "priority"),
    "bad-meta": ({"id": "bad-meta", "to": "+441", "text": "x", "meta": [1, 2]}, "meta"),
    "big-meta": ({"id": "big-meta", "to": "+441", "text": "x", "meta": {"k": "v" * 5000}}, "meta"),
    "bad-route": ({"id": "bad-route", "to": "+441", "text": "x", "route": ""}, "route"),
}
NO_ID = [
    (b"\xff\xfe not utf-8", "JSON"),
    (b"{not json", "JSON"),
    (b"[1, 2, 3]", "object"),
    (b'"just a string"', "object"),
    (orjson.dumps({"id": "has space", "to": "+441", "text": "x"}), "id"),
    (orjson.dumps({"id": "x" * 65, "to": "+441", "text": "x"}), "id"),
    (orjson.dumps({"to": "+441", "text": "x" * 70000}), "65536"),
]


async def test_every_bad_request_is_rejected_once_and_the_next_goes_through(
        tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("a", sim.port)])
    async with Watcher(broker.url) as w, running_engine(cfg) as engine:
        await wait_bound(engine)
        for payload, _ in BAD_WITH_ID.values():
            await w.publish(payload)
        for raw, _ in NO_ID:
            await w.publish(raw)
        await w.publish({"id": "unknown-route", "to": "+441", "text": "x", "route": "nope"})
        await w.publish({"id": "good", "to": "+447700900123", "text": "still fine"})
        await w.wait_final([*BAD_WITH_ID, "unknown-route", "good"])
        await w.wait(lambda: len(w.events.get(None, [])) >= len(NO_ID), what="invalid events")

        for msg_id, (_, field) in BAD_WITH_ID.items():
            events = w.events[msg_id]
            assert [e["state"] for e in events] == ["rejected"], (msg_id, events)
            err = events[0]["error"]
            assert err["code"] == "invalid_request" and err["detail"].startswith(field), (msg_id, err)
        assert w.events["bad-meta"][0]["meta"] is None
        invalid = w.events[None]
        assert len(invalid) == len(NO_ID)
        for event, (raw, word) in zip(invalid, NO_ID, strict=True):
            assert event["state"] == "rejected" and event["id"] is None
            assert event["error"]["code"] == "invalid_request" and word in event["error"]["detail"], event
            assert event["raw"] == raw[:200].decode("utf-8", "replace")
        assert [e["state"] for e in w.events["unknown-route"]] == ["queued", "rejected"]
        assert w.events["unknown-route"][-1]["error"]["code"] == "no_route"
        assert w.states("good") == ["queued", "submitted", "delivered"]
        assert len(sim.ok_submits()) == 1


async def test_a_known_id_is_not_sent_again_and_is_answered_a_rejected_one_may_be_corrected(
        tmp_path: Path, broker: Mosquitto, sim: Simulator) -> None:
    """A repeated id is not sent again: its current state is published again, marked duplicate. A request
    rejected before any submit_sm (here: `to` missing) may be sent again, corrected, under its id."""
    cfg = make_config(str(tmp_path / "e.db"), broker.url, [smsc("a", sim.port)])
    async with Watcher(broker.url) as w, running_engine(cfg) as engine:
        await wait_bound(engine)
        await w.publish({"id": "once", "to": "+447700900123", "text": "one"})
        await w.publish({"id": "fixme", "text": "fixed"})
        await w.wait_final(["once", "fixme"])
        await w.publish({"id": "once", "to": "+447700900123", "text": "one"})
        await w.publish({"id": "fixme", "to": "+447700900123", "text": "fixed"})
        await w.wait(lambda: len(w.states("once")) == 4 and w.states("fixme")[-1:] == ["delivered"],
                     what="the duplicate's answer and the corrected request delivered")
        await w.publish({"id": "after", "to": "+447700900123", "text": "two"})
        await w.wait_final(["after"])
        assert engine.counters["duplicates"] == 1
        assert w.states("once") == ["queued", "submitted", "delivered", "delivered"]
        answer = w.events["once"][-1]
        assert answer["duplicate"] is True and answer["smsc_message_ids"] == w.events["once"][2]["smsc_message_ids"]
        assert not any(e.get("duplicate") for e in w.events["once"][:3])
        assert w.states("fixme") == ["rejected", "queued", "submitted", "delivered"]
        assert [r.short_message for r in sim.ok_submits()] == [b"one", b"fixed", b"two"]

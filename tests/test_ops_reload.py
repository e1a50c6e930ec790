"""The pure part of a SIGHUP reload: which SMSCs are added, removed, rebound or updated in place."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from smppengine.config import Config
from smppengine.reload import effective, plan

from .helpers import make_config, smsc


def _cfg(*smscs: dict, **sections: dict):  # type: ignore[no-untyped-def]
    sections["engine"] = {"instance": "gw", **sections.get("engine", {})}
    return make_config("e.db", "mqtt://127.0.0.1:1883", list(smscs), **sections)


def test_identical_configs_change_nothing() -> None:
    assert plan(_cfg(smsc("a", 1)), _cfg(smsc("a", 1))).empty


def test_tps_only_is_applied_in_place() -> None:
    p = plan(_cfg(smsc("a", 1), smsc("b", 2)), _cfg(smsc("a", 1, tps=5), smsc("b", 2)))
    assert [s.name for s in p.update] == ["a"] and p.rebind == () and p.changes == {"a": ["tps"]}
    assert p.update[0].tps == 5 and not p.routes


def test_connection_settings_rebind_only_that_smsc() -> None:
    p = plan(_cfg(smsc("a", 1), smsc("b", 2)), _cfg(smsc("a", 1), smsc("b", 3, tps=7)))
    assert [s.name for s in p.rebind] == ["b"] and p.update == ()
    assert sorted(p.changes["b"]) == ["port", "tps"]


def test_added_and_removed_smscs_rebuild_the_routes() -> None:
    p = plan(_cfg(smsc("a", 1), smsc("b", 2)), _cfg(smsc("a", 1), smsc("c", 3)))
    assert [s.name for s in p.add] == ["c"] and p.remove == ("b",) and p.routes


def test_routes_retry_ttl_and_log_apply_live_and_the_rest_needs_a_restart() -> None:
    old = _cfg(smsc("a", 1))
    new = _cfg(smsc("a", 1), retry={"max_attempts": 9}, log={"level": "debug"},
               engine={"default_ttl": 60, "store": "other.db"},
               mqtt={"url": "mqtt://10.0.0.1:1883"}, http={"listen": "0.0.0.0:9999"})
    p = plan(old, new)
    assert p.retry and p.log and p.default_ttl and not p.rebind
    assert p.restart_needed == ("engine.store", "mqtt.url", "http.listen")
    eff = effective(old, new)
    assert eff.engine.store == old.engine.store and eff.engine.default_ttl == 60
    assert eff.mqtt == old.mqtt and eff.http == old.http and eff.retry.max_attempts == 9
    assert dataclasses.replace(eff, path=new.path).log.level == "debug"


async def test_a_reload_hands_the_new_routes_and_retry_policy_to_the_dispatcher(tmp_path: Path) -> None:
    """Engine.reload: new routes and the new [retry] (parsed into a RetryPolicy) reach the dispatcher at once;
    a tps-only change is applied to the running client in place (no new client)."""
    from smppengine.engine import Engine
    from smppengine.retry import RetryPolicy

    def cfg(**kw: Any) -> Config:
        return make_config(str(tmp_path / "e.db"), "mqtt://127.0.0.1:1883",
                           [smsc("a", 1), smsc("b", 2, tps=kw.pop("tps_b", 10000))], **kw)

    engine = Engine(cfg())
    client_b = engine.clients["b"]
    p = await engine.reload(cfg(retry={"max_attempts": 9}, route=[{"prefix": "+44", "smsc": ["b"]}], tps_b=5))
    assert p.routes and p.retry and [s.name for s in p.update] == ["b"]
    assert engine.dispatcher.policy == RetryPolicy(max_attempts=9) and engine.dispatcher.policy is engine.config.retry
    assert engine.dispatcher.router is engine.router and engine.router.candidates("+447700900123", None) == ["b"]
    assert engine.clients["b"] is client_b and client_b.cfg.tps == 5 and client_b.adaptive.rate == 5

"""SIGHUP config reload, the pure part: what differs between the running config and the new one.

``plan(old, new)`` decides, per SMSC, whether it is added, removed, rebound (a setting of the
connection changed: stop the old client after it drained, start a new one) or updated in place (only
settings that take effect without a new bind: tps, error_classes, default_from, senders, tlvs). Routes, retry
policy, default_ttl and the log level apply at once. ``[engine] instance/store``, ``[mqtt]`` and
``[http]`` need a restart: they are listed in ``restart_needed`` and the running values are kept.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .config import Config, SmscConfig

# SmscConfig fields that apply to a running client without rebinding.
LIVE_SMSC_FIELDS = frozenset({"tps", "error_classes", "default_from", "senders", "tlvs"})


@dataclass(frozen=True)
class ReloadPlan:
    add: tuple[SmscConfig, ...] = ()
    remove: tuple[str, ...] = ()
    rebind: tuple[SmscConfig, ...] = ()
    update: tuple[SmscConfig, ...] = ()          # changed only in LIVE_SMSC_FIELDS
    routes: bool = False
    retry: bool = False
    default_ttl: bool = False
    log: bool = False
    restart_needed: tuple[str, ...] = ()          # keys that changed but only apply after a restart
    changes: dict[str, list[str]] = field(default_factory=dict)   # smsc name -> changed fields

    @property
    def empty(self) -> bool:
        return not (self.add or self.remove or self.rebind or self.update or self.routes or self.retry
                    or self.default_ttl or self.log or self.restart_needed)

    def summary(self) -> dict[str, object]:
        """For the ``config_reloaded`` log line."""
        return {
            "smsc_added": [s.name for s in self.add], "smsc_removed": list(self.remove),
            "smsc_rebound": [s.name for s in self.rebind], "smsc_updated": [s.name for s in self.update],
            "smsc_changes": self.changes, "routes": self.routes, "retry": self.retry,
            "default_ttl": self.default_ttl, "log": self.log, "restart_needed": list(self.restart_needed),
        }


def _changed_fields(a: object, b: object) -> list[str]:
    assert dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b)
    return [f.name for f in dataclasses.fields(a) if getattr(a, f.name) != getattr(b, f.name)]


def plan(old: Config, new: Config) -> ReloadPlan:
    olds = {s.name: s for s in old.smsc}
    news = {s.name: s for s in new.smsc}
    add = tuple(s for n, s in news.items() if n not in olds)
    remove = tuple(n for n in olds if n not in news)
    rebind: list[SmscConfig] = []
    update: list[SmscConfig] = []
    changes: dict[str, list[str]] = {}
    for name, s in news.items():
        if name not in olds:
            continue
        diff = _changed_fields(olds[name], s)
        if not diff:
            continue
        changes[name] = diff
        (update if set(diff) <= LIVE_SMSC_FIELDS else rebind).append(s)
    restart = [f"engine.{k}" for k in ("instance", "store", "instances", "lease_s")
               if getattr(old.engine, k) != getattr(new.engine, k)]
    restart += [f"mqtt.{k}" for k in _changed_fields(old.mqtt, new.mqtt)]
    restart += [f"http.{k}" for k in _changed_fields(old.http, new.http)]
    return ReloadPlan(
        add=add, remove=remove, rebind=tuple(rebind), update=tuple(update),
        routes=old.route != new.route or bool(add) or bool(remove),
        retry=old.retry != new.retry,
        default_ttl=old.engine.default_ttl != new.engine.default_ttl,
        log=old.log != new.log,
        restart_needed=tuple(restart), changes=changes,
    )


def effective(old: Config, new: Config) -> Config:
    """The config the engine runs after the reload: ``new``, except what needs a restart."""
    engine = dataclasses.replace(old.engine, default_ttl=new.engine.default_ttl)
    return dataclasses.replace(new, engine=engine, mqtt=old.mqtt, http=old.http)

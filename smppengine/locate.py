"""Where the command-line tools find the engine: their flags, a config file, or the demo running here.

``smppengine run`` without ``--config`` (the demo) writes ``smppengine-demo.json`` in its working directory
while it runs (:data:`STATE_FILE`: its process id, broker URL, topic prefix, store and HTTP address) and removes
it when it stops. ``send``, ``trace``, ``stats`` and ``optout`` started in that directory read it, so they need
no flags; an explicit ``--url``/``--prefix``/``--store``/``--config`` always wins. A file left by a demo that
was killed (its process is gone) is ignored.

The read-only commands never create a store: a SQLite path that is not there is an error naming the file.
Without a flag, a config or a demo, no command creates one either (``optout add`` needs ``--store`` or
``--config`` to start a store of its own).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

STATE_FILE = "smppengine-demo.json"
DEMO_STORE = "smppengine-demo.db"        # `run` without --config
CONFIG_STORE = "smppengine.db"           # engine.store's default in a config file
DEFAULT_URL = "mqtt://127.0.0.1:1883"
DEFAULT_PREFIX = "sms"


class NotFound(Exception):
    """What was looked for and is not there (the message says which files)."""


@dataclass(frozen=True)
class DemoState:
    pid: int
    mqtt_url: str
    topic_prefix: str
    store: str
    http: str                     # "host:port" of /metrics and /healthz, "" when off
    smsc: str = ""                # "host:port" of the simulator
    control: str = ""             # "host:port" of the simulator's control API
    path: str = ""                # the state file itself (not written to it)

    def to_json(self) -> bytes:
        d = dataclasses.asdict(self)
        d.pop("path")
        return orjson.dumps(d, option=orjson.OPT_INDENT_2) + b"\n"


def write_state(state: DemoState, directory: str | os.PathLike[str] = ".") -> Path:
    """Write the state file atomically (a reader never sees half of it); returns its path."""
    path = Path(directory) / STATE_FILE
    tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}")
    tmp.write_bytes(state.to_json())
    os.replace(tmp, path)
    return path


def remove_state(path: Path, pid: int | None = None) -> None:
    """Remove the state file if it is still this process's (another demo may have taken the directory)."""
    with contextlib.suppress(OSError):
        current = read_state_file(path)
        if current is None or current.pid == (pid or os.getpid()):
            path.unlink()


def read_state_file(path: Path) -> DemoState | None:
    try:
        d: Any = orjson.loads(path.read_bytes())
        return DemoState(pid=int(d["pid"]), mqtt_url=str(d["mqtt_url"]), topic_prefix=str(d["topic_prefix"]),
                         store=str(d["store"]), http=str(d.get("http", "")), smsc=str(d.get("smsc", "")),
                         control=str(d.get("control", "")), path=str(path))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_demo(directory: str | os.PathLike[str] = ".") -> DemoState | None:
    """The demo running from ``directory`` (its state file, when its process is alive), else None."""
    state = read_state_file(Path(directory) / STATE_FILE)
    if state is None or not pid_alive(state.pid):
        return None
    return state


def is_url(store: str) -> bool:
    return store.startswith(("postgresql://", "postgres://"))


def store_path(store: str) -> str:
    """The SQLite file of a store setting (``sqlite://`` prefix allowed); URLs unchanged."""
    return store if is_url(store) else store.removeprefix("sqlite://")


def resolve_store(store: str | None, config: str | None, *, must_exist: bool) -> str:
    """The store a command works on: ``--store``, else ``--config``'s ``engine.store``, else the demo running
    here, else ``./smppengine-demo.db`` or ``./smppengine.db`` (the first that exists).

    None of these found raises NotFound (whatever the command: a store nobody named is never made). With
    ``must_exist`` (read-only commands), a named SQLite file that is not there raises NotFound naming it."""
    if store:
        chosen, origin = store, "--store"
    elif config:
        from .config import load_config

        chosen, origin = load_config(config).engine.store, f"engine.store in {config}"
    elif (demo := running_demo()) is not None:
        chosen, origin = demo.store, f"the running demo ({STATE_FILE})"
    else:
        for candidate in (DEMO_STORE, CONFIG_STORE):
            if Path(candidate).is_file():
                return candidate
        # not even a writing command makes a store nobody named: --store or --config says where
        raise NotFound(f"no store here: looked for ./{DEMO_STORE} (what `smppengine run` without --config writes)"
                       f" and ./{CONFIG_STORE}, and neither is there; run this in the demo's directory, or pass"
                       " --store PATH or --config FILE")
    if must_exist and not is_url(chosen) and not Path(store_path(chosen)).is_file():
        raise NotFound(f"no store at {store_path(chosen)} ({origin}): the file is not there")
    return chosen


def shown(url: str) -> str:
    """A URL fit to print: a password in it becomes ***."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)
        return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc[-1]}"))
    except ValueError:
        return url


async def require_postgres_store(url: str) -> None:
    """For read-only commands on a ``postgresql://`` store: NotFound when it has no tables yet (opening it would
    create them, and the schema)."""
    import asyncpg

    from .store.postgres import parse_url, redact

    dsn, schema = parse_url(url)
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise NotFound(f"cannot reach the PostgreSQL store {redact(url)}: {exc}") from exc
    try:
        table = f'"{schema}".messages' if schema else "messages"
        found = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table)
    finally:
        await conn.close()
    if not found:
        where = f"schema {schema}" if schema else "the schemas on its search_path"
        raise NotFound(f"no store at {redact(url)}: no smppengine tables in {where}")

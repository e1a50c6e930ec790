"""`smppengine optout list | add | remove | import | export`: the opt-out list, for operators.

Works on the store directly (``--store PATH`` or ``--config F``, like ``trace``; without them the demo
running in this directory, see locate.py), also while the engine runs: a running engine picks the
change up within a few seconds (optout_runtime.py).
CSV format (export writes it, import reads it): ``number,scope,source,at`` with a header line;
``scope`` ``*`` is global; ``at`` is UTC ISO 8601. Import reads the first two columns (a missing
or empty scope is global) and records every row with source ``import`` and the current time.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from typing import Any, TextIO

import orjson

from . import logs
from .compliance import GLOBAL, normalise_number, normalise_scope
from .locate import is_url, require_postgres_store, resolve_store
from .model import iso
from .store import Store, open_store
from .store.optouts import OptOut

HEADER = ["number", "scope", "source", "at"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("optout", help="the opt-out (STOP) list: list, add, remove, import, export")
    p.add_argument("--config", help="config file (for engine.store)")
    p.add_argument("--store", help="store path or URL (overrides the config; default: the demo running here, "
                                   "else ./smppengine-demo.db or ./smppengine.db)")
    ops = p.add_subparsers(dest="optout_cmd", required=True)
    ls = ops.add_parser("list", help="every entry")
    ls.add_argument("--json", action="store_true")
    for name, helptext in (("add", "opt a number out"), ("remove", "take a number off the list")):
        o = ops.add_parser(name, help=helptext)
        o.add_argument("number")
        o.add_argument("--scope", default=GLOBAL,
                       help='the sender number (short code / long number) it applies to; "*" = every sender '
                            "(default)")
    imp = ops.add_parser("import", help="add every number of a CSV file (number[,scope] per line; - = stdin)")
    imp.add_argument("file")
    exp = ops.add_parser("export", help="the list as CSV (number,scope,source,at)")
    exp.add_argument("--output", "-o", help="file to write (default: stdout)")


def parse_csv(src: TextIO, now: float) -> tuple[list[OptOut], list[str]]:
    """Rows to import and the problems found (``line N: reason``); a header line is skipped."""
    rows: list[OptOut] = []
    problems: list[str] = []
    for n, fields in enumerate(csv.reader(src), start=1):
        if not fields or not "".join(fields).strip() or fields[0].lstrip().startswith("#"):
            continue
        if n == 1 and fields[0].strip().lower() == "number":
            continue
        try:
            number = normalise_number(fields[0])
        except ValueError as exc:
            problems.append(f"line {n}: {exc}")
            continue
        scope = normalise_scope(fields[1]) if len(fields) > 1 and fields[1].strip() else GLOBAL
        rows.append(OptOut(number, scope, "import", now))
    return rows, problems


def write_csv(entries: list[OptOut], out: TextIO) -> None:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(HEADER)
    w.writerows([e.number, e.scope, e.source, iso(e.at)] for e in entries)


def _read_import(file: str) -> tuple[list[OptOut], list[str]]:
    if file == "-":
        return parse_csv(sys.stdin, time.time())
    with open(file, newline="", encoding="utf-8") as f:
        return parse_csv(f, time.time())


def _write_export(entries: list[OptOut], output: str | None) -> None:
    if output:
        with open(output, "w", newline="", encoding="utf-8") as f:
            write_csv(entries, f)
    else:
        write_csv(entries, sys.stdout)


async def run(args: argparse.Namespace) -> int:
    # stdout carries the CSV / list: log lines (e.g. store_migrated) go to stderr, warnings and up only
    logs.configure("warning", "auto", stream=sys.stderr)
    # list / export / remove never create a store (a missing file is an error naming it); add / import may
    read_only = args.optout_cmd not in ("add", "import")
    path = resolve_store(args.store, args.config, must_exist=read_only)
    if read_only and is_url(path):
        await require_postgres_store(path)
    store = open_store(path, "sms")
    await store.open()
    try:
        return await _run(store, args)
    finally:
        await store.close()


async def _run(store: Store, args: argparse.Namespace) -> int:
    cmd = args.optout_cmd
    if cmd in ("add", "remove"):
        try:
            number = normalise_number(args.number)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        scope = normalise_scope(args.scope) or GLOBAL
        if cmd == "add":
            await store.optout_add([OptOut(number, scope, "cli", time.time())])
            print(f"opted out: {number} (scope {scope})")
            return 0
        removed = await store.optout_remove([(number, scope)])
        print(f"removed: {number} (scope {scope})" if removed else f"not on the list: {number} (scope {scope})")
        return 0 if removed else 1
    if cmd == "import":
        t0 = time.perf_counter()
        rows, problems = _read_import(args.file)
        if problems:
            print("nothing imported:\n" + "\n".join(problems[:20]) +
                  (f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""), file=sys.stderr)
            return 1
        await store.optout_add(rows)
        print(f"imported {len(rows)} entries in {time.perf_counter() - t0:.3f}s")
        return 0
    entries = await store.optout_list()
    if cmd == "export":
        _write_export(entries, args.output)
        return 0
    if args.json:
        print(orjson.dumps([{"number": e.number, "scope": e.scope, "source": e.source, "at": iso(e.at)}
                            for e in entries]).decode())
    else:
        for e in entries:
            print(f"{e.number:<20} {e.scope:<16} {e.source:<7} {iso(e.at)}")
        print(f"({len(entries)} entries)")
    return 0

"""``smppengine sim``: the simulator as a process: its options (:class:`SimOptions`, :func:`parse_sim_args`),
:func:`serve` (the simulator and its control API until cancelled) and :func:`run_simulator_cli`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from smppengine.simulator.control import start_control
from smppengine.simulator.receipts import MESSAGE_STATES
from smppengine.simulator.server import _ID_FORMATS, Simulator


@dataclass
class SimOptions:
    """Everything ``smppengine sim`` can set (the CLI maps its flags onto this)."""

    host: str = "127.0.0.1"
    port: int = 2775
    control_host: str = "127.0.0.1"
    control_port: int | None = 8775
    credentials: dict[str, str] | None = None
    id_format: str = "hex"
    receipt_id_format: str = "same"
    receipt_delay: float = 0.0
    receipt_stat: str = "DELIVRD"
    tps_limit: float | None = None
    name: str = "sim"
    enquire_link_s: float = 30.0
    extra: dict[str, Any] = field(default_factory=dict)

    def simulator_kwargs(self) -> dict[str, Any]:
        return {
            "credentials": self.credentials,
            "id_format": self.id_format,
            "receipt_id_format": self.receipt_id_format,
            "receipt_delay": self.receipt_delay,
            "receipt_stat": self.receipt_stat,
            "tps_limit": self.tps_limit,
            "name": self.name,
            "enquire_link_s": self.enquire_link_s,
            **self.extra,
        }


def parse_sim_args(argv: Sequence[str]) -> SimOptions:
    """Parse ``smppengine sim`` arguments (without the program / sub-command name) into SimOptions."""
    import argparse

    ap = argparse.ArgumentParser(prog="smppengine sim", description="Run the built-in SMSC simulator.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=2775)
    ap.add_argument("--control-host", default="127.0.0.1")
    ap.add_argument("--control-port", type=int, default=8775, help="HTTP control API port; 0 turns it off")
    ap.add_argument(
        "--credentials", action="append", default=[], metavar="SYSTEM_ID:PASSWORD",
        help="accepted credentials (repeatable); none given = accept any",
    )
    ap.add_argument("--system-id", default=None, help="accepted system_id (same as --credentials ID:PASSWORD)")
    ap.add_argument("--password", default=None)
    ap.add_argument("--id-format", choices=_ID_FORMATS, default="hex")
    ap.add_argument("--receipt-id-format", choices=("same", *_ID_FORMATS), default="same")
    ap.add_argument("--receipt-delay", type=float, default=0.0)
    ap.add_argument("--receipt-stat", choices=sorted(MESSAGE_STATES), default="DELIVRD")
    ap.add_argument("--tps-limit", type=float, default=None)
    ap.add_argument(
        "--tps-jitter-ms", type=float, default=0.0,
        help="throttle only when more than --tps-limit submits arrive within 1 s minus this (default 0)",
    )
    ap.add_argument("--name", default="sim")
    ap.add_argument("--enquire-link-s", type=float, default=30.0)
    ap.add_argument(
        "--no-record", "--no-record-submits", dest="no_record", action="store_true",
        help="keep counters only, not every submit (long benchmarks)",
    )
    ns = ap.parse_args(list(argv))
    creds: dict[str, str] | None = None
    for item in ns.credentials:
        system_id, sep, password = item.partition(":")
        if not sep:
            ap.error(f"--credentials {item!r}: expected SYSTEM_ID:PASSWORD")
        creds = creds or {}
        creds[system_id] = password
    if ns.system_id:
        creds = creds or {}
        creds[ns.system_id] = ns.password or ""
    return SimOptions(
        host=ns.host,
        port=ns.port,
        control_host=ns.control_host,
        control_port=ns.control_port if ns.control_port > 0 else None,
        credentials=creds,
        id_format=ns.id_format,
        receipt_id_format=ns.receipt_id_format,
        receipt_delay=ns.receipt_delay,
        receipt_stat=ns.receipt_stat,
        tps_limit=ns.tps_limit,
        name=ns.name,
        enquire_link_s=ns.enquire_link_s,
        extra={**({"record_submits": False} if ns.no_record else {}),
               **({"tps_jitter": ns.tps_jitter_ms / 1000.0} if ns.tps_jitter_ms else {})},
    )


async def run_simulator_cli(opts: SimOptions | Sequence[str]) -> None:
    """Run a simulator (and its control API unless ``control_port`` is None) until cancelled.

    ``opts`` is a SimOptions or the ``smppengine sim`` argument list (see :func:`parse_sim_args`).
    """
    if not isinstance(opts, SimOptions):
        opts = parse_sim_args(opts)
    await serve(opts.host, opts.port, opts.control_host, opts.control_port, **opts.simulator_kwargs())


async def serve(
    host: str = "127.0.0.1",
    port: int = 2775,
    control_host: str = "127.0.0.1",
    control_port: int | None = 8775,
    **sim_kwargs: Any,
) -> None:
    """Run a simulator on host:port and its control API on control_host:control_port until cancelled.

    ``control_port=None`` runs the simulator without the control API.
    """
    sim = Simulator(host, port, **sim_kwargs)
    await sim.start()
    control: asyncio.Server | None = None
    try:
        if control_port is not None:
            control = await start_control(sim, control_host, control_port)
        await asyncio.Event().wait()  # until cancelled
    finally:
        if control is not None:
            control.close()
        await sim.stop()
        if control is not None:
            await control.wait_closed()

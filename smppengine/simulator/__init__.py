"""A built-in SMSC simulator: real SMPP 3.4 over TCP on asyncio streams, on the engine's own PDU codec and
framer (:mod:`smppengine.smpp.pdu`). See docs/simulator.md.

Used by the zero-setup demo (in-process), by the integration tests (in-process, port 0) and by benchmarks /
kill tests (its own process, ``smppengine sim``).

Modules (each imports only the ones above it):

* :mod:`.session` -- one ESME connection's state, the deliver_sm it awaits responses for, struct-packed PDUs
* :mod:`.records` -- :class:`SubmitRecord`, what is recorded of every submit_sm
* :mod:`.receipts` -- delivery receipts: dispatch, queueing, retries (a mixin of :class:`Simulator`)
* :mod:`.mo` -- mobile-originated messages, :meth:`Simulator.inject_mo` (a mixin of :class:`Simulator`)
* :mod:`.server` -- :class:`Simulator`: listening, bind, submit_sm, the knobs, the observations
* :mod:`.control` -- the HTTP JSON control API (:func:`start_control`)
* :mod:`.cli` -- ``smppengine sim``: :class:`SimOptions`, :func:`parse_sim_args`, :func:`serve`,
  :func:`run_simulator_cli`
"""

from smppengine.simulator.cli import SimOptions, parse_sim_args, run_simulator_cli, serve
from smppengine.simulator.control import apply_knobs, start_control
from smppengine.simulator.mo import NoReceiverError
from smppengine.simulator.receipts import MESSAGE_STATES
from smppengine.simulator.records import SubmitRecord
from smppengine.simulator.server import Simulator

__all__ = [
    "MESSAGE_STATES",
    "NoReceiverError",
    "SimOptions",
    "Simulator",
    "SubmitRecord",
    "apply_knobs",
    "parse_sim_args",
    "run_simulator_cli",
    "serve",
    "start_control",
]

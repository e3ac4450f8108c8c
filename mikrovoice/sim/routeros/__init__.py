"""A RouterOS 7 fleet simulator: one RouterOS API service per router, over real TCP, TLS or memory.

Faithful to research/routeros.md, byte for byte where the notes know the bytes: post-6.43 login,
``.tag`` echo and interleaving, ``/cancel``, ``/quit``; ``print`` with ``.proplist``, the ``?``
query stack, ``count-only`` and ``!empty`` (7.18+); streaming monitors and ``/ping``; traps for
missing menus, unknown commands and parameters, writes and missing policies; ``max-sessions``.
The routers' data is seeded and realistic, with facts that hold across a fleet (a client IP, MAC
or PPPoE name belongs to one router). Faulty routers (``FAULTS``) hang, drop, drip or refuse.

- ``router``: ``SimRouter``, its tables (``table(menu)``) and its live readings;
- ``data``: ``make_router``, one seeded router; ``fleet``: ``make_fleet``, names and sites;
- ``menus``: what a request gets (pure); ``session``: one API connection (Trio);
- ``faults``: fault profiles and timing; ``server``: listeners, ``serve_fleet``, API-SSL.
"""

from mikrovoice.sim.routeros.data import make_router, router_number
from mikrovoice.sim.routeros.faults import (
    FAULT_DESCRIPTIONS,
    FAULTS,
    SILENT_FAULTS,
    FaultSpecError,
    command_delay,
    parse_fault_specs,
)
from mikrovoice.sim.routeros.fleet import SITES, FleetProfile, make_fleet, router_names
from mikrovoice.sim.routeros.menus import Feed, evaluate, parse_duration, query_passes
from mikrovoice.sim.routeros.router import LOG_LINES, SIM_NOW, SimRouter
from mikrovoice.sim.routeros.server import serve_fleet, serve_router, serve_router_stream
from mikrovoice.sim.routeros.session import _Session  # the simulation's invariant tests patch its ``answer``

__all__ = [
    "FAULTS", "FAULT_DESCRIPTIONS", "LOG_LINES", "SILENT_FAULTS", "SIM_NOW", "SITES", "Feed", "FaultSpecError",
    "FleetProfile", "SimRouter", "_Session", "command_delay", "evaluate", "make_fleet", "make_router",
    "parse_duration", "parse_fault_specs", "query_passes", "router_names", "router_number", "serve_fleet",
    "serve_router", "serve_router_stream",
]

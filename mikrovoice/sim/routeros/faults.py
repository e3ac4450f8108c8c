"""How a simulated router misbehaves, and how long it takes when it behaves.

``FAULTS`` names every fault profile (``SimRouter.fault``); ``command_delay`` is the time a
command needs before its first answer (the router's latency for data queries, one round trip for
small ones, the ``slow`` profile's ten-fold); ``deliver`` writes one reply's bytes the way the
faulty router does (whole, one byte at a time, or half and then gone). The session and the
server apply the rest (silence, refused logins, dropped connections, ``busy``).
"""

from __future__ import annotations

from collections.abc import Iterable

import trio

from mikrovoice.routeros.protocol import Request
from mikrovoice.sim.routeros.router import SimRouter

#: Every fault profile, with what the router does.
FAULT_DESCRIPTIONS = {
    "hangs": "accepts TCP and never says a word, not even to the login",
    "hangs_after_login": "logs in, then never answers anything (not even /cancel)",
    "drops_mid_query": "logs in, then closes TCP when a query arrives",
    "refuses_login": "refuses every login (invalid user name or password)",
    "slow": "answers every data command after its latency x10, at least 8 s",
    "black_hole": "the same as hangs",
    "drops_mid_reply": "logs in, sends the first half of its first data reply's bytes, then closes TCP",
    "drips": "sends every reply one byte at a time, 20 ms apart",
    "busy": "max-sessions 0: accepts TCP and closes every connection at once, without a word",
}
FAULTS = tuple(FAULT_DESCRIPTIONS)
#: Faults under which a router never completes a data query ("slow" and "drips" do, late).
SILENT_FAULTS = frozenset(FAULTS) - {"slow", "drips"}
#: One API round trip on a LAN: login, the small prints.
ROUND_TRIP_S = 0.05
SLOW_FACTOR = 10.0
SLOW_MIN_S = 8.0
DRIP_S = 0.02
#: Prints that walk a table of clients or the log: they take the router's latency.
HEAVY_MENUS = frozenset({"/ip/dhcp-server/lease", "/ip/arp", "/interface/bridge/host", "/ppp/active", "/log",
                         "/interface/wireless/registration-table", "/interface/wifi/registration-table"})
MONITORS = frozenset({"/interface/monitor-traffic", "/interface/ethernet/monitor"})


class FaultSpecError(ValueError):
    """A ``FAULT=ROUTER[,ROUTER...]`` assignment names an unknown fault or router."""


def command_delay(router: SimRouter, request: Request) -> float:
    """Seconds before a command's first answer. ``/ping`` adds none: its own interval is its time."""
    if request.command == "/login":
        return min(ROUND_TRIP_S, router.latency_s)
    if router.fault == "slow":
        return max(SLOW_MIN_S, router.latency_s * SLOW_FACTOR)
    if request.command == "/ping":
        return 0.0
    menu, _, verb = request.command.rpartition("/")
    if request.command in MONITORS or (verb in ("print", "getall") and menu in HEAVY_MENUS):
        return router.latency_s
    return min(ROUND_TRIP_S, router.latency_s)


async def deliver(stream: trio.abc.SendStream, data: bytes, fault: str | None, cuttable: bool) -> bool:
    """Write one reply's bytes as the router's fault has it; False: the router hung up after it."""
    if fault == "drops_mid_reply" and cuttable:
        await stream.send_all(data[: len(data) // 2])
        return False
    if fault == "drips":
        for i in range(len(data)):
            await stream.send_all(data[i : i + 1])
            await trio.sleep(DRIP_S)
        return True
    await stream.send_all(data)
    return True


def parse_fault_specs(specs: Iterable[str], routers: Iterable[str]) -> dict[str, str]:
    """``["black_hole=46.3", "slow=26.1,59.3"]`` -> ``{"46.3": "black_hole", "26.1": "slow", "59.3": "slow"}``."""
    known = set(routers)
    faults: dict[str, str] = {}
    for spec in specs:
        fault, sep, names = spec.partition("=")
        fault = fault.strip()
        if not sep or not names.strip():
            raise FaultSpecError(f"{spec!r}: expected FAULT=ROUTER[,ROUTER...]")
        if fault not in FAULT_DESCRIPTIONS:
            raise FaultSpecError(f"unknown fault {fault!r}; faults: {', '.join(FAULTS)}")
        for name in (n.strip() for n in names.split(",")):
            if name not in known:
                raise FaultSpecError(f"no router named {name!r} in the fleet")
            if faults.get(name, fault) != fault:
                raise FaultSpecError(f"router {name} has two faults: {faults[name]} and {fault}")
            faults[name] = fault
    return faults

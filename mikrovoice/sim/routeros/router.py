"""One simulated router: its data as RouterOS 7 prints it, and the readings that change with time.

``SimRouter`` holds what ``data.make_router`` generated (tables as the API prints them, all values
strings) and answers ``table(menu)``, the rows a ``print`` of that menu starts from, so that tests
and invariants compute the truth from the same place the simulator answers from. Live readings
(uptime, a monitor's second-by-second traffic, optics, ping round trips, the log clock) are pure
functions of the router's seed, the time and the argument: the same question at the same virtual
second gets the same answer. This module performs no I/O and never waits.
"""

from __future__ import annotations

import ipaddress
import random
import zlib
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

#: RouterOS 7's default ``/system logging action memory`` size.
LOG_LINES = 1000
#: The wall clock of every simulated router when its first session opened (the fleet is NTP-synced).
SIM_NOW = datetime(2026, 3, 12, 14, 37, 5)
#: Targets no simulated router ever reaches: a dead network of the ISP and TEST-NET-1.
UNREACHABLE_NETS = (ipaddress.ip_network("10.255.0.0/16"), ipaddress.ip_network("192.0.2.0/24"))

#: One log entry: when, ``.id`` number, topics, message.
LogEntry = tuple[datetime, int, str, str]


@dataclass(eq=False)
class SimRouter:
    """A RouterOS 7 router as its API shows it. Tables are lists of rows in print order."""

    name: str
    identity: str
    latency_s: float  # how long a data query (monitor, lease or ARP print...) takes to answer
    interfaces: list[dict[str, str]]
    leases: list[dict[str, str]]
    traffic: dict[str, tuple[int, int]]  # interface -> (rx bps, tx bps), what a monitor's first second shows
    username: str = "admin"
    password: str = field(default="", repr=False)
    #: None (healthy) or one of ``faults.FAULTS``.
    fault: str | None = None
    #: (time received, words) of every request sentence, for read-only checks.
    journal: list[tuple[float, list[str]]] = field(default_factory=list, repr=False)
    site: str = ""
    version: str = "7.20.5 (stable)"
    #: Installed radio package: "wireless" (legacy), "wifi" (7.13+) or None; the other menu is missing.
    wireless_package: str | None = None
    resource: dict[str, str] = field(default_factory=dict, repr=False)
    #: ``/system/routerboard`` (None on a CHR: the menu is missing there).
    routerboard: dict[str, str] | None = field(default=None, repr=False)
    health: list[dict[str, str]] = field(default_factory=list, repr=False)
    addresses: list[dict[str, str]] = field(default_factory=list, repr=False)
    arp: list[dict[str, str]] = field(default_factory=list, repr=False)
    bridge_hosts: list[dict[str, str]] = field(default_factory=list, repr=False)
    registrations: list[dict[str, str]] = field(default_factory=list, repr=False)
    ppp_active: list[dict[str, str]] = field(default_factory=list, repr=False)
    dhcp_servers: list[dict[str, str]] = field(default_factory=list, repr=False)
    #: The networks whose hosts answer a ping only if the router knows them (ARP, PPPoE).
    client_networks: list[str] = field(default_factory=list, repr=False)
    #: Per interface name, the fields its own menu shows besides ``/interface`` (``vlan-id``, ``ssid``...).
    details: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)
    #: ``/interface/ethernet/monitor`` row of every ethernet port (without ``name`` and ``.section``).
    optics: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)
    log: deque[LogEntry] = field(default_factory=lambda: deque(maxlen=LOG_LINES), repr=False)
    #: Uptime when the first session opened; it grows with the (virtual) clock from there.
    uptime_s: int = 0
    #: RouterOS before 7.18: a print with no rows sends no ``!empty``, only ``!done``.
    pre_7_18: bool = False
    #: Whether the API user has the ``test`` policy (``/ping``).
    can_test: bool = True
    #: ``/ip service`` ``max-sessions`` of the api service.
    max_sessions: int = 20
    #: API sessions open right now.
    sessions: int = 0
    #: Seeds the readings that vary (traffic second by second, ping round trips).
    seed: int = 0
    #: Trio time at which the first session opened: the router's clocks count from there.
    started_at: float | None = None

    @property
    def sfp_count(self) -> int:
        return sum(1 for i in self.interfaces if i["name"].startswith(("sfp", "qsfp")))

    def set_version(self, version: str, build_time: str | None = None) -> None:
        """Run another RouterOS version: ``/system/resource`` and the firmware show it, and a version
        before 7.18 sends no ``!empty``."""
        self.version = version
        self.resource["version"] = version
        if build_time is not None:
            self.resource["build-time"] = build_time
        if self.routerboard is not None:
            self.routerboard["current-firmware"] = self.routerboard["upgrade-firmware"] = version.split()[0]
        number = version.split()[0].split(".")
        self.pre_7_18 = (int(number[0]), int(number[1]) if len(number) > 1 else 0) < (7, 18)

    # ------------------------------------------------------------------ clocks

    def elapsed(self, at: float | None) -> float:
        if at is None or self.started_at is None:
            return 0.0
        return max(0.0, at - self.started_at)

    def clock(self, at: float | None = None) -> datetime:
        """The router's wall clock at Trio time ``at`` (SIM_NOW when its first session opened)."""
        return SIM_NOW + timedelta(seconds=self.elapsed(at))

    # ------------------------------------------------------------------ tables

    def menus(self) -> frozenset[str]:
        """Every menu this router can ``print`` (the radio menus depend on the installed package)."""
        menus = set(_ALWAYS)
        if self.routerboard is not None:
            menus.add("/system/routerboard")
        if self.wireless_package is not None:
            base = f"/interface/{self.wireless_package}"
            menus |= {base, f"{base}/registration-table"}
        return frozenset(menus)

    def table(self, menu: str, at: float | None = None) -> list[dict[str, str]]:
        """The rows ``<menu>/print`` starts from, e.g. ``table("/ip/arp")`` (KeyError: no such menu).

        ``at`` is the Trio time of the print, for the values that move (uptime, the log's dates).
        """
        if menu not in self.menus():
            raise KeyError(menu)
        if menu == "/system/identity":
            return [{"name": self.identity}]
        if menu == "/system/resource":
            return [{"uptime": duration(self.uptime_s + int(self.elapsed(at))), **self.resource}]
        if menu == "/system/routerboard":
            return [dict(self.routerboard or {})]
        if menu == "/log":
            return self._log_rows(at)
        if menu in _DERIVED:
            kind, keys = _DERIVED[menu]
            views = ({**i, **self.details.get(i["name"], {})} for i in self.interfaces if i["type"] == kind)
            return [{k: v[k] for k in keys if k in v} for v in views]
        return list(getattr(self, _TABLES[menu]))

    def _log_rows(self, at: float | None) -> list[dict[str, str]]:
        today = self.clock(at).date()
        return [{".id": f"*{number:X}", "time": when.strftime("%H:%M:%S" if when.date() == today else "%Y-%m-%d %H:%M:%S"),
                 "topics": topics, "message": message} for when, number, topics, message in self.log]

    def append_log(self, topics: str, message: str, at: float | None = None) -> None:
        number = self.log[-1][1] + 1 if self.log else 0x1A000
        self.log.append((self.clock(at).replace(microsecond=0), number, topics, message))

    # ------------------------------------------------------------------ live readings

    def traffic_at(self, interface: str, section: int) -> tuple[int, int]:
        """rx/tx bits per second of ``interface`` in a monitor's ``section``-th second.

        Section 0 is exactly ``traffic``; later seconds wander a few percent around it, seeded.
        """
        if interface == "aggregate":
            rx = tx = 0
            for i in self.interfaces:
                if i["type"] == "ether":
                    r, t = self.traffic_at(i["name"], section)
                    rx, tx = rx + r, tx + t
            return rx, tx
        rx, tx = self.traffic.get(interface, (0, 0))
        if section == 0 or not (rx or tx):
            return rx, tx
        rng = random.Random(f"{self.seed}|{interface}|{section}")
        return int(rx * rng.uniform(0.95, 1.05)), int(tx * rng.uniform(0.95, 1.05))

    def optics_at(self, interface: str, section: int) -> dict[str, str]:
        """The ethernet monitor row of ``interface`` (without name and ``.section``) in a given second."""
        row = dict(self.optics[interface])
        if section and "sfp-rx-power" in row and row.get("sfp-rx-loss") != "true":
            rng = random.Random(f"{self.seed}|optics|{interface}|{section}")
            for key in ("sfp-rx-power", "sfp-tx-power"):
                row[key] = f"{float(row[key]) + rng.uniform(-0.03, 0.03):.3f}"
        return row

    def ping_rtt_us(self, address: str, seq: int) -> int | None:
        """Round trip of echo ``seq`` to ``address`` in microseconds, or None for a timeout.

        Deterministic per router and address: TEST-NET-1 and 10.255.0.0/16 never answer, the
        router's own client networks answer only at a client's address, a tenth of the rest loses
        one packet in four.
        """
        ip = ipaddress.ip_address(address)
        if any(ip in net for net in UNREACHABLE_NETS):
            return None
        base_rng = random.Random(f"{self.seed}|ping|{address}")
        jitter = random.Random(f"{self.seed}|ping|{address}|{seq}").uniform(0.8, 1.4)
        own = {a["address"].split("/")[0] for a in self.addresses}
        if address in own:
            return int(base_rng.uniform(15, 40) * jitter)
        if any(ip in ipaddress.ip_network(net) for net in self.client_networks):
            hosts = {r["address"] for r in self.arp if r.get("complete") == "true"}
            hosts |= {p["address"] for p in self.ppp_active}
            if address not in hosts:
                return None
            return int(base_rng.uniform(300, 4000) * jitter)
        lossy = base_rng.random() < 0.1
        base = base_rng.uniform(4000, 80000)
        if lossy and zlib.crc32(f"{self.seed}|{address}|{seq}".encode()) % 4 == 0:
            return None
        return int(base * jitter)

    def ping_ttl(self, address: str) -> int:
        ip = ipaddress.ip_address(address)
        if any(ip in ipaddress.ip_network(net) for net in self.client_networks):
            return 64 if zlib.crc32(address.encode()) % 3 else 128
        return 50 + zlib.crc32(address.encode()) % 10


#: Menus every simulated router has.
_ALWAYS = frozenset({
    "/system/identity", "/system/resource", "/system/health", "/log",
    "/interface", "/interface/ethernet", "/interface/bridge", "/interface/bridge/host", "/interface/vlan",
    "/ip/address", "/ip/arp", "/ip/dhcp-server", "/ip/dhcp-server/lease", "/ppp/active",
})
#: Menus that are a plain attribute of SimRouter.
_TABLES = {
    "/system/health": "health", "/interface": "interfaces", "/ip/address": "addresses", "/ip/arp": "arp",
    "/ip/dhcp-server/lease": "leases", "/interface/bridge/host": "bridge_hosts", "/ppp/active": "ppp_active",
    "/interface/wireless/registration-table": "registrations", "/interface/wifi/registration-table": "registrations",
    "/ip/dhcp-server": "dhcp_servers",
}
_COMMON = (".id", "name", "mtu", "actual-mtu", "l2mtu", "mac-address")
#: Menus that are a view of ``/interface``: (type, the keys they show).
_DERIVED: dict[str, tuple[str, tuple[str, ...]]] = {
    "/interface/ethernet": ("ether", (".id", "name", "default-name", "mtu", "l2mtu", "mac-address", "orig-mac-address",
                                      "arp", "auto-negotiation", "advertise", "running", "slave", "disabled", "comment")),
    "/interface/bridge": ("bridge", (*_COMMON, "arp", "protocol-mode", "fast-forward", "vlan-filtering",
                                     "auto-mac", "running", "disabled", "comment")),
    "/interface/vlan": ("vlan", (*_COMMON, "arp", "vlan-id", "interface", "running", "disabled", "comment")),
    "/interface/wireless": ("wlan", (*_COMMON, "mode", "ssid", "band", "frequency", "running", "disabled")),
    "/interface/wifi": ("wifi", (*_COMMON, "configuration.mode", "configuration.ssid", "channel.band",
                                 "running", "disabled")),
}


def duration(seconds: int) -> str:
    """RouterOS duration: ``3w2d4h12m40s``, ``9m59s``, ``0s``."""
    out = ""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out + f"{seconds}s" if seconds or not out else out


def rtt_text(us: int) -> str:
    """A RouterOS 7 ping time: ``818us``, ``1ms244us``, ``12ms``."""
    ms, rest = divmod(us, 1000)
    if ms >= 1000:
        return f"{ms // 1000}s{ms % 1000}ms" if ms % 1000 else f"{ms // 1000}s"
    if not ms:
        return f"{rest}us"
    return f"{ms}ms{rest}us" if rest else f"{ms}ms"

"""Seeded, realistic RouterOS 7 data for one router: board, ports, optics, clients, PPPoE users, log.

``make_router`` is a pure function of its ``random.Random`` and the router's name: the same seed
gives the same router, byte for byte. Values are strings in the formats RouterOS 7.10+ sends
(research/routeros.md section 3: ``true``/``false``, durations ``1w2d3h4m5s``, ISO dates, upper-case
MACs, units stripped). Addresses and MACs follow an address plan keyed by the router's number (its
name ``A.B`` read as ``A*16+B``), so a client's IP or MAC belongs to one router only; PPPoE names are
made unique across a fleet by passing the fleet's ``taken`` set. No I/O, no Trio.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from mikrovoice.sim.routeros.router import SIM_NOW, SimRouter, duration

T = TypeVar("T")

#: Router numbers index the address plan: 172.16.0.0/12 LANs, 100.64.0.0/10 PPPoE pools, 24-bit MAC space.
ROUTER_NUMBERS = 4096
#: Where the NOC (and mikrovoice) logs in from, as the routers' logs show it when the peer is unknown.
NOC_ADDRESS = "10.1.2.3"


@dataclass(frozen=True)
class Board:
    name: str
    architecture: str
    cpu: str
    cpu_count: int
    cpu_frequency: int
    memory_mib: int
    hdd_mib: int
    ethers: int
    sfps: tuple[str, ...]
    #: Radio packages the board may run (one is installed, or none when empty).
    radios: tuple[str, ...] = ()
    #: ``/system/health`` sensors: (name, type, low, high). Empty: the board has none (``!empty``).
    health: tuple[tuple[str, str, float, float], ...] = ()
    routerboard: bool = True
    weight: int = 1


def _ports(prefix: str, count: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(1, count + 1))


_FANS = (("fan1-speed", "RPM", 3800, 5600), ("fan2-speed", "RPM", 3800, 5600))
BOARDS = (
    Board("hEX S", "mmips", "MT7621", 4, 880, 256, 16, 5, ("sfp1",),
          health=(("voltage", "V", 23.6, 24.4), ("temperature", "C", 38, 55)), weight=2),
    Board("RB5009UG+S+", "arm64", "ARM64", 4, 1400, 1024, 1024, 8, ("sfp-sfpplus1",),
          health=(("voltage", "V", 23.8, 24.3), ("cpu-temperature", "C", 42, 58)), weight=3),
    Board("RB4011iGS+5HacQ2HnD", "arm", "ARMv7", 4, 1400, 1024, 512, 10, ("sfp-sfpplus1",), radios=("wireless", "wifi"),
          health=(("voltage", "V", 23.8, 24.3), ("temperature", "C", 36, 50)), weight=3),
    Board("L009UiGS-2HaxD", "arm", "ARMv7", 2, 800, 512, 128, 8, ("sfp1",), radios=("wifi",),
          health=(("cpu-temperature", "C", 45, 62),), weight=2),
    Board("CCR2004-16G-2S+", "arm64", "ARM64", 4, 1700, 4096, 128, 16, _ports("sfp-sfpplus", 2),
          health=(("cpu-temperature", "C", 48, 66), ("board-temperature1", "C", 35, 46), *_FANS), weight=3),
    Board("CCR1036-8G-2S+", "tile", "tilegx", 36, 1200, 4096, 1024, 8, _ports("sfp-sfpplus", 2),
          health=(("voltage", "V", 11.9, 12.2), ("temperature", "C", 38, 50), ("cpu-temperature", "C", 52, 70), *_FANS)),
    Board("CCR2116-12G-4S+", "arm64", "ARM64", 16, 2000, 16384, 128, 13, _ports("sfp-sfpplus", 4),
          health=(("cpu-temperature", "C", 50, 68), ("board-temperature1", "C", 36, 48), *_FANS)),
    Board("CCR2004-1G-12S+2XS", "arm64", "ARM64", 4, 1700, 4096, 128, 1, _ports("sfp-sfpplus", 12) + ("sfp28-1", "sfp28-2"),
          health=(("cpu-temperature", "C", 48, 64), ("board-temperature1", "C", 34, 45), *_FANS)),
    # A virtual PPPoE concentrator: no SFP cages, no sensors, no /system/routerboard.
    Board("CHR QEMU Standard PC (i440FX + PIIX, 1996)", "x86_64", "Intel(R) Xeon(R) Silver 4210R CPU @ 2.40GHz",
          4, 2400, 4096, 1024, 4, (), routerboard=False),
)
#: (version, build-time, weight); routers before 7.18 send no ``!empty``.
VERSIONS = (("7.20.5 (stable)", "2025-11-27 08:17:04", 6), ("7.19.6 (stable)", "2025-09-30 10:14:22", 2),
            ("7.18.2 (stable)", "2025-03-11 11:59:04", 1), ("7.16.2 (stable)", "2024-11-26 10:35:12", 1))

#: (vendor, part number, wavelength, single-mode link length, tx dBm range, bias mA range, serial prefix)
Module = tuple[str, str, str, str, tuple[float, float], tuple[int, int], str]
MODULES: dict[str, tuple[Module, ...]] = {
    "1G": (("Mikrotik", "S-31DLC20D", "1310", "20km", (-8.0, -3.0), (10, 22), "SG31"),
           ("Mikrotik", "S-3553LC20D", "1310", "20km", (-8.0, -3.0), (10, 20), "SG35"),
           ("OEM", "SFP-1G-LX", "1310", "20km", (-9.0, -3.0), (8, 25), "OE")),
    "10G": (("Mikrotik", "S+31DLC10D", "1310", "10km", (-4.5, -1.0), (28, 42), "SG31"),
            ("Mikrotik", "S+85DLC03D", "850", "", (-5.5, -2.5), (5, 8), "SG85"),
            ("FS", "SFP-10GLR-31", "1310", "10km", (-4.0, -0.5), (30, 45), "F21"),
            ("Ubiquiti", "UF-SM-10G", "1310", "10km", (-5.0, -1.5), (25, 40), "UI4"),
            ("OEM", "SFP-10G-LR", "1310", "10km", (-5.5, -1.0), (20, 45), "OE")),
    "25G": (("Mikrotik", "XS+31LC10D", "1310", "10km", (-4.0, -0.5), (35, 55), "SG31"),),
}
_COPPER_ADV = "10M-baseT-half,10M-baseT-full,100M-baseT-half,100M-baseT-full,1G-baseT-half,1G-baseT-full"
_SFP_ADV = {"1G": "1G-baseX", "10G": "1G-baseX,10G-baseSR-LR", "25G": "10G-baseSR-LR,25G-baseSR-LR"}

#: Port MAC prefixes of the routers themselves (never used by clients).
_ROUTER_OUIS = ("48:A9:8A", "DC:2C:6E", "18:FD:74", "2C:C8:1B")
#: What sits behind a DHCP lease: (kind, OUIs, weight).
_CLIENTS: tuple[tuple[str, tuple[str, ...], int], ...] = (
    ("android", ("8C:71:F8", "5C:0A:5B", "64:CC:2E", "28:6C:07", "48:46:FB", "E8:91:20"), 8),
    ("iphone", ("F0:18:98", "A4:83:E7", "3C:22:FB"), 4),
    ("windows", ("3C:A9:F4", "A0:A8:CD", "F8:BC:12"), 4),
    ("tv", ("BC:44:86", "A8:23:FE", "F4:F5:D8"), 2),
    ("camera", ("C0:56:E3", "BC:5E:33"), 1),
    ("printer", ("3C:D9:2B", "64:EB:8C"), 1),
    ("iot", ("24:0A:C4", "A4:CF:12"), 1),
    ("cpe", ("50:C7:BF", "98:DA:C4", "24:A4:3C"), 2),
)
_CPE_OUIS = ("6C:3B:6B", "CC:2D:E0", "50:C7:BF", "98:DA:C4", "24:A4:3C", "F0:9F:C2", "34:E0:CF")
_PHONES = ("Galaxy-A14", "Galaxy-A54", "Redmi-Note-12", "Redmi-13C", "moto-g32", "moto-e13", "HUAWEI_P30_lite",
           "POCO-X5", "OPPO-A58")
_FIRST = ("juan", "maria", "carlos", "andrea", "luis", "diana", "jorge", "paola", "andres", "camila", "diego",
          "laura", "felipe", "natalia", "oscar", "sandra", "julian", "carolina", "sebastian", "valentina",
          "alejandro", "daniela", "fernando", "marcela", "ricardo", "paula", "hernan", "liliana", "mauricio",
          "gloria", "javier", "claudia", "william", "yolanda", "jhon", "leidy", "edwin", "yesenia", "camilo", "angela")
_LAST = ("perez", "gomez", "rodriguez", "martinez", "garcia", "lopez", "hernandez", "gonzalez", "ramirez",
         "torres", "diaz", "moreno", "vargas", "castro", "rojas", "ortiz", "jimenez", "suarez", "munoz", "romero",
         "herrera", "medina", "aguilar", "castillo", "pineda", "cardenas", "ospina", "restrepo", "quintero",
         "salazar", "osorio", "arias", "gutierrez", "mejia", "rincon", "parra", "bernal", "cortes", "pardo", "zapata")
#: PPPoE accounts of businesses, and the way the NOC wrote them in interface comments (latin-1 on the wire).
_BUSINESSES = (("ferreteria.el.sol", "Ferretería El Sol"), ("drogueria.san.jorge", "Droguería San Jorge"),
               ("panaderia.la.espiga", "Panadería La Espiga"), ("tienda.don.pepe", "Tienda Don Pepe"),
               ("colegio.san.jose", "Colegio San José"), ("restaurante.el.fogon", "Restaurante El Fogón"),
               ("miscelanea.la.14", "Miscelánea La 14"), ("taller.ruiz", "Taller Ruiz"),
               ("hotel.la.montana", "Hotel La Montaña"), ("finca.las.palmas", "Finca Las Palmas"),
               ("papeleria.el.estudiante", "Papelería El Estudiante"), ("veterinaria.patitas", "Veterinaria Patitas"),
               ("asadero.el.pollo.dorado", "Asadero El Pollo Dorado"), ("peluqueria.estilos", "Peluquería Estilos"),
               ("parqueadero.central", "Parqueadero Central"), ("jardin.infantil.pinochos", "Jardín Infantil Pinochos"),
               ("supermercado.la.economia", "Supermercado La Economía"), ("optica.vision.clara", "Óptica Visión Clara"),
               ("gimnasio.fitness.zone", "Gimnasio Fitness Zone"), ("distribuidora.el.trigal", "Distribuidora El Trigal"))
#: Site names a router's backhaul comments mention (``fleet.SITES`` assigns the routers' own).
_NEIGHBOURS = ("Torre Norte", "Torre Sur", "Nodo Centro", "Cerro La Cruz", "Chapinero", "Usaquén", "Suba", "Bosa",
               "Kennedy", "Fontibón", "Engativá", "Cerro Guadalupe", "La Calera", "Chía", "Cajicá", "Soacha")
_SECTORS = ("AP Sector Norte", "AP Sector Sur", "AP Sector Oriente", "AP Sector Occidente", "AP Sector 120",
            "AP Sector 240", "PtMP Barrio La Esperanza", "PtMP Vereda El Salitre")
#: Where brute-force SSH attempts come from in the routers' logs.
_ATTACKERS = ("45.148.10.183", "185.224.128.17", "193.32.162.44", "61.177.172.136", "218.92.0.112", "80.94.95.210")


def router_number(name: str) -> int:
    """The router's place in the address plan: ``"A.B"`` -> A*16+B; other names a hash (may collide)."""
    match = re.fullmatch(r"(\d{1,3})\.(\d{1,2})", name)
    if match and int(match[1]) < 256 and int(match[2]) < 16:
        return int(match[1]) * 16 + int(match[2])
    return zlib.crc32(name.encode()) % ROUTER_NUMBERS


def _mix24(x: int) -> int:
    """A bijection of 24-bit numbers that looks random: distinct inputs give distinct MAC tails."""
    x &= 0xFFFFFF
    x ^= x >> 12
    x = (x * 0x2F5B1D) & 0xFFFFFF
    x ^= x >> 11
    x = (x * 0x6C8E9D) & 0xFFFFFF
    return x ^ (x >> 13)


def _mac(oui: str, tail: int) -> str:
    return f"{oui}:{tail >> 16 & 0xFF:02X}:{tail >> 8 & 0xFF:02X}:{tail & 0xFF:02X}"


class _Plan:
    """The router's addresses and MACs. Client ``slot`` ranges: 0-1023 DHCP, 1024-2047 PPPoE CPEs,
    2048-3071 static devices, 4095 the upstream gateway; each (router number, slot) is one MAC tail."""

    def __init__(self, number: int, rng: random.Random) -> None:
        self.number = number
        self.lan = f"172.{16 + number // 256}.{number % 256}"
        self.pool = f"100.{64 + number // 256}.{number % 256}"
        base = number * 4
        self.uplink_net = f"10.64.{base >> 8}.{base & 0xFF}"
        self.uplink_ip = f"10.64.{base >> 8}.{(base & 0xFF) + 2}"
        self.gateway_ip = f"10.64.{base >> 8}.{(base & 0xFF) + 1}"
        self.router_oui = _ROUTER_OUIS[number % len(_ROUTER_OUIS)]
        self.router_tail = 0x400000 | ((number * 2897) & 0xFFF) << 5
        self.rng = rng

    def port_mac(self, port: int) -> str:
        return _mac(self.router_oui, self.router_tail | port)

    def client_mac(self, slot: int, ouis: Sequence[str], private: bool = False) -> str:
        tail = _mix24(self.number * 4096 + slot)
        if private:  # a phone's randomised MAC: locally administered, unicast
            first = (self.rng.randrange(256) & 0xFC) | 0x02
            return _mac(f"{first:02X}:{self.rng.randrange(256):02X}:{self.rng.randrange(256):02X}", tail)
        return _mac(self.rng.choice(ouis), tail)


def _weighted(rng: random.Random, items: Sequence[T], weight: Callable[[T], int]) -> T:
    return rng.choices(items, weights=[weight(i) for i in items])[0]


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _hex(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(4 * digits):0{digits}X}"


@dataclass
class _Port:
    name: str
    kind: str  # ether, sfp
    role: str  # uplink, backhaul, sector, business, unused
    comment: str = ""
    running: bool = True
    disabled: bool = False
    rate: str = "1G"  # 100M 1G 10G 25G
    optics: str = "healthy"  # sfp: healthy weak rx-loss absent
    link_downs: int = 0
    traffic: tuple[int, int] = (0, 0)
    slave: bool = False


def make_router(name: str, rng: random.Random, latency_s: float, username: str = "admin", password: str = "",
                *, taken: set[str] | None = None) -> SimRouter:
    """A seeded router. ``taken``: PPPoE user names already used in the fleet (updated in place)."""
    taken = set() if taken is None else taken
    number = router_number(name)
    plan = _Plan(number, rng)
    seed = rng.getrandbits(32)
    board = _weighted(rng, BOARDS, lambda b: b.weight)
    version, build_time, _ = _weighted(rng, VERSIONS, lambda v: v[2])
    package = rng.choice(board.radios) if board.radios else None
    uptime_s = rng.randrange(3 * 3600, 95 * 86400)
    boot = SIM_NOW - timedelta(seconds=uptime_s)

    ports = _physical_ports(board, rng)
    ppp = _ppp_sessions(board, plan, rng, taken, uptime_s)
    clients = _clients(board, plan, rng, ports, package)
    _traffic(ports, ppp, rng)

    router = SimRouter(
        name=name, identity=f"R-{name.replace('.', '-')}", latency_s=latency_s, interfaces=[], leases=[], traffic={},
        username=username, password=password, wireless_package=package, uptime_s=uptime_s, seed=seed,
    )
    router.resource = _resource(board, version, build_time, rng)
    router.routerboard = _routerboard(board, version, rng) if board.routerboard else None
    router.set_version(version)
    router.health = [{".id": f"*{0xD + i:X}", "name": sensor, "value": _reading(unit, rng.uniform(low, high)), "type": unit}
                     for i, (sensor, unit, low, high) in enumerate(board.health)]
    _interfaces(router, plan, ports, ppp, clients, package, rng)
    _addresses(router, plan, ports, ppp)
    _client_tables(router, plan, clients, package, rng)
    router.ppp_active = [row for row, _ in ppp]
    router.dhcp_servers = [{".id": "*1", "name": "dhcp-lan", "interface": "bridge-lan", "lease-time": "1h",
                            "address-pool": "pool-lan", "authoritative": "yes", "invalid": "false",
                            "dynamic": "false", "disabled": "false"}]
    _history(router, ports, ppp, clients, package, boot, rng)
    return router


def _reading(unit: str, value: float) -> str:
    return f"{value:.1f}" if unit == "V" else str(round(value))


def _resource(board: Board, version: str, build_time: str, rng: random.Random) -> dict[str, str]:
    total = board.memory_mib * 1024 * 1024
    hdd = board.hdd_mib * 1024 * 1024
    return {"version": version, "build-time": build_time, "factory-software": rng.choice(("7.5", "7.1.5", "6.48.6")),
            "free-memory": str(int(total * rng.uniform(0.35, 0.8)) // 4096 * 4096), "total-memory": str(total),
            "cpu": board.cpu, "cpu-count": str(board.cpu_count), "cpu-frequency": str(board.cpu_frequency),
            "cpu-load": str(rng.randrange(1, 46)), "free-hdd-space": str(int(hdd * rng.uniform(0.5, 0.9)) // 4096 * 4096),
            "total-hdd-space": str(hdd), "write-sect-since-reboot": str(rng.randrange(200, 9000)),
            "write-sect-total": str(rng.randrange(20000, 900000)), "bad-blocks": "0",
            "architecture-name": board.architecture, "board-name": board.name, "platform": "MikroTik"}


def _routerboard(board: Board, version: str, rng: random.Random) -> dict[str, str]:
    firmware = version.split()[0]
    return {"routerboard": "true", "board-name": board.name, "model": board.name, "serial-number": _hex(rng, 12),
            "firmware-type": {"mmips": "mt7621L", "arm": "ipq4000L", "arm64": "al2", "tile": "tilegx"}.get(
                board.architecture, board.architecture),
            "factory-firmware": rng.choice(("7.5", "7.1.5", "6.48.6")), "current-firmware": firmware,
            "upgrade-firmware": firmware}


def _physical_ports(board: Board, rng: random.Random) -> list[_Port]:
    """Uplink, backhauls (SFP), AP sectors and business clients (copper), unused ports; optics as seeded."""
    ports: list[_Port] = []
    uplink = "ether1" if board.ethers > 1 or not board.sfps else board.sfps[0]
    for i in range(1, board.ethers + 1):
        name = f"ether{i}"
        if name == uplink:
            ports.append(_Port(name, "ether", "uplink", "UPLINK", rate="1G"))
            continue
        roll = rng.random()
        if roll < 0.35:
            ports.append(_Port(name, "ether", "sector", rng.choice(_SECTORS), slave=True, rate="1G",
                               link_downs=rng.choice((0, 0, 1, 2, 5))))
        elif roll < 0.55:
            business = rng.choice(_BUSINESSES)[1]
            ports.append(_Port(name, "ether", "business", f"Cliente {business}", rate=rng.choice(("100M", "1G")),
                               link_downs=rng.choice((0, 1, 3))))
        else:
            disabled = rng.random() < 0.4
            ports.append(_Port(name, "ether", "unused", running=False, disabled=disabled))
    if not any(p.role == "sector" for p in ports):
        spare = next((p for p in ports if p.role == "unused"), None) or next((p for p in ports if p.role == "business"), None)
        if spare is not None:
            spare.role, spare.comment, spare.running, spare.disabled, spare.slave = "sector", _SECTORS[0], True, False, True
    for name in board.sfps:
        cage = "1G" if name.startswith("sfp") and name[3:].isdigit() else "25G" if name.startswith("sfp28") else "10G"
        rate = cage if rng.random() < 0.75 else {"1G": "1G", "10G": "1G", "25G": "10G"}[cage]
        if name == uplink:
            ports.append(_Port(name, "sfp", "uplink", "UPLINK", rate=rate))
            continue
        roll = rng.random()
        optics = "healthy" if roll < 0.7 else "weak" if roll < 0.85 else "rx-loss" if roll < 0.92 else "absent"
        comment = f"Enlace {rng.choice(('fibra a', 'a', 'backhaul'))} {rng.choice(_NEIGHBOURS)}" if optics != "absent" else ""
        downs = {"healthy": rng.choice((0, 0, 1, 2)), "weak": rng.randrange(4, 40), "rx-loss": rng.randrange(1, 12),
                 "absent": 0}[optics]
        ports.append(_Port(name, "sfp", "backhaul", comment, running=optics in ("healthy", "weak"), rate=rate,
                           optics=optics, link_downs=downs))
    return ports


@dataclass
class _Client:
    """One DHCP client: its lease, and where the bridge learned it."""

    address: str
    mac: str
    host: str | None
    port: str  # bridge port: an AP sector or the radio
    bound: bool
    static: bool
    comment: str = ""
    wireless: bool = False
    seen_s: int = 0


def _host_name(kind: str, rng: random.Random) -> str | None:
    if rng.random() < 0.1:
        return None
    first = rng.choice(_FIRST).capitalize()
    names: dict[str, Callable[[], str]] = {
        "android": lambda: rng.choice((f"android-{_hex(rng, 16).lower()}", rng.choice(_PHONES))),
        "iphone": lambda: rng.choice((f"iPhone-de-{first}", "iPhone", f"iPad-de-{first}")),
        "windows": lambda: f"{rng.choice(('DESKTOP', 'LAPTOP'))}-{_hex(rng, 7)}",
        "tv": lambda: rng.choice(("LGwebOSTV", "Samsung-TV", "Chromecast", "Roku-3930X")),
        "camera": lambda: rng.choice(("HIKVISION", f"EZVIZ-{_hex(rng, 6)}", "IPCAM")),
        "printer": lambda: rng.choice((f"EPSON{_hex(rng, 6)}", f"HP{_hex(rng, 12)}")),
        "iot": lambda: rng.choice((f"ESP_{_hex(rng, 6)}", f"tasmota-{_hex(rng, 6)}-{rng.randrange(1000, 9999)}")),
        "cpe": lambda: rng.choice(("TL-WR840N", "Archer-C6", "UBNT", "MikroTik")),
    }
    return names[kind]()


_STATIC_LABEL = {"camera": "Cámara", "printer": "Impresora", "windows": "Oficina", "tv": "Sala", "cpe": "Router"}


def _clients(board: Board, plan: _Plan, rng: random.Random, ports: list[_Port], package: str | None) -> list[_Client]:
    sectors = [p.name for p in ports if p.role == "sector"] or [ports[0].name]
    radio = {"wireless": "wlan1", "wifi": "wifi1"}.get(package or "")
    count = rng.randrange(2, 7) if not board.routerboard else rng.randrange(8, 49)
    clients = []
    for i in range(count):
        kind, ouis, _ = _weighted(rng, _CLIENTS, lambda c: c[2])
        wireless = radio is not None and kind in ("android", "iphone", "windows", "tv") and rng.random() < 0.5
        static = rng.random() < 0.12
        bound = not static or rng.random() < 0.5
        private = kind in ("android", "iphone") and rng.random() < 0.4
        clients.append(_Client(
            address=f"{plan.lan}.{10 + i}", mac=plan.client_mac(i, ouis, private), host=_host_name(kind, rng),
            port=radio if wireless and radio else rng.choice(sectors), bound=bound, static=static,
            comment=f"{_STATIC_LABEL.get(kind, 'Equipo')} {rng.choice(_FIRST).capitalize()}" if static else "",
            wireless=wireless, seen_s=rng.randrange(1, 59) if bound else rng.randrange(3600, 30 * 86400)))
    return clients


def _ppp_name(rng: random.Random, taken: set[str]) -> str:
    roll = rng.random()
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    if roll < 0.2:
        while True:
            name = f"cliente{rng.randrange(1000, 10000)}"
            if name not in taken:
                break
    else:
        name = (f"{first}.{last}" if roll < 0.6 else f"{first[0]}{last}" if roll < 0.72
                else f"{first}{last}" if roll < 0.82 else rng.choice(_BUSINESSES)[0])
        if name in taken:  # the ISP's own habit: juan.perez, juan.perez2, juan.perez3...
            name = next(f"{name}{k}" for k in range(2, 10**6) if f"{name}{k}" not in taken)
    taken.add(name)
    return name


def _ppp_sessions(board: Board, plan: _Plan, rng: random.Random, taken: set[str],
                  uptime_s: int) -> list[tuple[dict[str, str], tuple[int, int]]]:
    """``/ppp/active`` rows and each session's (rx, tx) bps on its ``<pppoe-user>`` interface."""
    if board.routerboard and rng.random() < 0.35:
        return []
    count = rng.randrange(15, 41) if not board.routerboard else rng.randrange(1, 19)
    sessions = []
    for i in range(count):
        name = _ppp_name(rng, taken)
        up = rng.randrange(60, uptime_s)
        row = {".id": f"*{0x81000000 + i:X}", "name": name, "service": "pppoe",
               "caller-id": plan.client_mac(1024 + i, _CPE_OUIS), "address": f"{plan.pool}.{2 + i}",
               "uptime": duration(up), "encoding": "", "session-id": f"0x81{plan.number:03X}{i:03X}",
               "limit-bytes-in": "0", "limit-bytes-out": "0", "radius": "false"}
        sessions.append((row, (rng.randrange(50, 5000) * 1000, rng.randrange(500, 60000) * 1000)))
    return sessions


def _traffic(ports: list[_Port], ppp: list[tuple[dict[str, str], tuple[int, int]]], rng: random.Random) -> None:
    """Seeded bit rates that add up: what the client-facing ports download comes in by the uplink."""
    capacity = {"100M": 95_000_000, "1G": 950_000_000, "10G": 9_500_000_000, "25G": 24_000_000_000}
    down = 0
    for port in ports:
        if not port.running or port.role == "uplink":
            continue
        if port.role == "backhaul":
            rx, tx = rng.randrange(50, 4000) * 10**6 + rng.randrange(10**6), rng.randrange(20, 1500) * 10**6
        elif port.role == "sector":
            tx, rx = rng.randrange(20, 300) * 10**6, rng.randrange(2, 40) * 10**6
        else:
            tx, rx = rng.randrange(2, 80) * 10**6, rng.randrange(1, 20) * 10**6
        if port.optics == "weak":
            rx, tx = rx // 3, tx // 3
        cap = capacity[port.rate]
        port.traffic = (min(rx, cap), min(tx, cap))
        down += port.traffic[1]
    down += sum(t for _, (_, t) in ppp)
    for port in ports:
        if port.role == "uplink":
            cap = capacity[port.rate]
            port.traffic = (min(cap, int(down * 1.05) + 5 * 10**6), min(cap, down // 6 + 2 * 10**6))


def _counters(rng: random.Random, traffic: tuple[int, int], seconds: int, errors: bool) -> dict[str, str]:
    rx_b = int(traffic[0] / 8 * seconds * rng.uniform(0.3, 0.7)) + rng.randrange(10**6)
    tx_b = int(traffic[1] / 8 * seconds * rng.uniform(0.3, 0.7)) + rng.randrange(10**6)
    return {"rx-byte": str(rx_b), "tx-byte": str(tx_b), "rx-packet": str(rx_b // 780), "tx-packet": str(tx_b // 820),
            "rx-drop": str(rng.randrange(0, 50) if errors else 0), "tx-drop": "0",
            "tx-queue-drop": str(rng.randrange(0, 2000)), "rx-error": str(rng.randrange(100, 90000) if errors else 0),
            "tx-error": "0", "fp-rx-byte": "0", "fp-tx-byte": "0", "fp-rx-packet": "0", "fp-tx-packet": "0"}


def _interfaces(router: SimRouter, plan: _Plan, ports: list[_Port], ppp: list[tuple[dict[str, str], tuple[int, int]]],
                clients: list[_Client], package: str | None, rng: random.Random) -> None:
    rows: list[dict[str, str]] = []
    uptime = router.uptime_s

    def add(name: str, type_: str, mac: str | None, running: bool, disabled: bool, traffic: tuple[int, int],
            mtu: str = "1500", l2mtu: str | None = None, comment: str = "", link_downs: int = 0,
            default: bool = False, slave: bool = False, dynamic: bool = False, since: int | None = None,
            errors: bool = False, extra: dict[str, str] | None = None) -> None:
        row = {".id": f"*{len(rows) + 1:X}" if not dynamic else f"*{0xF00000 + len(rows):X}", "name": name}
        if default:
            row["default-name"] = name
        row |= {"type": type_, "mtu": mtu, "actual-mtu": "1500" if mtu == "auto" else mtu}
        if l2mtu:
            row |= {"l2mtu": l2mtu, "max-l2mtu": "9578" if l2mtu == "1592" else l2mtu}
        if mac:
            row["mac-address"] = mac
        if running or link_downs:
            up_ago = since if since is not None else (uptime - rng.randrange(5, 60) if not link_downs
                                                      else rng.randrange(600, max(601, uptime)))
            if link_downs:
                row["last-link-down-time"] = _when(SIM_NOW - timedelta(seconds=up_ago + rng.randrange(2, 900)))
            if running:
                row["last-link-up-time"] = _when(SIM_NOW - timedelta(seconds=up_ago))
        row["link-downs"] = str(link_downs)
        row |= _counters(rng, traffic, uptime, errors)
        row |= {"running": "true" if running else "false"}
        if slave:
            row["slave"] = "true"
        if dynamic:
            row["dynamic"] = "true"
        row["disabled"] = "true" if disabled else "false"
        if comment:
            row["comment"] = comment
        rows.append(row)
        router.traffic[name] = traffic if running else (0, 0)
        if extra:
            router.details[name] = extra

    for index, port in enumerate(ports):
        mac = plan.port_mac(index)
        add(port.name, "ether", mac, port.running, port.disabled, port.traffic, l2mtu="1592", comment=port.comment,
            link_downs=port.link_downs, default=True, slave=port.slave, errors=port.optics == "weak",
            extra={"orig-mac-address": mac, "arp": "enabled", "auto-negotiation": "true",
                   "advertise": _SFP_ADV.get(port.rate, _COPPER_ADV) if port.kind == "sfp" else _COPPER_ADV})
        router.optics[port.name] = _optics_row(port, rng)
    members = [p for p in ports if p.slave]
    radio = {"wireless": "wlan1", "wifi": "wifi1"}.get(package or "")
    radio_traffic = (sum(rng.randrange(1, 8) * 10**6 for c in clients if c.wireless and c.bound),
                     sum(rng.randrange(5, 40) * 10**6 for c in clients if c.wireless and c.bound))
    bridge_traffic = (sum(p.traffic[0] for p in members) + radio_traffic[0],
                      sum(p.traffic[1] for p in members) + radio_traffic[1])
    bridge_mac = plan.port_mac(0 if not members else ports.index(members[0]))
    add("bridge-lan", "bridge", bridge_mac, True, False, bridge_traffic, mtu="auto", l2mtu="1592",
        extra={"arp": "enabled", "protocol-mode": "rstp", "fast-forward": "true", "vlan-filtering": "false",
               "auto-mac": "true"})
    if radio:
        ssid = f"Clientes-{router.name}"
        add(radio, "wlan" if radio == "wlan1" else "wifi", plan.port_mac(len(ports) + 1), True, False, radio_traffic,
            l2mtu="1600", default=True, slave=True, extra={
                "mode": "ap-bridge", "ssid": ssid, "band": "2ghz-b/g/n", "frequency": "2437",
                "configuration.mode": "ap", "configuration.ssid": ssid, "channel.band": "2ghz-ax"})
    uplink = next(p for p in ports if p.role == "uplink")
    add("vlan100-clientes", "vlan", bridge_mac, True, False, (bridge_traffic[0] // 5, bridge_traffic[1] // 5),
        l2mtu="1588", comment="Clientes corporativos", extra={"arp": "enabled", "vlan-id": "100", "interface": "bridge-lan"})
    add("vlan200-gestion", "vlan", plan.port_mac(ports.index(uplink)), True, False, (40_000, 90_000), l2mtu="1588",
        comment="Gestión NOC", extra={"arp": "enabled", "vlan-id": "200", "interface": uplink.name})
    for row, traffic in ppp:
        seconds = _seconds(row["uptime"])
        add(f"<pppoe-{row['name']}>", "pppoe-in", None, True, False, traffic, mtu="1480", dynamic=True, since=seconds)
    router.interfaces = rows


def _seconds(text: str) -> int:
    units = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([wdhms])", text))


def _optics_row(port: _Port, rng: random.Random) -> dict[str, str]:
    """What ``/interface/ethernet/monitor`` shows: link, and for an SFP cage the module's readings."""
    link = port.running and not port.disabled
    row = {"status": "link-ok" if link else "no-link", "auto-negotiation": "done" if link else "failed"}
    speed = {"100M": "100Mbps", "1G": "1Gbps", "10G": "10Gbps", "25G": "25Gbps"}[port.rate]
    if link:
        row |= {"rate": speed, "full-duplex": "true"}
    row |= {"tx-flow-control": "false", "rx-flow-control": "false"}
    if port.kind == "ether":
        row |= {"supported": _COPPER_ADV, "advertising": _COPPER_ADV}
        if link:
            row["link-partner-advertising"] = _COPPER_ADV if port.rate == "1G" else "10M-baseT-half,10M-baseT-full,100M-baseT-half,100M-baseT-full"
        return row
    row |= {"supported": _SFP_ADV[port.rate], "advertising": _SFP_ADV[port.rate]}
    if port.optics == "absent":
        row["sfp-module-present"] = "false"
        return row
    vendor, part, wavelength, reach, tx_range, bias_range, prefix = rng.choice(MODULES[port.rate])
    rx = {"healthy": rng.uniform(-12.0, -5.0), "weak": rng.uniform(-27.0, -22.0), "rx-loss": -40.0}.get(port.optics, -7.0)
    row |= {"sfp-module-present": "true", "sfp-rx-loss": "true" if port.optics == "rx-loss" else "false",
            "sfp-tx-fault": "false", "sfp-type": "SFP/SFP+/SFP28/SFP56", "sfp-connector-type": "LC"}
    if reach:
        row["sfp-link-length-sm"] = reach
    row |= {"sfp-vendor-name": vendor, "sfp-vendor-part-number": part, "sfp-vendor-revision": rng.choice(("A", "1.0", "02")),
            "sfp-vendor-serial": f"{prefix}{rng.randrange(10**9, 10**10)}",
            "sfp-manufacturing-date": f"{rng.randrange(19, 25):02d}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
            "sfp-wavelength": wavelength, "sfp-temperature": str(rng.randrange(28, 56)),
            "sfp-supply-voltage": f"{rng.uniform(3.2, 3.34):.3f}", "sfp-tx-bias-current": str(rng.randrange(*bias_range)),
            "sfp-tx-power": f"{rng.uniform(*tx_range):.3f}", "sfp-rx-power": f"{rx:.3f}", "eeprom-checksum": "good"}
    return row


def _addresses(router: SimRouter, plan: _Plan, ports: list[_Port], ppp: list[tuple[dict[str, str], tuple[int, int]]]) -> None:
    uplink = next(p for p in ports if p.role == "uplink").name
    rows = [
        {".id": "*1", "address": f"{plan.uplink_ip}/30", "network": plan.uplink_net, "interface": uplink,
         "actual-interface": uplink, "invalid": "false", "dynamic": "false", "disabled": "false", "comment": "UPLINK"},
        {".id": "*2", "address": f"{plan.lan}.1/24", "network": f"{plan.lan}.0", "interface": "bridge-lan",
         "actual-interface": "bridge-lan", "invalid": "false", "dynamic": "false", "disabled": "false", "comment": "LAN clientes"},
    ]
    for i, (row, _) in enumerate(ppp):
        iface = f"<pppoe-{row['name']}>"
        rows.append({".id": f"*{0xF00000 + i:X}", "address": f"{plan.pool}.1/32", "network": row["address"],
                     "interface": iface, "actual-interface": iface, "invalid": "false", "dynamic": "true", "disabled": "false"})
    router.addresses = rows
    router.client_networks = [f"{plan.lan}.0/24", f"{plan.pool}.0/24", f"{plan.uplink_net}/30"]


def _client_tables(router: SimRouter, plan: _Plan, clients: list[_Client], package: str | None, rng: random.Random) -> None:
    """Leases, ARP, bridge hosts and the radio's registrations: one client, the same IP and MAC in each."""
    leases, arp, hosts, registrations = [], [], [], []
    for i, c in enumerate(clients):
        client_id = "1:" + c.mac.lower()
        lease = {".id": f"*{0x40 + i:X}", "address": c.address, "mac-address": c.mac, "client-id": client_id,
                 "address-lists": "", "server": "dhcp-lan", "dhcp-option": "", "status": "bound" if c.bound else "waiting"}
        if c.bound:
            lease |= {"expires-after": f"{rng.randrange(1, 59)}m{rng.randrange(60)}s", "last-seen": f"{c.seen_s}s",
                      "active-address": c.address, "active-mac-address": c.mac, "active-client-id": client_id,
                      "active-server": "dhcp-lan"}
            if c.host:
                lease["host-name"] = c.host
        else:
            lease["last-seen"] = "never" if rng.random() < 0.5 else duration(c.seen_s)
        lease |= {"radius": "false", "dynamic": "false" if c.static else "true", "blocked": "false", "disabled": "false"}
        if c.comment:
            lease["comment"] = c.comment
        leases.append(lease)
        if c.bound:
            arp.append({"address": c.address, "mac-address": c.mac, "interface": "bridge-lan", "published": "false",
                        "invalid": "false", "DHCP": "true", "dynamic": "true", "complete": "true", "disabled": "false",
                        "status": rng.choice(("reachable", "reachable", "reachable", "stale", "stale", "delay"))})
            hosts.append({"mac-address": c.mac, "on-interface": c.port, "interface": c.port, "bridge": "bridge-lan",
                          "age": f"{rng.randrange(0, 300)}s", "local": "false", "external": "false", "invalid": "false",
                          "dynamic": "true", "disabled": "false"})
        if c.bound and c.wireless and package:
            registrations.append(_registration(package, c, router.name, rng))
    for k in range(rng.randrange(0, 3)):  # static ARP for devices on fixed addresses, one never answering
        mac = plan.client_mac(2048 + k, ("24:A4:3C", "F0:9F:C2"))
        arp.append({"address": f"{plan.lan}.{2 + k}", "mac-address": mac, "interface": "bridge-lan", "published": "false",
                    "invalid": "false", "DHCP": "false", "dynamic": "false", "complete": "true", "disabled": "false",
                    "status": "permanent", "comment": rng.choice(_SECTORS)})
    if rng.random() < 0.4:
        arp.append({"address": f"{plan.lan}.{250 - rng.randrange(5)}", "interface": "bridge-lan", "published": "false",
                    "invalid": "false", "DHCP": "false", "dynamic": "true", "complete": "false", "disabled": "false",
                    "status": "failed"})
    uplink = router.addresses[0]["interface"]
    arp.append({"address": plan.gateway_ip, "mac-address": plan.client_mac(4095, _CPE_OUIS[:2]), "interface": uplink,
                "published": "false", "invalid": "false", "DHCP": "false", "dynamic": "true", "complete": "true",
                "disabled": "false", "status": "reachable"})
    bridge = next(i for i in router.interfaces if i["name"] == "bridge-lan")
    hosts.append({"mac-address": bridge["mac-address"], "on-interface": "bridge-lan", "interface": "bridge-lan",
                  "bridge": "bridge-lan", "local": "true", "external": "false", "invalid": "false", "dynamic": "false",
                  "disabled": "false"})
    for i, row in enumerate(arp):
        arp[i] = {".id": f"*{i + 1:X}", **row}
    for i, row in enumerate(hosts):
        hosts[i] = {".id": f"*{i + 1:X}", **row}
    for i, row in enumerate(registrations):
        registrations[i] = {".id": f"*{0x100 + i:X}", **row}
    router.leases, router.arp, router.bridge_hosts, router.registrations = leases, arp, hosts, registrations


def _registration(package: str, c: _Client, router_name: str, rng: random.Random) -> dict[str, str]:
    tx_p, rx_p = rng.randrange(1000, 900000), rng.randrange(1000, 400000)
    packets, traffic = f"{tx_p},{rx_p}", f"{tx_p * rng.randrange(300, 1200)},{rx_p * rng.randrange(80, 300)}"
    uptime = duration(rng.randrange(30, 3 * 86400))
    if package == "wireless":
        signal = rng.randrange(-82, -45)
        return {"interface": "wlan1", "mac-address": c.mac, "ap": "false", "wds": "false", "bridge": "false",
                "rx-rate": rng.choice(("72.2Mbps-20MHz/1S/SGI", "65Mbps-20MHz/1S", "144.4Mbps-20MHz/2S/SGI")),
                "tx-rate": rng.choice(("72.2Mbps-20MHz/1S/SGI", "130Mbps-20MHz/2S", "144.4Mbps-20MHz/2S/SGI")),
                "packets": packets, "bytes": traffic, "uptime": uptime, "last-activity": f"{rng.randrange(0, 990)}ms",
                "signal-strength": f"{signal}@1Mbps", "signal-to-noise": str(signal + 96 + rng.randrange(0, 8)),
                "tx-ccq": str(rng.randrange(55, 100)), "last-ip": c.address, "authentication-type": "wpa2-psk",
                "encryption": "aes-ccm", "group-encryption": "aes-ccm"}
    return {"interface": "wifi1", "ssid": f"Clientes-{router_name}", "mac-address": c.mac, "authorized": "true",
            "uptime": uptime, "last-activity": f"{rng.randrange(0, 990)}ms", "signal": str(rng.randrange(-84, -40)),
            "auth-type": "wpa2-psk", "band": "2ghz-ax", "tx-rate": str(rng.choice((86_000_000, 143_400_000, 286_800_000))),
            "rx-rate": str(rng.choice((65_000_000, 103_200_000, 229_400_000))), "packets": packets, "bytes": traffic,
            "tx-bits-per-second": str(rng.randrange(10_000, 20_000_000)), "rx-bits-per-second": str(rng.randrange(5_000, 3_000_000))}


def _history(router: SimRouter, ports: list[_Port], ppp: list[tuple[dict[str, str], tuple[int, int]]],
             clients: list[_Client], package: str | None, boot: datetime, rng: random.Random) -> None:
    """The memory log as the last two days (or since boot) left it: links, PPPoE, DHCP, logins, radios."""
    start = max(boot, SIM_NOW - timedelta(days=2))
    span = int((SIM_NOW - start).total_seconds())
    events: list[tuple[datetime, str, str]] = []

    def at_ago(seconds: int) -> datetime:
        return SIM_NOW - timedelta(seconds=seconds)

    def some_time() -> datetime:
        return at_ago(rng.randrange(1, span))

    speed = {"100M": "100M", "1G": "1G", "10G": "10G", "25G": "25G"}
    for port in ports:
        for _ in range(min(port.link_downs, 6)):
            down = some_time()
            events.append((down, "interface,info", f"{port.name} link down"))
            if port.running:
                events.append((down + timedelta(seconds=rng.randrange(2, 400)), "interface,info",
                               f"{port.name} link up (speed {speed[port.rate]}, full duplex)"))
    for row, _ in ppp:
        started = at_ago(_seconds(row["uptime"]))
        if started > start:
            iface = f"<pppoe-{row['name']}>"
            events += [(started, "pppoe,ppp,info", f"{iface}: authenticated"),
                       (started, "pppoe,ppp,info", f"{iface}: connected"),
                       (started, "pppoe,ppp,info,account", f"{row['name']} logged in, {row['address']}")]
            if rng.random() < 0.5:
                ended = started - timedelta(seconds=rng.randrange(5, 120))
                if ended > start:
                    events += [(ended, "pppoe,ppp,info", f"{iface}: terminating... - peer is not responding"),
                               (ended, "pppoe,ppp,info,account",
                                f"{row['name']} logged out, {rng.randrange(600, 90000)} {rng.randrange(10**6, 10**9)} "
                                f"{rng.randrange(10**7, 10**10)} {rng.randrange(10**4, 10**6)} {rng.randrange(10**4, 10**7)}"),
                               (ended, "pppoe,ppp,info", f"{iface}: disconnected")]
    for c in clients:
        host = f" {c.host}" if c.host else ""
        for _ in range(rng.randrange(1, 4) if c.bound else 0):
            events.append((some_time(), "dhcp,info", f"dhcp-lan assigned {c.address} for {c.mac}{host}"))
        if not c.bound and not c.static:
            events.append((some_time(), "dhcp,info", f"dhcp-lan deassigned {c.address} for {c.mac}{host}"))
        if c.wireless and package:
            radio = "wlan1" if package == "wireless" else "wifi1"
            sep = ":" if package == "wireless" else ""
            signal = rng.randrange(-82, -45)
            moment = some_time()
            events.append((moment, "wireless,info", f"{c.mac}@{radio}{sep} connected, signal strength {signal}"))
            if rng.random() < 0.4:
                reason = ("received disassoc: sending station leaving (8)" if package == "wireless" else "connection lost")
                events.append((moment - timedelta(seconds=rng.randrange(60, 3600)), "wireless,info",
                               f"{c.mac}@{radio}{sep} disconnected, {reason}, signal strength {signal - 9}"))
    for _ in range(rng.randrange(4, 30)):
        moment = some_time()
        user, source, via = rng.choice(((router.username, NOC_ADDRESS, "api"), ("admin", "10.1.2.15", "winbox"),
                                        ("soporte", "10.1.2.40", "winbox"), ("admin", "10.1.2.15", "ssh")))
        events += [(moment, "system,info,account", f"user {user} logged in from {source} via {via}"),
                   (moment + timedelta(seconds=rng.randrange(1, 900)), "system,info,account",
                    f"user {user} logged out from {source} via {via}")]
    for _ in range(rng.randrange(0, 4)):
        moment, attacker = some_time(), rng.choice(_ATTACKERS)
        for k in range(rng.randrange(3, 15)):
            events.append((moment + timedelta(seconds=3 * k), "system,error,critical",
                           f"login failure for user {rng.choice(('admin', 'root', 'user', 'support'))} from {attacker} via ssh"))
    events.sort(key=lambda e: e[0])
    number = 0x1A000 + rng.randrange(0, 0x8000)
    for moment, topics, message in events[-1000:]:
        router.log.append((moment.replace(microsecond=0), number, topics, message))
        number += 1

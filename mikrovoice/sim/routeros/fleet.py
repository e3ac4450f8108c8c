"""A seeded fleet of simulated routers: names, latencies, sites, and facts that hold across the fleet.

``make_fleet`` builds ``FleetProfile.count`` routers from one seed. Router names are ``A.B``
(``152.1`` and ``26.1`` first, as the seed's questions name them); the address plan keyed by
them gives every client IP and MAC to exactly one router, and one shared ``taken`` set keeps
every PPPoE user name unique in the fleet, so a fleet-wide search has exactly one true answer.
Sites group one to four routers each, as an ISP's towers and nodes do. Pure: no I/O, no Trio.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from mikrovoice.sim.routeros.data import make_router
from mikrovoice.sim.routeros.router import SimRouter

#: Tower and node names of a Colombian ISP. Router 152.1 is always at the first.
SITES = (
    "Torre Norte", "Torre Sur", "Torre Oriente", "Torre Occidente", "Nodo Centro", "Cerro La Cruz", "Cerro Guadalupe",
    "Cerro Monserrate", "Chapinero", "Usaquén", "Suba", "Bosa", "Kennedy", "Fontibón", "Engativá", "Teusaquillo",
    "Ciudad Bolívar", "San Cristóbal", "Usme", "Tunjuelito", "Barrios Unidos", "Puente Aranda", "Los Mártires",
    "Antonio Nariño", "Rafael Uribe", "La Candelaria", "Santa Fe", "Chía", "Cajicá", "Zipaquirá", "Sopó", "La Calera",
    "Tocancipá", "Gachancipá", "Cota", "Tenjo", "Tabio", "Funza", "Mosquera", "Madrid", "Facatativá", "Soacha",
    "Sibaté", "Fusagasugá", "Girardot", "Cerro El Majuy", "Nodo Salitre", "Torre El Dorado", "Nodo Américas",
    "Torre Tintal", "Nodo Patio Bonito", "Torre Niza", "Nodo Cedritos", "Torre Toberín", "Nodo Britalia",
    "Torre La Gaitana", "Nodo Lisboa", "Torre Galerías", "Nodo Restrepo", "Torre Venecia", "Nodo Modelia",
    "Torre Hayuelos", "Nodo Normandía", "Torre Quirigua", "Nodo Bachué", "Torre Unicentro",
)
#: How many distinct names ``router_names`` can make (A in 10..249, B in 1..15).
MAX_ROUTERS = 240 * 15


@dataclass(frozen=True)
class FleetProfile:
    """How many routers, and how slow. ``slow`` routers answer after ``slow_s`` seconds or more."""

    count: int = 12
    seed: int = 7
    fast_s: tuple[float, float] = (0.2, 2.0)
    slow: int = 3
    slow_s: tuple[float, float] = (8.0, 24.0)


def router_names(count: int, seed: int) -> list[str]:
    """``count`` distinct names ``A.B``; the first two are ``152.1`` and ``26.1``.

    The first 720 names (B in 1..3) are the same as they always were for a seed; larger fleets
    continue with B in 4..15.
    """
    if count > MAX_ROUTERS:
        raise ValueError(f"a simulated fleet has at most {MAX_ROUTERS} routers, asked for {count}")
    rng = random.Random(f"names-{seed}")
    names = ["152.1", "26.1"]
    seen = set(names)
    while len(names) < count:
        narrow = len(names) < 720
        candidate = f"{rng.randrange(10, 250)}.{rng.randrange(1, 4) if narrow else rng.randrange(4, 16)}"
        if candidate not in seen:
            seen.add(candidate)
            names.append(candidate)
    return names[:count]


def make_fleet(profile: FleetProfile, username: str = "admin", password: str = "") -> list[SimRouter]:
    rng = random.Random(profile.seed)
    names = router_names(profile.count, profile.seed)
    latencies = [round(rng.uniform(*profile.fast_s), 2) for _ in names]
    slow = min(profile.slow, max(0, len(names) - 1))
    if slow:
        # The slowest router is exactly slow_s[1], so a fleet's worst case is known in advance;
        # the seed's router 152.1 (index 0) is never slow: it is the "simple question".
        spread = [profile.slow_s[1]] + [round(rng.uniform(*profile.slow_s), 2) for _ in range(slow - 1)]
        for index, latency in zip(range(len(names) - 1, len(names) - 1 - slow, -1), spread, strict=False):
            latencies[index] = latency
    taken: set[str] = set()
    routers = [make_router(n, random.Random(f"{profile.seed}-{n}"), lat, username, password, taken=taken)
               for n, lat in zip(names, latencies, strict=True)]
    _assign_sites(routers, random.Random(f"sites-{profile.seed}"))
    return routers


def _assign_sites(routers: list[SimRouter], rng: random.Random) -> None:
    """One to four routers per site, in fleet order; the first site is Torre Norte."""
    sites = list(SITES[1:])
    rng.shuffle(sites)
    sites.insert(0, SITES[0])
    start = index = 0
    while start < len(routers):
        size = rng.randint(1, 4)
        rounds, place = divmod(index, len(sites))
        site = sites[place] + ("" if not rounds else " " + "I" * (rounds + 1))
        for router in routers[start:start + size]:
            router.site = site
        start, index = start + size, index + 1

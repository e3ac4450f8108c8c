"""Hypothesis strategies for scenarios, shaped by the operator's configuration.

``scenarios(settings)`` draws calls over the configured router inventory and timings: questions
about real routers (and unknown ones, and nonsense), interjections, how the caller's silent line
sounds, hang-ups at any moment, router latencies around the configured deadlines and router
faults, and model-service faults. Every choice lists its simplest option first and times are
tenths of a second, so Hypothesis shrinks a failure to a short, readable story: a healthy,
patient caller asking one thing, with only the events that matter left in.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import replace

from hypothesis import strategies as st

from mikrovoice.config import RouterConfig, Settings
from mikrovoice.sim.asterisk import Line
from mikrovoice.sim.realtime import ModelFaults
from mikrovoice.sim.routeros import FAULTS, SimRouter
from mikrovoice.simulation.scenario import (
    NONSENSE,
    UNREACHABLE,
    Ask,
    Backchannel,
    BargeIn,
    Digit,
    Interjections,
    RouterBehaviour,
    Scenario,
)
from mikrovoice.simulation.world import seeded_fleet as _seeded_fleet

BACKCHANNELS = ("ajá", "sí", "mmm", "ok")
#: What Asterisk forwards: the 16 digits, a-d from SIP INFO, X for a hook flash.
DTMF = "0123456789*#ABCDabcdX"
#: Ping targets besides the router's own clients: public resolvers (answer), TEST-NET-1 and the
#: ISP's dead network (never answer).
PING_TARGETS = ("8.8.8.8", "1.1.1.1", "192.0.2.1", "10.255.3.4")
#: Log topics a caller asks about ("" = the whole log).
LOG_TOPICS = ("la interfaz", "pppoe", "dhcp", "el sistema", "")
#: Addresses no simulated router has: TEST-NET-2 (leases and ARP are 172.16/12, 10.64/16, PPPoE 100.64/10)
#: and the documentation MAC range (RFC 7042).
NOBODY_IP = "198.51.100.{}"
NOBODY_MAC = "00:00:5E:00:53:{:02X}"
NOBODY_USER = "usuario.inexistente{}"


@functools.lru_cache(maxsize=64)
def _fleet_data(seed: int, routers: tuple[RouterConfig, ...]) -> Mapping[str, SimRouter]:
    return _seeded_fleet(seed, Settings(routers=routers))


def seeded_fleet(seed: int, settings: Settings) -> Mapping[str, SimRouter]:
    """The routers' seeded data, as the world will build them, to read only (cached)."""
    return _fleet_data(seed, settings.routers)


def tenths(low: float, high: float) -> st.SearchStrategy[float]:
    """Seconds with one decimal: shrink to round numbers, print as a person would say them."""
    return st.integers(round(low * 10), round(high * 10)).map(lambda n: n / 10)


def unknown_name(names: tuple[str, ...]) -> str:
    for candidate in ("999.9", "998.8", "997.7"):
        if candidate not in names:
            return candidate
    return "router-que-no-existe"


def _sites(settings: Settings) -> dict[str, tuple[str, ...]]:
    sites: dict[str, list[str]] = {}
    for router in settings.routers:
        if router.site.strip():
            sites.setdefault(router.site, []).append(router.name)
    return {site: tuple(names) for site, names in sites.items()}


def _pick(draw: st.DrawFn, items: list[str] | tuple[str, ...]) -> str:
    return items[draw(st.integers(0, len(items) - 1))]


@st.composite
def _routers_named(draw: st.DrawFn, names: tuple[str, ...], sites: Mapping[str, tuple[str, ...]],
                   many: bool) -> tuple[tuple[str, ...], str, str]:
    """(routers, naming, site): one router (or, with ``many``, up to three, or a site's), and how it is said."""
    naming = draw(st.sampled_from(("digits", "words", "site") if many and sites else ("digits", "words")))
    if naming == "site":
        site = draw(st.sampled_from(sorted(sites)))
        return sites[site], "site", site
    count = draw(st.integers(1, min(3, len(names)))) if many else 1
    routers = tuple(draw(st.lists(st.sampled_from(names), min_size=count, max_size=count, unique=True)))
    if naming == "words" and not all(_numeric(r) for r in routers):
        naming = "digits"
    return routers, naming, ""


def _numeric(name: str) -> bool:
    parts = name.split(".")
    return len(parts) > 1 and all(p.isdigit() and len(p) <= 3 for p in parts)


@st.composite
def _who_has(draw: st.DrawFn, fleet: Mapping[str, SimRouter], patience: float) -> Ask:
    """An IP or MAC of a bound lease, of a static ARP entry, of a PPPoE session (in no table the tool
    reads), or one nobody has."""
    kind = draw(st.sampled_from(("lease_ip", "lease_mac", "nobody_ip", "nobody_mac", "arp_ip", "ppp_ip")))
    names = list(fleet)
    if kind in ("lease_ip", "lease_mac"):
        owners = [n for n in names if any(lease.get("status") == "bound" for lease in fleet[n].leases)]
        if owners:
            owner = _pick(draw, owners)
            lease = fleet[owner].leases[draw(st.integers(0, len(fleet[owner].leases) - 1))]
            subject = lease["address"] if kind == "lease_ip" else lease["mac-address"]
            return Ask("who_has", patience_s=patience, subject=subject,
                       expected=f"a {lease.get('status', 'bound')} lease of {owner}")
    if kind == "arp_ip":
        owner = _pick(draw, names)
        row = _pick_row(draw, [r for r in fleet[owner].arp if r.get("DHCP") == "false" and "address" in r])
        if row is not None:
            return Ask("who_has", patience_s=patience, subject=row["address"], expected=f"an ARP entry of {owner}")
    if kind == "ppp_ip":
        owner = _pick(draw, names)
        row = _pick_row(draw, fleet[owner].ppp_active)
        if row is not None:
            return Ask("who_has", patience_s=patience, subject=row["address"],
                       expected=f"a PPPoE session of {owner}, in no lease or ARP table")
    n = draw(st.integers(1, 254))
    if kind == "nobody_mac":
        return Ask("who_has", patience_s=patience, subject=NOBODY_MAC.format(n), expected="nobody")
    return Ask("who_has", patience_s=patience, subject=NOBODY_IP.format(n), expected="nobody")


def _pick_row(draw: st.DrawFn, rows: list[dict[str, str]]) -> dict[str, str] | None:
    return rows[draw(st.integers(0, len(rows) - 1))] if rows else None


@st.composite
def _pppoe(draw: st.DrawFn, fleet: Mapping[str, SimRouter], patience: float) -> Ask:
    users = [(name, row["name"]) for name, router in fleet.items() for row in router.ppp_active]
    if users and draw(st.sampled_from((True, False))):
        owner, user = users[draw(st.integers(0, len(users) - 1))]
        return Ask("pppoe", patience_s=patience, subject=user, expected=f"connected to {owner}")
    taken = {user for _, user in users}
    n = draw(st.integers(1, 99))
    user = next(NOBODY_USER.format(k) for k in range(n, n + 10**4) if NOBODY_USER.format(k) not in taken)
    return Ask("pppoe", patience_s=patience, subject=user, expected="nobody")


@st.composite
def _optics(draw: st.DrawFn, names: tuple[str, ...], fleet: Mapping[str, SimRouter], patience: float) -> Ask:
    (router,), naming, _ = draw(_routers_named(names, {}, many=False))
    cages = [i["name"] for i in fleet[router].interfaces
             if i.get("type") == "ether" and i["name"].startswith(("sfp", "qsfp", "combo"))]
    port = draw(st.sampled_from(("", *cages)))
    return Ask("optics", (router,), patience_s=patience, naming=naming, subject=port)


@st.composite
def _ping(draw: st.DrawFn, names: tuple[str, ...], fleet: Mapping[str, SimRouter], patience: float) -> Ask:
    (router,), naming, _ = draw(_routers_named(names, {}, many=False))
    clients = [lease["address"] for lease in fleet[router].leases if lease.get("status") == "bound"]
    target = draw(st.sampled_from((*PING_TARGETS, *clients[:3])))
    count = draw(st.sampled_from((0, 0, 1, 3, 10)))  # 0: the caller says no count (the tool's default)
    expected = "one of its clients" if target in clients else "unreachable" if _dead(target) else "a public address"
    return Ask("ping", (router,), variant=count, patience_s=patience, naming=naming, subject=target, expected=expected)


def _dead(target: str) -> bool:
    ip = ipaddress.ip_address(target)
    return any(ip in ipaddress.ip_network(n) for n in ("192.0.2.0/24", "10.255.0.0/16"))


@st.composite
def _log(draw: st.DrawFn, names: tuple[str, ...], fleet: Mapping[str, SimRouter], patience: float) -> Ask:
    (router,), naming, _ = draw(_routers_named(names, {}, many=False))
    ports = [i["name"] for i in fleet[router].interfaces if i.get("type") == "ether"][:3]
    topic = draw(st.sampled_from((*LOG_TOPICS, *ports)))
    return Ask("log", (router,), patience_s=patience, naming=naming, subject=topic)


def asks(names: tuple[str, ...], settings: Settings, fleet: Mapping[str, SimRouter] | None = None
         ) -> st.SearchStrategy[Ask]:
    """The questions; ``fleet`` (the scenario's seeded routers) gives the who-has, PPPoE, optics,
    ping and log questions things that exist (and, sometimes, things that do not)."""
    fleet = fleet if fleet is not None else seeded_fleet(0, settings)
    sites = _sites(settings)
    patient = settings.query_timeout_s + settings.connect_timeout_s + 60.0
    patience = st.one_of(st.just(patient), tenths(3.0, settings.query_timeout_s))
    named = _routers_named(names, sites, many=False)
    several = _routers_named(names, sites, many=True)
    crowded = sorted(site for site, members in sites.items() if len(members) > 1)
    choices = [
        st.builds(lambda r, p: Ask("devices", r[0], patience_s=p, naming=r[1]), named, patience),
        st.builds(lambda p: Ask("sfp_all", patience_s=p), patience),
        st.builds(lambda r, p: Ask("sfp_some", r[0], patience_s=p, naming=r[1], site=r[2]), several, patience),
        st.builds(lambda p: Ask("unknown_router", (unknown_name(names),), patience_s=p), patience),
        st.builds(lambda v, p: Ask("nonsense", variant=v, patience_s=p), st.integers(0, len(NONSENSE) - 1), patience),
        st.builds(lambda r, p: Ask("health", r[0], patience_s=p, naming=r[1], site=r[2]), several, patience),
        st.builds(lambda p: Ask("health_all", patience_s=p), patience),
        patience.flatmap(lambda p: _who_has(fleet, p)),
        patience.flatmap(lambda p: _pppoe(fleet, p)),
        patience.flatmap(lambda p: _optics(names, fleet, p)),
        patience.flatmap(lambda p: _ping(names, fleet, p)),
        patience.flatmap(lambda p: _log(names, fleet, p)),
        st.builds(lambda site, p: Ask("list_routers", patience_s=p, site=site),
                  st.sampled_from(("", *sorted(sites))), patience),
    ]
    if crowded:
        choices.append(st.builds(lambda site, p: Ask("ambiguous_router", sites[site], patience_s=p, site=site),
                                 st.sampled_from(crowded), patience))
    return st.one_of(*choices)


def interjection(question_count: int) -> st.SearchStrategy[Interjections]:
    after = st.integers(0, max(0, question_count - 1))
    return st.one_of(
        st.builds(Backchannel, after, tenths(0.5, 30.0), st.sampled_from(BACKCHANNELS)),
        st.builds(BargeIn, after, tenths(0.2, 4.0)),
        st.builds(Digit, after, tenths(0.5, 30.0), st.sampled_from(DTMF)),
    )


def lines() -> st.SearchStrategy[Line]:
    """How Asterisk reaches the service; the plain AudioSocket() app most often (it shrinks to it)."""
    audiosocket = st.one_of(
        st.just(Line()),
        st.builds(lambda codec: Line(mode="dial", codec=codec),
                  st.sampled_from(("slin", "slin16", "slin24", "slin48", "slin44", "ulaw", "alaw"))),
    )
    websocket = st.builds(lambda control, codec: Line("websocket", control=control, codec=codec),
                          st.sampled_from(("plain-text", "json")), st.sampled_from(("slin", "slin16", "ulaw", "alaw")))
    return st.one_of(audiosocket, websocket)


def router_behaviour(name: str, settings: Settings) -> st.SearchStrategy[RouterBehaviour]:
    beyond = max(settings.router_timeout_s, settings.query_timeout_s) + 30.0
    latency = st.one_of(
        tenths(0.1, 3.0),  # most routers answer at once
        tenths(5.0, beyond),  # slow, around and past the deadlines
    )
    fault = st.one_of(st.none(), st.sampled_from((*FAULTS, UNREACHABLE)))
    return st.builds(RouterBehaviour, st.just(name), latency, fault)


def model_behaviour(horizon_s: float) -> st.SearchStrategy[ModelFaults]:
    at = tenths(0.0, horizon_s)
    return st.one_of(
        st.just(ModelFaults()),
        st.builds(lambda s: ModelFaults(handshake_status=s), st.sampled_from((401, 403, 404, 429, 500, 503))),
        st.just(ModelFaults(stall_handshake=True)),
        st.builds(lambda t: ModelFaults(drop_after_s=t), at),
        st.builds(lambda t: ModelFaults(silent_after_s=t), at),
        st.builds(lambda ks, echo: ModelFaults(refuse_creates=frozenset(ks), refusal_echoes_event_id=echo),
                  st.sets(st.integers(1, 8), min_size=1, max_size=3), st.booleans()),
        st.builds(lambda t: ModelFaults(spurious_error_after_s=t), at),
        st.builds(lambda kind, n: ModelFaults(drop_on=(kind, n)),
                  st.sampled_from(("response.done", "response.output_audio.delta", "response.create",
                                   "conversation.item.create", "input_audio_buffer.speech_stopped")),
                  st.integers(1, 4)),
        st.builds(lambda t: ModelFaults(deaf_pings_after_s=t), at),
        st.just(ModelFaults(refuse_every_session_update=True)),
        st.builds(lambda t, code: ModelFaults(errors_at=((t, code),)), at,
                  st.sampled_from(("rate_limit_exceeded", "server_error", "invalid_request_error",
                                   "conversation_already_has_active_response", "insufficient_quota",
                                   "some_future_error_code"))),
        st.builds(lambda t: ModelFaults(expire_after_s=t), at),
        st.just(ModelFaults(respond_after_output=True)),
    )


@st.composite
def scenarios(draw: st.DrawFn, settings: Settings) -> Scenario:
    names = tuple(r.name for r in settings.routers)
    if not names:
        raise ValueError("a simulation needs at least one [[router]] in the configuration")
    # The routers' data first: the questions name its addresses, users and ports.
    seed = draw(st.integers(0, 2**16))
    questions = tuple(draw(st.lists(asks(names, settings, seeded_fleet(seed, settings)), min_size=1, max_size=3)))
    interjections = tuple(draw(st.lists(interjection(len(questions)), max_size=3)))
    silence = draw(st.sampled_from(("noise", "no_frames", "silence")))
    horizon = settings.query_timeout_s + 30.0
    hangup = draw(st.one_of(st.none(), tenths(0.0, horizon)))
    uuid_bytes = draw(st.one_of(st.none(), st.integers(0, 18)))
    # Routers draw their behaviour only if some question can reach them; the rest stay healthy.
    reachable = _reachable(questions, names)
    routers = tuple(draw(router_behaviour(name, settings)) if name in reachable else RouterBehaviour(name)
                    for name in names)
    model = draw(model_behaviour(horizon))
    # 1: the first reconnect finds a healthy model; more than reconnect_attempts: it never comes back.
    fault_sessions = draw(st.integers(1, settings.reconnect_attempts + 2)) if model != ModelFaults() else 1
    line = draw(lines())
    if line.transport == "websocket":
        uuid_bytes = None  # no UUID message on chan_websocket
        if line.control == "json" and settings.auth.operators:  # the number Asterisk passes
            line = replace(line, caller_id=draw(caller_numbers(settings)))
    pins, pin_story = draw(pin_entries(settings))
    return Scenario(questions, interjections, silence, hangup, uuid_bytes, routers, model, seed,
                    model_fault_sessions=fault_sessions, line=line, pins=pins, pin_story=pin_story)


#: A number no operator has.
STRANGER = "3205550199"


def caller_numbers(settings: Settings) -> st.SearchStrategy[str]:
    """An operator's number, as a trunk may present it (with or without +57), or a stranger's."""
    numbers = [n for op in settings.auth.operators for n in op.numbers]
    if not numbers:
        return st.just(STRANGER)
    known = st.sampled_from(numbers).flatmap(lambda n: st.sampled_from(
        (n, n.lstrip("+"), n[-10:] if len(n) >= 10 else n)))
    return st.one_of(known, st.just(STRANGER))


@st.composite
def pin_entries(draw: st.DrawFn, settings: Settings) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What the caller types when asked for a PIN: a right one (an operator's) after 0..attempts
    wrong ones, only wrong ones, or nothing (the prompt times out). Nothing under an open line."""
    auth = settings.auth
    with_pin = [op for op in auth.operators if op.pin]
    if auth.require in ("open", "caller_id") or not with_pin:
        return (), ()
    taken = {op.pin for op in with_pin}
    wrong = st.text("0123456789", min_size=auth.pin_length, max_size=auth.pin_length).filter(lambda p: p not in taken)
    wrongs = draw(st.lists(wrong, max_size=auth.attempts))
    right = draw(st.one_of(st.none(), st.sampled_from(with_pin)))
    pins = tuple(wrongs) + ((right.pin,) if right is not None else ())
    story = tuple("a wrong PIN" for _ in wrongs) + ((f"{right.name}'s PIN",) if right is not None else ())
    return pins, story


#: Kinds whose tool asks every router of the inventory.
_FLEET_WIDE = ("sfp_all", "health_all", "who_has", "pppoe")


def _reachable(questions: tuple[Ask, ...], names: tuple[str, ...]) -> set[str]:
    reachable: set[str] = set()
    for ask in questions:
        if ask.kind in _FLEET_WIDE:
            return set(names)
        if ask.tool() is not None:
            reachable.update(ask.routers)
    return reachable

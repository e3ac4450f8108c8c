"""The read-only command allowlist: the only RouterOS requests mikrovoice can build.

A ``ReadCommand`` can only hold a request that ``check_allowed`` accepts: one of the commands of
``RULES`` (a ``print``, a ``monitor`` with ``once``, a ``ping`` with a bounded count), carrying
only the attributes and ``?key=value`` queries its rule names, with values of the right shape.
There is no rule for ``add``, ``set``, ``remove``, ``/system/reboot``, ``/ppp/secret`` (it holds
passwords) or any other write or secret, so RouterOS access is read-only by construction; the
client checks every sentence again right before the socket, ``/login`` and ``/cancel`` included.

Values come from the model (an interface name, an address, a PPPoE user): each is checked
against its shape here, and a value that is not printable latin-1 (a newline, a NUL, an emoji)
never reaches the wire. The constructors below raise ``ValueError`` for such input; the tools turn
that into a problem the model reads to the caller.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

from mikrovoice.routeros.protocol import ENCODING, Request

#: The longest ping mikrovoice sends: ``count`` packets, one per second.
MAX_PING_COUNT = 10
PING_INTERVAL_S = 1.0
#: Interface names as RouterOS allows them in practice (no spaces, no commas); dynamic ones are
#: written in angle brackets ("<pppoe-juan.perez>").
_IFACE = re.compile(r"<?[A-Za-z0-9][A-Za-z0-9._\-/+@:]{0,63}>?")
_PROPLIST = re.compile(r"[a-z0-9.\-]+(,[a-z0-9.\-]+)*", re.IGNORECASE)
_MAC = re.compile(r"([0-9A-F]{2}:){5}[0-9A-F]{2}")
#: A PPPoE user name: printable, no separator the API or a CSV could misread.
_PPP_NAME = re.compile(r"[A-Za-z0-9._\-@+]{1,64}")


class CommandNotAllowed(Exception):
    """A request outside the read-only allowlist was about to be built or sent."""


def _printable(value: str) -> bool:
    try:
        value.encode(ENCODING)
    except UnicodeEncodeError:
        return False
    return all(0x20 <= ord(c) != 0x7F and not 0x80 <= ord(c) < 0xA0 for c in value)


def is_interface_name(name: str) -> bool:
    """An interface name the allowlist lets us send (a router may hold names with spaces or commas)."""
    return bool(_IFACE.fullmatch(name))


def _names(value: str) -> bool:
    return all(_IFACE.fullmatch(n) for n in value.split(",")) and len(value) <= 1024


def _address(value: str) -> bool:
    if "%" in value:  # an IPv6 scope id names one of our interfaces, not a target
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _count(value: str) -> bool:
    return value.isdigit() and 1 <= int(value) <= MAX_PING_COUNT


def _flag(value: str) -> bool:
    return value in ("", "yes", "true")


def _any(value: str) -> bool:
    return True


_VALUE_CHECKS: dict[str, Callable[[str], bool]] = {
    ".proplist": lambda v: bool(_PROPLIST.fullmatch(v)),
    "interface": _names,
    "numbers": _names,
    "once": _flag,
    "address": _address,
    "active-address": _address,
    "mac-address": lambda v: bool(_MAC.fullmatch(v)),
    "active-mac-address": lambda v: bool(_MAC.fullmatch(v)),
    "caller-id": lambda v: bool(_MAC.fullmatch(v)),
    "count": _count,
    "status": lambda v: v in ("bound", "waiting", "offered"),
    "type": lambda v: bool(_IFACE.fullmatch(v)),
    "name": lambda v: bool(_PPP_NAME.fullmatch(v)) or bool(_IFACE.fullmatch(v)),
    "running": lambda v: v in ("true", "false"),
    "disabled": lambda v: v in ("true", "false"),
}


@dataclass(frozen=True)
class Rule:
    #: the cache family (``config.CACHE_TTL_DEFAULTS``); None: never cached
    family: str | None
    attributes: frozenset[str] = frozenset({".proplist"})
    #: attributes that must be present (``once`` makes a monitor end by itself)
    required: frozenset[str] = frozenset()
    #: keys allowed in ``?key=value`` query words (print only)
    query_keys: frozenset[str] = frozenset()


def _print(family: str, *query_keys: str) -> Rule:
    return Rule(family, query_keys=frozenset(query_keys))


#: Every command mikrovoice can send besides ``/login`` and ``/cancel``.
RULES: dict[str, Rule] = {
    "/system/identity/print": _print("identity"),
    "/system/resource/print": _print("resource"),
    "/system/health/print": _print("health"),
    "/interface/print": _print("interfaces", "type", "name", "running", "disabled"),
    "/interface/monitor-traffic": Rule("traffic", frozenset({".proplist", "interface", "once"}),
                                       frozenset({"interface", "once"})),
    "/interface/ethernet/monitor": Rule("optics", frozenset({".proplist", "numbers", "once"}),
                                        frozenset({"numbers", "once"})),
    "/ip/dhcp-server/lease/print": _print("leases", "status", "address", "mac-address", "active-address",
                                          "active-mac-address"),
    "/ip/arp/print": _print("arp", "address", "mac-address"),
    "/interface/bridge/host/print": _print("bridge_hosts", "mac-address"),
    "/interface/wireless/registration-table/print": _print("wireless", "mac-address"),
    "/interface/wifi/registration-table/print": _print("wireless", "mac-address"),
    "/ppp/active/print": _print("ppp", "name", "address", "caller-id"),
    "/log/print": _print("log"),
    "/ping": Rule(None, frozenset({"address", "count"}), frozenset({"address", "count"})),
}
#: The two session commands the client itself sends.
SESSION_COMMANDS = {"/login": frozenset({"name", "password"}), "/cancel": frozenset({"tag"})}


def check_allowed(request: Request) -> None:
    """Raise ``CommandNotAllowed`` unless ``request`` is a read the allowlist names, values included."""
    if request.command in SESSION_COMMANDS:
        extra = set(request.attributes) - SESSION_COMMANDS[request.command]
        if extra or request.queries:
            raise CommandNotAllowed(f"{request.command} may not carry {sorted(extra) or list(request.queries)}")
        if request.command == "/cancel" and not request.attributes.get("tag", "").isdigit():
            raise CommandNotAllowed("/cancel names one numeric tag of ours")
        return
    rule = RULES.get(request.command)
    if rule is None:
        raise CommandNotAllowed(f"{request.command} is not in mikrovoice's read-only allowlist")
    extra = set(request.attributes) - rule.attributes
    if extra:
        raise CommandNotAllowed(f"{request.command} may not carry {sorted(extra)}")
    missing = rule.required - set(request.attributes)
    if missing:
        raise CommandNotAllowed(f"{request.command} must carry {sorted(missing)}")
    for name, value in request.attributes.items():
        if not _printable(value) or not _VALUE_CHECKS.get(name, _any)(value):
            raise CommandNotAllowed(f"{request.command}: bad value for {name}")
    for word in request.queries:
        key, sep, value = word[1:].partition("=")
        if not word.startswith("?") or not sep or key not in rule.query_keys:
            raise CommandNotAllowed(f"{request.command}: query {word[:40]!r} is not allowed")
        if not _printable(value) or not _VALUE_CHECKS.get(key, _any)(value):
            raise CommandNotAllowed(f"{request.command}: bad value in query on {key}")
    if request.tag is not None and not request.tag.isdigit():
        raise CommandNotAllowed("tags are the client's own numbers")


@dataclass(frozen=True)
class ReadCommand:
    """A request the allowlist accepts; ``family`` names its cache TTL (None: never cached)."""

    request: Request

    def __post_init__(self) -> None:
        check_allowed(self.request)

    @property
    def family(self) -> str | None:
        return RULES[self.request.command].family

    @property
    def key(self) -> str:
        """What identifies the command's answer, for the cache and for coalescing."""
        r = self.request
        return "\x00".join([r.command, *sorted(f"{k}={v}" for k, v in r.attributes.items()), *r.queries])

    @property
    def takes_s(self) -> float:
        """How long the router needs by nature (a ping of N packets takes N seconds)."""
        if self.request.command == "/ping":
            return int(self.request.attributes["count"]) * PING_INTERVAL_S
        return 0.0


def _command(command: str, proplist: str | None, attributes: dict[str, str] | None = None,
             queries: tuple[str, ...] = ()) -> ReadCommand:
    attrs = dict(attributes or {})
    if proplist:
        attrs[".proplist"] = proplist
    try:
        return ReadCommand(Request(command, attrs, queries))
    except CommandNotAllowed as exc:
        raise ValueError(str(exc)) from exc


def identity() -> ReadCommand:
    return _command("/system/identity/print", "name")


def resource() -> ReadCommand:
    return _command("/system/resource/print",
                    "uptime,version,cpu-load,free-memory,total-memory,board-name,architecture-name,cpu-count")


def health() -> ReadCommand:
    """RouterOS 7: one row per sensor (``name=temperature value=45 type=C``); boards without sensors: none."""
    return _command("/system/health/print", "name,value,type")


def interfaces() -> ReadCommand:
    return _command("/interface/print", "name,type,running,disabled,comment,last-link-up-time,link-downs")


def monitor_traffic(interface_names: list[str]) -> ReadCommand:
    if not interface_names:
        raise ValueError("monitor-traffic needs at least one interface")
    return _command("/interface/monitor-traffic", "name,rx-bits-per-second,tx-bits-per-second,"
                    "rx-drops-per-second,tx-drops-per-second,rx-errors-per-second,tx-errors-per-second",
                    {"interface": ",".join(interface_names), "once": ""})


def ethernet_monitor(interface_names: list[str]) -> ReadCommand:
    """SFP optics and link state of ``interface_names`` (one row each)."""
    if not interface_names:
        raise ValueError("ethernet monitor needs at least one interface")
    return _command("/interface/ethernet/monitor",
                    "name,status,rate,sfp-module-present,sfp-rx-loss,sfp-tx-fault,sfp-temperature,"
                    "sfp-supply-voltage,sfp-tx-bias-current,sfp-tx-power,sfp-rx-power,sfp-vendor-name,"
                    "sfp-vendor-part-number,sfp-wavelength",
                    {"numbers": ",".join(interface_names), "once": ""})


_LEASE_PROPS = "address,mac-address,host-name,status,last-seen,expires-after,server,comment"


def bound_leases() -> ReadCommand:
    return _command("/ip/dhcp-server/lease/print", _LEASE_PROPS, queries=("?status=bound",))


def leases_for(*, address: str | None = None, mac: str | None = None) -> ReadCommand:
    if (address is None) == (mac is None):
        raise ValueError("leases_for takes an address or a MAC")
    query = f"?address={address}" if address is not None else f"?mac-address={mac}"
    return _command("/ip/dhcp-server/lease/print", _LEASE_PROPS, queries=(query,))


_ARP_PROPS = "address,mac-address,interface,status,dynamic,complete"


def arp(*, address: str | None = None, mac: str | None = None) -> ReadCommand:
    queries = ((f"?address={address}",) if address is not None else ()) + ((f"?mac-address={mac}",) if mac else ())
    return _command("/ip/arp/print", _ARP_PROPS, queries=queries)


def bridge_hosts(*, mac: str) -> ReadCommand:
    return _command("/interface/bridge/host/print", "mac-address,interface,bridge,on-interface,vid,dynamic,local",
                    queries=(f"?mac-address={mac}",))


_REG_PROPS = "interface,mac-address,signal-strength,signal,tx-rate,rx-rate,uptime,last-ip,ssid"


def wireless_registrations() -> ReadCommand:
    """The legacy ``wireless`` package's clients (absent on wifi-only RouterOS 7: a missing menu)."""
    return _command("/interface/wireless/registration-table/print", _REG_PROPS)


def wifi_registrations() -> ReadCommand:
    """The RouterOS 7.13+ ``wifi`` package's clients (absent on older or wireless-only routers)."""
    return _command("/interface/wifi/registration-table/print", _REG_PROPS)


_PPP_PROPS = "name,service,caller-id,address,uptime,session-id"


def ppp_active(*, name: str | None = None, address: str | None = None) -> ReadCommand:
    queries = ((f"?name={name}",) if name is not None else ()) + ((f"?address={address}",) if address else ())
    return _command("/ppp/active/print", _PPP_PROPS, queries=queries)


def log() -> ReadCommand:
    return _command("/log/print", ".id,time,topics,message")


def ping(address: str, count: int) -> ReadCommand:
    """``count`` packets to ``address`` (an IP literal), one per second: at most MAX_PING_COUNT."""
    if not 1 <= count <= MAX_PING_COUNT:
        raise ValueError(f"ping count must be 1..{MAX_PING_COUNT}")
    return _command("/ping", None, {"address": address, "count": str(count)})


def login(username: str, password: str) -> Request:
    """The post-6.43 login. A password that is not latin-1 is sent as its UTF-8 bytes (what RouterOS
    stores when it was typed in WebFig), never as an exception."""
    def wire(text: str) -> str:
        try:
            text.encode(ENCODING)
        except UnicodeEncodeError:
            return text.encode("utf-8").decode(ENCODING)
        return text

    request = Request("/login", {"name": wire(username), "password": wire(password)})
    check_allowed(request)
    return request


def cancel(tag: str) -> Request:
    request = Request("/cancel", {"tag": tag})
    check_allowed(request)
    return request

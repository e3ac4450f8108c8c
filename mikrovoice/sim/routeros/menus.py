"""What a RouterOS 7 router answers to one request of a logged-in API user: replies, or a feed.

``evaluate`` resolves the command the way RouterOS does (research/routeros.md 1.3-1.8): a path
component that does not exist is ``no such command or directory (X)`` then ``no such command
prefix``; a verb the menu lacks is ``no such command``; a write verb is ``not enough permissions
(9)`` (the API user has read, api and maybe test); an attribute the command does not take is
``unknown parameter X``. ``print`` applies ``.proplist``, the ``?`` query stack, ``count-only`` and
``!empty`` (pre-7.18: nothing). Monitors and ``/ping`` are ``Feed``s: batches the session sends on
its clock. Pure: no I/O, no waiting; the caller passes the Trio time of evaluation.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

from mikrovoice.routeros.protocol import Reply, Request
from mikrovoice.sim.routeros.router import SimRouter, rtt_text

#: Verbs that change the configuration; the simulated API user has no write policy.
WRITE_VERBS = frozenset({"add", "set", "remove", "enable", "disable", "unset", "edit", "reset-counters", "move",
                         "comment", "reboot", "shutdown"})
#: Attributes whose value RouterOS ignores: ``=once``, ``=once=``, ``=once=yes`` and ``=once=true`` are one flag.
FLAGS = frozenset({"once", "detail", "stats", "stats-detail", "without-paging", "count-only", "follow", "follow-only",
                   "terse", "brief", "value-list", "show-ids", "as-value"})
_PRINT = frozenset({".proplist", "detail", "stats", "stats-detail", "without-paging", "count-only", "follow",
                    "follow-only", "terse", "brief", "value-list", "show-ids", "as-value", "interval", "from", ".id"})
_MONITOR = frozenset({".proplist", "once", "duration", "interval", "without-paging", "append", "do",
                      "freeze-frame-interval"})
_PING = frozenset({".proplist", "address", "count", "interval", "size", "ttl", "src-address", "interface",
                   "routing-table", "vrf", "arp-ping", "do-not-fragment", "dscp"})

#: A batch of rows: (section number, Trio time) -> rows (none: send nothing this time).
Rows = Callable[[int, float], list[dict[str, str]]]


@dataclass
class Feed:
    """A command that answers in batches over time: batch k at ``first_s + k * period_s`` after the
    command's delay; ``!done`` after ``batches`` batches, or at ``ends_s``, or never (``/cancel``)."""

    rows: Rows
    first_s: float = 0.0
    period_s: float = 1.0
    batches: int | None = None
    ends_s: float | None = None


def trap(tag: str | None, message: str, category: str | None = None) -> list[Reply]:
    attributes = {"category": category, "message": message} if category else {"message": message}
    return [Reply("!trap", attributes, tag), Reply("!done", tag=tag)]


#: A number a router takes: ASCII digits only (``"²".isdigit()`` is true, and ``int("²")`` fails),
#: and short (``int()`` of 4300 digits or more raises).
_NUMBER = re.compile(r"[0-9]{1,9}")


def small_int(text: str) -> int | None:
    """``text`` as a non-negative integer of at most 9 ASCII digits, else None."""
    return int(text) if _NUMBER.fullmatch(text) else None


#: The shortest interval of a print or monitor feed the simulated router serves.
MIN_INTERVAL_S = 0.01


def parse_duration(text: str) -> float | None:
    """RouterOS time values in seconds: ``1``, ``0.5``, ``100ms``, ``1m30s``, ``00:00:01``; None if invalid."""
    text = text.strip()
    if re.fullmatch(r"[0-9]{1,9}(\.[0-9]{1,9})?", text):
        return float(text)
    clock = re.fullmatch(r"([0-9]{1,6}):([0-9][0-9]):([0-9][0-9](?:\.[0-9]{1,9})?)", text)
    if clock:
        return int(clock[1]) * 3600 + int(clock[2]) * 60 + float(clock[3])
    units = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}
    parts = re.findall(r"([0-9]{1,9}(?:\.[0-9]{1,9})?)(ms|us|w|d|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * units[u] for n, u in parts)


def evaluate(router: SimRouter, request: Request, at: float) -> list[Reply] | Feed:
    """The answer to ``request`` from a logged-in session (not ``/login``, ``/cancel``, ``/quit``)."""
    tag = request.tag
    menu, _, verb = request.command.rstrip("/").rpartition("/")
    missing = _missing(router, menu)
    if missing is not None:
        return [Reply("!trap", {"message": f"no such command or directory ({missing})"}, tag),
                Reply("!trap", {"message": "no such command prefix"}, tag), Reply("!done", tag=tag)]
    if verb in WRITE_VERBS and (menu in router.menus() or (menu, verb) in _SYSTEM_WRITES):
        return trap(tag, "not enough permissions (9)")
    command = _COMMANDS.get((menu, verb))
    if command is not None:
        params, handler = command
    elif verb in ("print", "getall") and menu in router.menus():
        params, handler = _PRINT, _print
    else:
        return trap(tag, "no such command")
    unknown = next((name for name in request.attributes if name not in params), None)
    if unknown is not None:
        return trap(tag, f"unknown parameter {unknown}")
    return handler(router, menu, request, at)


_SYSTEM_WRITES = {("/system", "reboot"), ("/system", "shutdown")}


def _missing(router: SimRouter, menu: str) -> str | None:
    """The first component of ``menu`` that is no menu or directory of this router, if any."""
    known = {""}
    for path in router.menus():
        parts = path.split("/")
        known |= {"/".join(parts[:i]) for i in range(2, len(parts) + 1)}
    parts = menu.split("/")
    for i in range(2, len(parts) + 1):
        if "/".join(parts[:i]) not in known:
            return parts[i - 1]
    return None


def project(row: dict[str, str], proplist: str | None) -> dict[str, str]:
    """``.proplist``: only the named properties, in the order named; absent ones stay absent."""
    wanted = [p for p in (proplist or "").split(",") if p]
    if not wanted:
        return dict(row)
    return {k: row[k] for k in wanted if k in row}


def query_passes(row: dict[str, str], queries: tuple[str, ...]) -> bool:
    """RouterOS's ``?`` stack language (manual, "Queries"): true unless a false remains."""
    stack: list[bool] = []
    for word in queries:
        if word.startswith("?#"):
            for op in word[2:]:
                if op == "!":
                    stack.append(not (stack.pop() if stack else True))
                elif op in "|&":
                    a = stack.pop() if stack else True
                    b = stack.pop() if stack else True
                    stack.append((a or b) if op == "|" else (a and b))
                elif op == ".":
                    stack.append(stack[-1] if stack else True)
                elif (depth := small_int(op)) is not None:
                    stack.append(stack[-1 - depth] if depth < len(stack) else True)
            continue
        body = word[1:]
        if body.startswith("-"):
            stack.append(body[1:] not in row)
        elif body[:1] in "<>=" and "=" in body[1:]:
            op, (key, value) = body[0], body[1:].split("=", 1)
            have = row.get(key)
            if op == "=":
                stack.append(have == value)
            else:
                try:
                    stack.append(have is not None and (int(have) < int(value) if op == "<" else int(have) > int(value)))
                except ValueError:
                    stack.append(False)
        elif "=" in body:
            key, value = body.split("=", 1)
            stack.append(row.get(key) == value)
        else:
            stack.append(body in row)
    return all(stack)


# --------------------------------------------------------------------------- print


def _selected(router: SimRouter, menu: str, request: Request, at: float) -> list[dict[str, str]]:
    rows = router.table(menu, at)
    if ".id" in request.attributes:
        rows = [r for r in rows if r.get(".id") == request.attributes[".id"]]
    if "from" in request.attributes:
        names = set(request.attributes["from"].split(","))
        rows = [r for r in rows if r.get("name") in names or r.get(".id") in names]
    return [r for r in rows if query_passes(r, request.queries)]


def _print(router: SimRouter, menu: str, request: Request, at: float) -> list[Reply] | Feed:
    tag, attributes = request.tag, request.attributes
    proplist = attributes.get(".proplist")
    if "follow" in attributes or "follow-only" in attributes:
        return _follow(router, menu, request)
    if "interval" in attributes:
        period = parse_duration(attributes["interval"])
        if period is None or period < MIN_INTERVAL_S:  # a feed of rows in a busy loop otherwise
            return trap(tag, "invalid value for argument interval")
        return Feed(lambda k, now: [{**project(r, proplist), ".section": str(k)} for r in _selected(router, menu, request, now)],
                    period_s=period)
    rows = _selected(router, menu, request, at)
    if "count-only" in attributes:
        return [Reply("!done", {"ret": str(len(rows))}, tag)]
    replies = [Reply("!re", project(r, proplist), tag) for r in rows]
    if not replies and not router.pre_7_18:
        replies = [Reply("!empty", tag=tag)]
    return replies + [Reply("!done", tag=tag)]


def _follow(router: SimRouter, menu: str, request: Request) -> Feed:
    """``follow``: the rows, then new ones as they come (only the log grows in a simulated router)."""
    proplist = request.attributes.get(".proplist")
    seen: set[str] = set()

    def rows(k: int, now: float) -> list[dict[str, str]]:
        current = _selected(router, menu, request, now)
        fresh = [r for r in current if r.get(".id") not in seen] if k else current
        seen.update(r.get(".id", "") for r in current)
        if k == 0 and "follow-only" in request.attributes:
            return []
        return [project(r, proplist) for r in fresh]

    return Feed(rows)


# --------------------------------------------------------------------------- monitors


def _resolve(router: SimRouter, items: list[str], pool: list[dict[str, str]], indexes: bool) -> list[str] | None:
    """Names, ``.id``s or (``indexes``) print-order numbers -> interface names; None if one is unknown."""
    by_id = {i[".id"]: i["name"] for i in pool}
    names = {i["name"] for i in pool}
    out = []
    for item in items:
        if item in names:
            out.append(item)
        elif item in by_id:
            out.append(by_id[item])
        elif indexes and (index := small_int(item)) is not None and index < len(pool):
            out.append(pool[index]["name"])
        else:
            return None
    return out


def _timing(request: Request) -> tuple[float, int | None, float | None] | str:
    """(period, batches, ends_s) of a monitor, or the name of the attribute with a bad value."""
    period = parse_duration(request.attributes.get("interval", "1s"))
    if period is None or period < MIN_INTERVAL_S:
        return "interval"
    if "once" in request.attributes:
        return period, 1, None
    if "duration" in request.attributes:
        ends = parse_duration(request.attributes["duration"])
        if ends is None:
            return "duration"
        return period, None, ends
    return period, None, None


def _monitor_traffic(router: SimRouter, menu: str, request: Request, at: float) -> list[Reply] | Feed:
    tag = request.tag
    items = [n for n in request.attributes.get("interface", "").split(",") if n]
    names = _resolve(router, items, [*router.interfaces, {".id": "aggregate", "name": "aggregate"}], indexes=False)
    if not items or names is None:
        return trap(tag, "input does not match any value of interface", "1")
    timing = _timing(request)
    if isinstance(timing, str):
        return trap(tag, f"invalid value for argument {timing}")
    period, batches, ends = timing
    proplist = request.attributes.get(".proplist")
    weak = {n for n, o in router.optics.items() if float(o.get("sfp-rx-power", "0")) < -20 and o.get("sfp-rx-loss") == "false"}

    def rows(k: int, now: float) -> list[dict[str, str]]:
        out = []
        for name in names:
            rx, tx = router.traffic_at(name, k)
            errors = str((k * 7 + len(name)) % 23 + 1) if name in weak else "0"
            row = {"name": name, "rx-packets-per-second": str(rx // 6240), "rx-bits-per-second": str(rx),
                   "fp-rx-packets-per-second": "0", "fp-rx-bits-per-second": "0", "rx-drops-per-second": "0",
                   "rx-errors-per-second": errors, "tx-packets-per-second": str(tx // 6560),
                   "tx-bits-per-second": str(tx), "fp-tx-packets-per-second": "0", "fp-tx-bits-per-second": "0",
                   "tx-drops-per-second": "0", "tx-queue-drops-per-second": "0", "tx-errors-per-second": "0"}
            out.append({**project(row, proplist), ".section": str(k)})
        return out

    return Feed(rows, period_s=period, batches=batches, ends_s=ends)


def _ethernet_monitor(router: SimRouter, menu: str, request: Request, at: float) -> list[Reply] | Feed:
    tag = request.tag
    ports = [i for i in router.interfaces if i["type"] == "ether"]
    items = [n for n in request.attributes.get("numbers", "").split(",") if n]
    if not items:
        return trap(tag, "missing value(s) of argument(s) numbers")
    names = _resolve(router, items, ports, indexes=True)
    if names is None:
        return trap(tag, "no such item")
    timing = _timing(request)
    if isinstance(timing, str):
        return trap(tag, f"invalid value for argument {timing}")
    period, batches, ends = timing
    proplist = request.attributes.get(".proplist")
    return Feed(lambda k, now: [{**project({"name": n, **router.optics_at(n, k)}, proplist), ".section": str(k)}
                                for n in names], period_s=period, batches=batches, ends_s=ends)


# --------------------------------------------------------------------------- ping


def _ping(router: SimRouter, menu: str, request: Request, at: float) -> list[Reply] | Feed:
    """One row per echo, each ``interval`` after the previous; the counters are cumulative."""
    tag, attributes = request.tag, request.attributes
    if not router.can_test:
        return trap(tag, "not enough permissions (9)")
    if "address" not in attributes:
        return trap(tag, "missing value(s) of argument(s) address")
    address = attributes["address"]
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return trap(tag, "invalid value for argument address")
    count = attributes.get("count")
    if count is not None and not (small_int(count) or 0) >= 1:
        return trap(tag, "invalid value for argument count")
    interval = parse_duration(attributes.get("interval", "1s"))
    if interval is None or not 0.01 <= interval <= 5:
        return trap(tag, "value of interval out of range (10ms..5s)")
    size = attributes.get("size", "56")
    if small_int(size) is None:
        return trap(tag, "invalid value for argument size")
    proplist = attributes.get(".proplist")
    rtts: list[int] = []
    ttl = str(router.ping_ttl(address))

    def rows(k: int, now: float) -> list[dict[str, str]]:
        rtt = router.ping_rtt_us(address, k)
        row = {"seq": str(k), "host": address}
        if rtt is None:
            row["status"] = "timeout"
        else:
            rtts.append(rtt)
            row |= {"size": size, "ttl": ttl, "time": rtt_text(rtt)}
        sent = k + 1
        row |= {"sent": str(sent), "received": str(len(rtts)), "packet-loss": str(100 * (sent - len(rtts)) // sent)}
        if rtts:
            row |= {"min-rtt": rtt_text(min(rtts)), "avg-rtt": rtt_text(sum(rtts) // len(rtts)),
                    "max-rtt": rtt_text(max(rtts))}
        return [project(row, proplist)]

    return Feed(rows, first_s=interval, period_s=interval, batches=int(count) if count else None)


#: (menu, verb) -> (the attributes it takes, handler); ``print``/``getall`` of every menu come on top.
_COMMANDS: dict[tuple[str, str], tuple[frozenset[str], Callable[[SimRouter, str, Request, float], list[Reply] | Feed]]] = {
    ("/interface", "monitor-traffic"): (_MONITOR | {"interface"}, _monitor_traffic),
    ("/interface/ethernet", "monitor"): (_MONITOR | {"numbers"}, _ethernet_monitor),
    ("", "ping"): (_PING, _ping),
}

"""A RouterOS fleet simulator: one RouterOS API listener per router, over real TCP.

Faithful to research/routeros.md: ``/login`` (post-6.43 plain; wrong password ->
``invalid user name or password (6)``), ``print`` with ``.proplist`` and the ``?`` query stack,
``!empty`` for no rows (7.18+), ``.tag`` echo, ``/interface/monitor-traffic`` with ``=once=``
(or streaming until ``/cancel``), ``/cancel``, ``/quit`` -> ``!fatal``, missing menus trapped as
RouterOS does, writes refused for the read-only API user. Each router answers after its own
latency, and its data is seeded and realistic (section 3 of the notes). A router can also be
faulty (``SimRouter.fault``): hang without answering, drop the connection mid-query, or refuse every
login. Every request sentence it receives is written to its ``journal``.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

import trio

from mikrovoice.config import RouterConfig
from mikrovoice.logs import event
from mikrovoice.routeros.protocol import Reply, Request, RouterOSProtocolError, SentenceReader

log = logging.getLogger("mikrovoice.sim.routers")

_MENUS = {"/system/identity", "/system/resource", "/interface", "/ip/dhcp-server/lease", "/ip/arp"}
_WRITE_VERBS = {"add", "set", "remove", "enable", "disable", "unset", "edit", "reset-counters", "move"}
_HOSTS = ("android", "iphone", "laptop", "tv-samsung", "desktop", "camara", "impresora", "ap-cliente", "onu", "xbox")


#: What a faulty router does: accept TCP and never say a word; log in and then never answer a
#: query; log in and then close the connection when a query arrives; refuse every login.
FAULTS = ("hangs", "hangs_after_login", "drops_mid_query", "refuses_login")


@dataclass
class SimRouter:
    name: str
    identity: str
    latency_s: float  # how long a data query (monitor-traffic, lease print) takes to answer
    interfaces: list[dict[str, str]]
    leases: list[dict[str, str]]
    traffic: dict[str, tuple[int, int]]  # interface -> (rx bps, tx bps)
    username: str = "admin"
    password: str = field(default="", repr=False)
    #: None (healthy) or one of FAULTS.
    fault: str | None = None
    #: (time received, words) of every request sentence, for read-only checks.
    journal: list[tuple[float, list[str]]] = field(default_factory=list, repr=False)

    @property
    def sfp_count(self) -> int:
        return sum(1 for i in self.interfaces if i["name"].startswith("sfp"))


def make_router(name: str, rng: random.Random, latency_s: float, username: str = "admin", password: str = "") -> SimRouter:
    site = name.replace(".", "-")
    interfaces: list[dict[str, str]] = []
    traffic: dict[str, tuple[int, int]] = {}
    names = [f"ether{i}" for i in range(1, 6)] + [f"sfp-sfpplus{i}" for i in range(1, rng.choice((2, 2, 4)) + 1)]
    for index, iface in enumerate(names):
        running = iface.startswith("sfp") or rng.random() < 0.7
        interfaces.append(
            {
                ".id": f"*{index + 1:X}",
                "name": iface,
                "default-name": iface,
                "type": "ether",
                "mtu": "1500",
                "actual-mtu": "1500",
                "mac-address": ":".join(f"{rng.randrange(256):02X}" for _ in range(6)),
                "rx-byte": str(rng.randrange(10**9, 10**13)),
                "tx-byte": str(rng.randrange(10**9, 10**13)),
                "running": "true" if running else "false",
                "disabled": "false",
            }
        )
        if iface.startswith("sfp"):
            traffic[iface] = (rng.randrange(50, 4000) * 10**6 + rng.randrange(10**6), rng.randrange(20, 1500) * 10**6)
        else:
            traffic[iface] = (rng.randrange(0, 300) * 10**6, rng.randrange(0, 100) * 10**6)
    interfaces.append({".id": f"*{len(names) + 1:X}", "name": "bridge1", "type": "bridge", "mtu": "auto",
                       "actual-mtu": "1500", "running": "true", "disabled": "false"})
    leases = []
    for i in range(rng.randrange(8, 48)):
        bound = rng.random() < 0.85
        lease = {
            ".id": f"*{0x40 + i:X}",
            "address": f"192.168.{rng.randrange(64, 128)}.{10 + i}",
            "mac-address": ":".join(f"{rng.randrange(256):02X}" for _ in range(6)),
            "server": "dhcp-lan",
            "status": "bound" if bound else "waiting",
            "last-seen": f"{rng.randrange(1, 59)}s" if bound else "never",
            "dynamic": "true",
            "disabled": "false",
        }
        if bound:
            lease["host-name"] = f"{rng.choice(_HOSTS)}-{rng.randrange(16**4):04x}"
            lease["expires-after"] = f"{rng.randrange(1, 59)}m{rng.randrange(60)}s"
        leases.append(lease)
    return SimRouter(name, f"R-{site}", latency_s, interfaces, leases, traffic, username, password)


@dataclass(frozen=True)
class FleetProfile:
    """How many routers, and how slow. ``slow`` routers answer after ``slow_s`` seconds or more."""

    count: int = 12
    seed: int = 7
    fast_s: tuple[float, float] = (0.2, 2.0)
    slow: int = 3
    slow_s: tuple[float, float] = (8.0, 24.0)


def router_names(count: int, seed: int) -> list[str]:
    rng = random.Random(f"names-{seed}")
    names = ["152.1", "26.1"]
    while len(names) < count:
        candidate = f"{rng.randrange(10, 250)}.{rng.randrange(1, 4)}"
        if candidate not in names:
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
    return [make_router(n, random.Random(f"{profile.seed}-{n}"), lat, username, password) for n, lat in zip(names, latencies, strict=True)]


# --------------------------------------------------------------------------- query language


def _query_passes(row: dict[str, str], queries: tuple[str, ...]) -> bool:
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
                elif op.isdigit():
                    stack.append(stack[-1 - int(op)] if int(op) < len(stack) else True)
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


def _project(row: dict[str, str], proplist: str | None) -> dict[str, str]:
    if proplist is None:
        return dict(row)
    wanted = [p for p in proplist.split(",") if p]
    return {k: row[k] for k in wanted if k in row}


# --------------------------------------------------------------------------- one API session


class _Session:
    """One API connection. The connection going away (client closed it, or the router's own fault
    dropped it) ends the session quietly; it is never an error of the simulator."""

    def __init__(self, router: SimRouter, stream: trio.abc.Stream) -> None:
        self.router = router
        self.stream = stream
        self.logged_in = False
        self.send_lock = trio.Lock()
        self.running: dict[str, trio.CancelScope] = {}
        self.scope = trio.CancelScope()

    async def reply(self, replies: list[Reply]) -> None:
        async with self.send_lock:
            try:
                await self.stream.send_all(b"".join(r.encode() for r in replies))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.scope.cancel()

    async def serve(self) -> None:
        with self.scope:
            await self._serve()

    async def _serve(self) -> None:
        reader = SentenceReader()
        async with trio.open_nursery() as nursery:
            while True:
                try:
                    data = await self.stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:
                    break
                try:
                    reader.receive_data(data)
                    sentences = reader.sentences()
                except RouterOSProtocolError as exc:
                    event(log, "router.protocol_error", level=logging.WARNING, router=self.router.name, error=str(exc))
                    break
                for words in sentences:
                    self.router.journal.append((trio.current_time(), words))
                    if self.router.fault == "hangs":
                        continue  # reads everything, answers nothing
                    try:
                        request = Request.parse(words)
                    except RouterOSProtocolError as exc:
                        await self.reply([Reply("!trap", {"message": str(exc)}), Reply("!done")])
                        continue
                    if request.command == "/quit":
                        await self.reply([Reply("!fatal", {"message": "session terminated on request"})])
                        nursery.cancel_scope.cancel()
                        return
                    if request.command == "/cancel":
                        await self.cancel(request)
                        continue
                    nursery.start_soon(self.execute, request)
            nursery.cancel_scope.cancel()

    async def cancel(self, request: Request) -> None:
        target = request.attributes.get("tag")
        for tag, scope in list(self.running.items()):
            if target is None or tag == target:
                scope.cancel()
        await self.reply([Reply("!done", tag=request.tag)])

    async def execute(self, request: Request) -> None:
        tag = request.tag
        if request.command != "/login" and self.router.fault in ("hangs_after_login", "drops_mid_query"):
            if self.router.fault == "drops_mid_query":
                await trio.sleep(min(self.router.latency_s, 1.0))
                await self.stream.aclose()  # the TCP connection goes away, no !fatal
                self.scope.cancel()
            else:
                await trio.sleep_forever()
            return
        with trio.CancelScope() as scope:
            if tag is not None:
                self.running[tag] = scope
            try:
                await trio.sleep(self.delay(request))
                await self.reply(self.answer(request))
                return
            finally:
                self.running.pop(tag or "", None)
        await self.reply([Reply("!trap", {"category": "2", "message": "interrupted"}, tag), Reply("!done", tag=tag)])

    def delay(self, request: Request) -> float:
        """Data queries take the router's latency; login and small prints one round trip."""
        heavy = request.command in ("/interface/monitor-traffic", "/ip/dhcp-server/lease/print", "/ip/arp/print")
        return self.router.latency_s if heavy else min(0.05, self.router.latency_s)

    def answer(self, request: Request) -> list[Reply]:
        tag = request.tag
        if request.command == "/login":
            ok = (request.attributes.get("name") == self.router.username
                  and request.attributes.get("password") == self.router.password
                  and self.router.fault != "refuses_login")
            event(log, "router.login", router=self.router.name, user=request.attributes.get("name", ""), ok=ok)
            if not ok:
                return [Reply("!trap", {"message": "invalid user name or password (6)"}, tag), Reply("!done", tag=tag)]
            self.logged_in = True
            return [Reply("!done", tag=tag)]
        if not self.logged_in:
            return [Reply("!trap", {"message": "not logged in"}, tag), Reply("!done", tag=tag)]
        menu, _, verb = request.command.rpartition("/")
        if menu not in _MENUS:
            return [Reply("!trap", {"category": "0", "message": f"no such command or directory ({menu.rsplit('/', 1)[-1]})"}, tag),
                    Reply("!trap", {"message": "no such command prefix"}, tag), Reply("!done", tag=tag)]
        if verb in _WRITE_VERBS:
            return [Reply("!trap", {"message": "not enough permissions (9)"}, tag), Reply("!done", tag=tag)]
        if verb in ("print", "getall"):
            return self.print(menu, request)
        if request.command == "/interface/monitor-traffic":
            return self.monitor(request)
        return [Reply("!trap", {"message": "no such command"}, tag), Reply("!done", tag=tag)]

    def table(self, menu: str) -> list[dict[str, str]]:
        if menu == "/system/identity":
            return [{"name": self.router.identity}]
        if menu == "/system/resource":
            return [{"uptime": "3w2d4h12m40s", "version": "7.20.5 (stable)", "cpu-load": "7", "board-name": "CCR2004-16G-2S+",
                     "free-memory": "705699840", "total-memory": "4294967296", "architecture-name": "arm64"}]
        if menu == "/interface":
            return self.router.interfaces
        if menu == "/ip/dhcp-server/lease":
            return self.router.leases
        return [{".id": f"*{i + 1:X}", "address": lease["address"], "mac-address": lease["mac-address"],
                 "interface": "bridge1", "DHCP": "true", "dynamic": "true", "complete": "true", "status": "reachable"}
                for i, lease in enumerate(self.router.leases) if lease["status"] == "bound"]

    def print(self, menu: str, request: Request) -> list[Reply]:
        tag = request.tag
        rows = [r for r in self.table(menu) if _query_passes(r, request.queries)]
        if "count-only" in request.attributes:
            return [Reply("!done", {"ret": str(len(rows))}, tag)]
        proplist = request.attributes.get(".proplist")
        replies = [Reply("!re", _project(r, proplist), tag) for r in rows]
        return (replies or [Reply("!empty", tag=tag)]) + [Reply("!done", tag=tag)]

    def monitor(self, request: Request) -> list[Reply]:
        tag = request.tag
        wanted = [n for n in request.attributes.get("interface", "").split(",") if n]
        known = {i["name"] for i in self.router.interfaces}
        bad = [n for n in wanted if n not in known and n != "aggregate"]
        if not wanted or bad:
            value = bad[0] if bad else ""
            return [Reply("!trap", {"category": "1", "message": f"input does not match any value of interface ({value})"}, tag),
                    Reply("!done", tag=tag)]
        if "once" not in request.attributes:
            # A real router streams one batch per second until /cancel; this simulator answers
            # the first batch and then behaves as if cancelled at once, which is what a client
            # without /cancel support would see on a timeout. Clients must send =once=.
            return [Reply("!trap", {"category": "2", "message": "interrupted"}, tag), Reply("!done", tag=tag)]
        rows = []
        for name in wanted:
            rx, tx = self.router.traffic.get(name, (0, 0))
            row = {"name": name, "rx-packets-per-second": str(rx // 8000), "rx-bits-per-second": str(rx),
                   "fp-rx-packets-per-second": "0", "fp-rx-bits-per-second": "0", "rx-drops-per-second": "0",
                   "rx-errors-per-second": "0", "tx-packets-per-second": str(tx // 8000), "tx-bits-per-second": str(tx),
                   "fp-tx-packets-per-second": "0", "fp-tx-bits-per-second": "0", "tx-drops-per-second": "0",
                   "tx-queue-drops-per-second": "0", "tx-errors-per-second": "0", ".section": "0"}
            rows.append(Reply("!re", _project(row, request.attributes.get(".proplist")), tag))
        return rows + [Reply("!done", tag=tag)]


async def serve_router_stream(router: SimRouter, stream: trio.abc.Stream) -> None:
    """One API connection (TCP or in-memory) to ``router``, until the client or the router ends it."""
    try:
        await _Session(router, stream).serve()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def serve_router(router: SimRouter, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    async def handler(stream: trio.SocketStream) -> None:
        await serve_router_stream(router, stream)

    listeners = await trio.open_tcp_listeners(port, host=host)
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handler, listeners)


async def serve_fleet(
    routers: list[SimRouter], host: str = "127.0.0.1", base_port: int = 0,
    *, task_status: trio.TaskStatus[list[RouterConfig]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Router i listens on ``base_port + i`` (any free ports when ``base_port`` is 0).

    ``task_status.started`` hands back the ``RouterConfig`` list that reaches the fleet.
    """
    async with trio.open_nursery() as nursery:
        configs = []
        for i, router in enumerate(routers):
            port = await nursery.start(serve_router, router, host, base_port + i if base_port else 0)
            configs.append(RouterConfig(router.name, host, port, router.username, router.password,
                                        aliases=(router.identity,)))
        task_status.started(configs)

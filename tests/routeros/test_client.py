"""RouterPool and RouterConnection against the router simulator, on the virtual clock (in-memory
streams), over TLS (trustme certificates) and once over real loopback TCP."""

from __future__ import annotations

import errno
import logging
import os
import random
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
import trustme

from mikrovoice.config import RouterConfig
from mikrovoice.routeros import commands
from mikrovoice.routeros.client import RouterPool
from mikrovoice.routeros.connection import BUSY_DETAIL, LEGACY_LOGIN_DETAIL
from mikrovoice.routeros.errors import Reason, RouterFailure
from mikrovoice.routeros.protocol import Reply, Request, RouterOSProtocolError, SentenceReader
from mikrovoice.sim.routeros import SimRouter, make_router, serve_fleet, serve_router_stream

HEAVY = commands.monitor_traffic(["ether1"])  # the simulator answers it after the router's latency


class InFlight:
    """Commands sent and not yet answered (``!done`` read), as seen on the client's side of the wire."""

    def __init__(self, parent: InFlight | None = None) -> None:
        self.parent = parent
        self.now = 0
        self.peak = 0

    def change(self, delta: int) -> None:
        self.now += delta
        self.peak = max(self.peak, self.now)
        if self.parent is not None:
            self.parent.change(delta)


class CountingStream(trio.abc.Stream):
    """The client's end of a connection, parsing what passes to count commands in flight. ``stall``
    makes every later send block (a router whose TCP window is shut)."""

    def __init__(self, inner: trio.abc.Stream, in_flight: InFlight) -> None:
        self.inner = inner
        self.in_flight = in_flight
        self.sent = SentenceReader()
        self.received = SentenceReader()
        self.tags: set[str] = set()
        self.stall = False
        self.closed = False
        self.counting = True  # off under TLS: the bytes here are ciphertext

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.stall:
            await trio.sleep_forever()
        try:
            self.sent.receive_data(bytes(data))
            for words in self.sent.sentences() if self.counting else ():
                request = Request.parse(words)
                if request.command not in ("/login", "/cancel") and request.tag is not None:
                    self.tags.add(request.tag)
                    self.in_flight.change(+1)
        except RouterOSProtocolError:
            self.counting = False
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.inner.receive_some(max_bytes)
        try:
            self.received.receive_data(data)
            for words in self.received.sentences() if self.counting else ():
                reply = Reply.parse(words)
                if reply.kind == "!done" and reply.tag in self.tags:
                    self.tags.discard(reply.tag)
                    self.in_flight.change(-1)
        except RouterOSProtocolError:
            self.counting = False
        return data

    async def aclose(self) -> None:
        self.closed = True
        await self.inner.aclose()


class SimNet:
    """A Dialer onto simulated routers by host name: each dial serves a fresh in-memory connection
    with ``serve_router_stream`` in the test's nursery. ``server_side`` may wrap the router's end (TLS)."""

    def __init__(self, nursery: trio.Nursery, routers: dict[str, SimRouter],
                 server_side: Callable[[trio.abc.Stream], trio.abc.Stream] | None = None) -> None:
        self.nursery = nursery
        self.routers = routers
        self.server_side = server_side
        self.dials: list[str] = []
        self.streams: list[CountingStream] = []
        self.servers: list[trio.CancelScope] = []
        self.in_flight = InFlight()
        self.per_host: dict[str, InFlight] = {}

    async def dial(self, host: str, port: int) -> trio.abc.Stream:
        self.dials.append(host)
        client, server = trio.testing.memory_stream_pair()
        scope = trio.CancelScope()
        self.servers.append(scope)
        router = self.routers[host]
        server_stream = self.server_side(server) if self.server_side else server

        async def serve() -> None:
            with scope:
                await serve_router_stream(router, server_stream)

        self.nursery.start_soon(serve)
        counter = self.per_host.setdefault(host, InFlight(self.in_flight))
        stream = CountingStream(client, counter)
        self.streams.append(stream)
        return stream


def config(name: str, password: str = "pw", **kwargs: Any) -> RouterConfig:
    return RouterConfig(name, host=name, password=password, **kwargs)


def sim_router(name: str, latency_s: float = 1.0, password: str = "pw") -> SimRouter:
    return make_router(name, random.Random(name), latency_s, password=password)


def logins(router: SimRouter) -> list[float]:
    return [t for t, words in router.journal if words[0] == "/login"]


def sent(router: SimRouter, command: str) -> list[tuple[float, list[str]]]:
    return [(t, words) for t, words in router.journal if words[0] == command]


async def failure_of(call: Awaitable[object]) -> RouterFailure:
    with pytest.raises(RouterFailure) as caught:
        await call
    return caught.value


# --------------------------------------------------------------------------- one shared connection


async def test_fifty_commands_from_ten_calls_share_one_connection(autojump_clock: trio.testing.MockClock) -> None:
    router = sim_router("r1", latency_s=1.0)
    results: list[list[dict[str, str]]] = []
    async with trio.open_nursery() as servers:
        net = SimNet(servers, {"r1": router})
        pool = RouterPool([config("r1")], dial=net.dial, per_router=4)

        async def one_call() -> None:  # a phone call asks five things at once
            async with trio.open_nursery() as call:
                for _ in range(5):
                    call.start_soon(lambda: ask())

        async def ask() -> None:
            results.append(await pool.run("r1", HEAVY))

        with trio.fail_after(60):  # a reader that never hands over would deadlock the waiters
            async with trio.open_nursery() as calls:
                for _ in range(10):
                    calls.start_soon(one_call)
        await pool.aclose()
        servers.cancel_scope.cancel()
    assert net.dials == ["r1"] and len(logins(router)) == 1
    assert (pool.stats.connects, pool.stats.logins, pool.stats.commands) == (1, 1, 50)
    assert net.in_flight.peak == 4
    assert len(results) == 50 and all(rows[0]["name"] == "ether1" for rows in results)
    # four at a time: the router receives batches of four, one latency apart
    times = [t for t, _ in sent(router, "/interface/monitor-traffic")]
    first = times[0]
    assert times == [first + (i // 4) * 1.0 for i in range(50)]
    assert {words[-1] for _, words in sent(router, "/interface/monitor-traffic")} == {f".tag={n}" for n in range(2, 52)}
    assert pool.stats.open_connections == 0


async def test_per_router_and_total_limits_hold_together(autojump_clock: trio.testing.MockClock) -> None:
    routers = {name: sim_router(name, latency_s=1.0) for name in ("r1", "r2")}
    async with trio.open_nursery() as servers:
        net = SimNet(servers, routers)
        pool = RouterPool([config("r1"), config("r2")], dial=net.dial, per_router=2, total=3)
        with trio.fail_after(60):
            async with trio.open_nursery() as calls:
                for i in range(20):
                    calls.start_soon(pool.run, "r1" if i % 2 else "r2", HEAVY)
        servers.cancel_scope.cancel()
    assert net.in_flight.peak == 3
    assert net.per_host["r1"].peak == 2 and net.per_host["r2"].peak == 2
    assert pool.stats.commands == 20 and pool.stats.connects == 2


async def test_concurrent_first_uses_share_one_dial(autojump_clock: trio.testing.MockClock) -> None:
    router = sim_router("r1")
    async with trio.open_nursery() as servers:
        net = SimNet(servers, {"r1": router})
        pool = RouterPool([config("r1")], dial=net.dial)
        with trio.fail_after(60):
            async with trio.open_nursery() as calls:
                for _ in range(4):
                    calls.start_soon(pool.run, "r1", commands.identity())
        servers.cancel_scope.cancel()
    assert net.dials == ["r1"] and len(logins(router)) == 1 and pool.stats.connects == 1


# --------------------------------------------------------------------------- connect and login


async def test_a_black_hole_fails_with_connect_timeout_at_exactly_the_connect_timeout(
        autojump_clock: trio.testing.MockClock) -> None:
    router = sim_router("r1")
    router.fault = "hangs"
    failures: list[tuple[Reason, str, float]] = []
    async with trio.open_nursery() as servers:
        net = SimNet(servers, {"r1": router})
        pool = RouterPool([config("r1")], dial=net.dial, connect_timeout_s=5.0)
        start = trio.current_time()

        async def ask() -> None:
            failure = await failure_of(pool.run("r1", commands.identity()))
            failures.append((failure.reason, failure.detail, trio.current_time() - start))

        async with trio.open_nursery() as calls:
            for _ in range(3):
                calls.start_soon(ask)
        servers.cancel_scope.cancel()
    detail = "r1:8728: no TCP connection, TLS handshake and login within 5 s"
    assert failures == [(Reason.CONNECT_TIMEOUT, detail, 5.0)] * 3
    assert net.dials == ["r1"] and net.streams[0].closed
    assert [words[0] for _, words in router.journal] == ["/login"]
    assert (pool.stats.connects, pool.stats.logins, pool.stats.open_connections) == (1, 0, 0)


async def test_the_connect_timeout_is_not_the_command_deadline(autojump_clock: trio.testing.MockClock) -> None:
    router = sim_router("r1", latency_s=8.0)
    async with trio.open_nursery() as servers:
        pool = RouterPool([config("r1")], dial=SimNet(servers, {"r1": router}).dial, connect_timeout_s=5.0)
        start = trio.current_time()
        rows = await pool.run("r1", HEAVY)  # 0.05 s login, then 8 s of monitor: past the connect timeout
        assert rows[0]["name"] == "ether1"
        assert trio.current_time() - start == pytest.approx(8.05)
        servers.cancel_scope.cancel()


async def test_a_refused_login_is_login_and_never_shows_the_password(
        autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    router = sim_router("r1", password="s3cr3t-pw")
    router.fault = "refuses_login"
    async with trio.open_nursery() as servers:
        pool = RouterPool([config("r1", password="s3cr3t-pw")], dial=SimNet(servers, {"r1": router}).dial)
        failure = await failure_of(pool.run("r1", commands.identity()))
        servers.cancel_scope.cancel()
    assert (failure.reason, failure.detail) == (Reason.LOGIN, "login refused: invalid user name or password (6)")
    assert (pool.stats.connects, pool.stats.logins) == (1, 0)
    assert "s3cr3t" not in caplog.text and "s3cr3t" not in repr(failure) and "s3cr3t" not in repr(pool.__dict__)
    assert "router.connect_failed router=r1 reason=login" in caplog.text


async def test_a_password_outside_latin1_logs_in(autojump_clock: trio.testing.MockClock) -> None:
    # the simulator compares the latin-1-decoded wire words: the router stores the UTF-8 bytes
    router = sim_router("r1", password="contraseña€".encode().decode("latin-1"))
    async with trio.open_nursery() as servers:
        pool = RouterPool([config("r1", password="contraseña€")], dial=SimNet(servers, {"r1": router}).dial)
        assert await pool.run("r1", commands.identity()) == [{"name": "R-r1"}]
        servers.cancel_scope.cancel()
    assert pool.stats.logins == 1


async def test_a_dial_that_fails_is_unreachable(autojump_clock: trio.testing.MockClock) -> None:
    async def refused(host: str, port: int) -> trio.abc.Stream:
        raise ConnectionRefusedError(errno.ECONNREFUSED, os.strerror(errno.ECONNREFUSED))

    pool = RouterPool([RouterConfig("r1", "10.9.8.7", 8728)], dial=refused)
    failure = await failure_of(pool.run("r1", commands.identity()))
    assert (failure.reason, failure.detail) == (Reason.UNREACHABLE, "cannot connect to 10.9.8.7:8728: Connection refused")
    assert pool.stats.connects == 0


async def scripted_router(stream: trio.abc.Stream, answers: list[bytes | None]) -> None:
    """A peer that answers each request sentence with the next of ``answers``; ``None`` closes the
    connection (at once, or right after the answer before it)."""
    reader = SentenceReader()
    while answers:
        data = await stream.receive_some(65536)
        if not data:
            return
        reader.receive_data(data)
        for _ in reader.sentences():
            answer = answers.pop(0)
            if answer is not None:
                await stream.send_all(answer)
            if answer is None or (answers and answers[0] is None):
                await stream.aclose()
                return
    await trio.sleep_forever()


def scripted_dial(nursery: trio.Nursery, *scripts: list[bytes | None]) -> Callable[[str, int], Awaitable[trio.abc.Stream]]:
    queue = list(scripts)

    async def dial(host: str, port: int) -> trio.abc.Stream:
        client, server = trio.testing.memory_stream_pair()
        nursery.start_soon(scripted_router, server, queue.pop(0))
        return client

    return dial


LOGGED_IN = Reply("!done", tag="1").encode()


@pytest.mark.parametrize(("script", "reason", "detail"), [
    ([None], Reason.BUSY, BUSY_DETAIL),
    ([Reply("!done", {"ret": "93b438ec9b80057c06dd9fe67d56aa9a"}, "1").encode()], Reason.LOGIN, LEGACY_LOGIN_DETAIL),
    ([b"\xf8\x01\x02"], Reason.PROTOCOL, "control byte 0xf8 where a word length was expected"),
    ([LOGGED_IN, b"\xff garbage"], Reason.PROTOCOL, "control byte 0xff where a word length was expected"),
    ([LOGGED_IN, b"\x03!re\x0b=name=R-152", None], Reason.DROPPED, "connection closed by the router in the middle of a reply"),
    ([LOGGED_IN, Reply("!trap", {"message": "not enough permissions (9)"}, "2").encode()
      + Reply("!done", tag="2").encode()], Reason.PERMISSION, "not enough permissions (9)"),
])
async def test_what_a_peer_says_becomes_a_reason(
        autojump_clock: trio.testing.MockClock, script: list[bytes | None], reason: Reason, detail: str) -> None:
    async with trio.open_nursery() as nursery:
        pool = RouterPool([config("r1")], dial=scripted_dial(nursery, script))
        failure = await failure_of(pool.run("r1", commands.identity()))
        nursery.cancel_scope.cancel()
    assert (failure.reason, failure.detail) == (reason, detail)


# --------------------------------------------------------------------------- drops, stale, idle


async def test_a_drop_mid_query_is_dropped_and_the_next_command_reconnects(autojump_clock: trio.testing.MockClock) -> None:
    router = sim_router("r1", latency_s=0.5)
    router.fault = "drops_mid_query"
    async with trio.open_nursery() as servers:
        net = SimNet(servers, {"r1": router})
        pool = RouterPool([config("r1")], dial=net.dial)
        start = trio.current_time()
        failure = await failure_of(pool.run("r1", HEAVY))
        assert (failure.reason, failure.detail) == (Reason.DROPPED, "connection closed by the router")
        assert trio.current_time() - start == pytest.approx(0.05 + 0.5)  # login, then the drop
        router.fault = None
        assert (await pool.run("r1", HEAVY))[0]["name"] == "ether1"
        servers.cancel_scope.cancel()
    s = pool.stats
    assert (s.connects, s.reconnects, s.connections_dropped, s.commands, s.open_connections) == (2, 1, 1, 2, 1)
    assert net.dials == ["r1", "r1"] and net.streams[0].closed


async def test_a_connection_found_dead_is_retried_once_on_a_fresh_one(autojump_clock: trio.testing.MockClock) -> None:
    router = sim_router("r1")
    async with trio.open_nursery() as servers:
        net = SimNet(servers, {"r1": router})
        pool = RouterPool([config("r1")], dial=net.dial)
        await pool.run("r1", commands.identity())
        net.servers[0].cancel()  # the router rebooted while the connection sat idle
        await trio.sleep(10)
        assert await pool.run("r1", commands.identity()) == [{"name": "R-r1"}]
        servers.cancel_scope.cancel()
    s = pool.stats
    assert (s.connects, s.reconnects, s.connections_dropped, s.commands) == (2, 1, 1, 3)
    assert len(logins(router)) == 2


async def test_the_stale_retry_happens_once_only(autojump_clock: trio.testing.MockClock) -> None:
    router = sim_router("r1", latency_s=0.5)
    async with trio.open_nursery() as servers:
        net = SimNet(servers, {"r1": router})
        pool = RouterPool([config("r1")], dial=net.dial)
        await pool.run("r1", HEAVY)
        router.fault = "drops_mid_query"  # every connection now dies silently under a query
        failure = await failure_of(pool.run("r1", HEAVY))
        servers.cancel_scope.cancel()
    assert failure.reason is Reason.DROPPED
    assert len(sent(router, "/interface/monitor-traffic")) == 3  # the first, the stale one, one retry
    assert (pool.stats.connects, pool.stats.reconnects, pool.stats.connections_dropped) == (2, 1, 2)


async def test_an_idle_connection_is_closed_after_the_idle_timeout_and_reopened(
        autojump_clock: trio.testing.MockClock) -> None:
    router = sim_router("r1")
    async with trio.open_nursery() as servers:
        net = SimNet(servers, {"r1": router})
        pool = RouterPool([config("r1")], dial=net.dial, idle_timeout_s=60.0)
        await pool.run("r1", commands.identity())
        await trio.sleep(59.999)
        await pool.run("r1", commands.identity())  # not idle long enough: reused
        assert net.dials == ["r1"]
        await trio.sleep(60.0)
        await pool.run("r1", commands.identity())
        servers.cancel_scope.cancel()
    assert net.dials == ["r1", "r1"] and net.streams[0].closed and not net.streams[1].closed
    assert (pool.stats.connects, pool.stats.reconnects, pool.stats.connections_dropped) == (2, 0, 0)
    first, second = logins(router)
    assert second - first == pytest.approx(0.05 + 59.999 + 0.05 + 60.0 + 0.05)


async def test_the_sweep_closes_an_idle_connection_of_another_router(autojump_clock: trio.testing.MockClock) -> None:
    routers = {"r1": sim_router("r1"), "r2": sim_router("r2")}
    async with trio.open_nursery() as servers:
        net = SimNet(servers, routers)
        pool = RouterPool([config("r1"), config("r2")], dial=net.dial, idle_timeout_s=30.0)
        await pool.run("r1", commands.identity())
        await trio.sleep(30.0)
        assert pool.stats.open_connections == 1
        await pool.run("r2", commands.identity())
        servers.cancel_scope.cancel()
    assert net.streams[0].closed and pool.stats.open_connections == 1


async def test_tidy_closes_an_idle_connection_on_time_without_another_question(
        autojump_clock: trio.testing.MockClock) -> None:
    router = sim_router("r1")
    async with trio.open_nursery() as servers:
        net = SimNet(servers, {"r1": router})
        pool = RouterPool([config("r1")], dial=net.dial, idle_timeout_s=60.0)
        servers.start_soon(pool.tidy)
        await pool.run("r1", commands.identity())
        await trio.sleep(59.0)
        assert pool.stats.open_connections == 1 and not net.streams[0].closed
        await trio.sleep(16.0)  # tidy looks every idle_timeout_s / 4
        assert pool.stats.open_connections == 0 and net.streams[0].closed
        await pool.aclose()
        servers.cancel_scope.cancel()


async def test_closing_the_pool_fails_what_is_in_flight_and_refuses_more(autojump_clock: trio.testing.MockClock) -> None:
    router = sim_router("r1", latency_s=5.0)
    async with trio.open_nursery() as servers:
        net = SimNet(servers, {"r1": router})
        pool = RouterPool([config("r1")], dial=net.dial)
        failures: list[RouterFailure] = []

        async def ask() -> None:
            failures.append(await failure_of(pool.run("r1", HEAVY)))

        with trio.fail_after(60):
            async with trio.open_nursery() as calls:
                calls.start_soon(ask)
                await trio.sleep(1.0)
                await pool.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await pool.run("r1", commands.identity())
        servers.cancel_scope.cancel()
    assert [(f.reason, f.detail) for f in failures] == [(Reason.DROPPED, "the router pool is closed")]
    assert net.streams[0].closed and pool.stats.open_connections == 0 and pool.stats.connections_dropped == 0
    with pytest.raises(ValueError, match="no router named 'r9' in the inventory"):
        await RouterPool([config("r1")]).run("r9", commands.identity())


# --------------------------------------------------------------------------- cancellation


async def test_a_cancelled_command_is_cancelled_on_the_router_and_the_connection_keeps_serving(
        autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mikrovoice.routeros")
    router = sim_router("r1", latency_s=3.0)
    async with trio.open_nursery() as servers:
        net = SimNet(servers, {"r1": router})
        pool = RouterPool([config("r1")], dial=net.dial)
        await pool.run("r1", commands.identity())  # tag 2
        other: list[list[dict[str, str]]] = []

        async def gives_up() -> None:
            with trio.move_on_after(1.0) as deadline:
                await pool.run("r1", HEAVY)  # tag 3
            assert deadline.cancelled_caught

        with trio.fail_after(60):
            async with trio.open_nursery() as calls:
                calls.start_soon(gives_up)
                await trio.sleep(0.1)
                start = trio.current_time()

                async def waits() -> None:
                    other.append(await pool.run("r1", HEAVY))  # tag 4

                calls.start_soon(waits)
        assert trio.current_time() - start == pytest.approx(3.0)
        assert other[0][0]["name"] == "ether1"
        assert await pool.run("r1", commands.identity()) == [{"name": "R-r1"}]  # tag 6
        servers.cancel_scope.cancel()
    cancels = sent(router, "/cancel")
    assert [words for _, words in cancels] == [["/cancel", "=tag=3", ".tag=5"]]
    assert cancels[0][0] == pytest.approx(sent(router, "/interface/monitor-traffic")[0][0] + 1.0)
    assert (pool.stats.connects, pool.stats.cancels_sent, pool.stats.connections_dropped) == (1, 1, 0)
    assert [words[-1] for _, words in sent(router, "/system/identity/print")] == [".tag=2", ".tag=6"]
    assert [r.getMessage() for r in caplog.records if r.name == "mikrovoice.routeros"] == [
        "router.connected router=r1 host=r1 port=8728 tls=false", "router.cancel router=r1 tag=3 cancel_tag=5"]


async def test_a_cancel_that_cannot_be_sent_drops_the_connection(autojump_clock: trio.testing.MockClock) -> None:
    router = sim_router("r1", latency_s=5.0)
    async with trio.open_nursery() as servers:
        net = SimNet(servers, {"r1": router})
        pool = RouterPool([config("r1")], dial=net.dial)
        await pool.run("r1", commands.identity())
        outcomes: dict[str, object] = {}

        async def gives_up() -> None:
            with trio.move_on_after(1.0):
                await pool.run("r1", HEAVY)
            outcomes["gave_up_at"] = trio.current_time() - start

        async def waits() -> None:
            outcomes["other"] = await failure_of(pool.run("r1", HEAVY))
            outcomes["other_at"] = trio.current_time() - start

        start = trio.current_time()
        with trio.fail_after(60):
            async with trio.open_nursery() as calls:
                calls.start_soon(gives_up)
                calls.start_soon(waits)
                await trio.sleep(0.5)
                net.streams[0].stall = True  # the router's receive window is shut: nothing more leaves
        assert await pool.run("r1", commands.identity()) == [{"name": "R-r1"}]
        servers.cancel_scope.cancel()
    other = outcomes["other"]
    assert isinstance(other, RouterFailure)
    assert (other.reason, other.detail) == (Reason.DROPPED, "a sentence could not be sent within 1 s")
    assert outcomes["gave_up_at"] == pytest.approx(2.0) and outcomes["other_at"] == pytest.approx(2.0)
    s = pool.stats
    assert (s.cancels_sent, s.connections_dropped, s.reconnects, s.connects) == (0, 1, 1, 2)
    assert sent(router, "/cancel") == []


async def test_a_caller_cancelled_while_another_reads_loses_nothing(autojump_clock: trio.testing.MockClock) -> None:
    # the reader of the moment gives up; the waiter behind it must take over reading
    router = sim_router("r1", latency_s=2.0)
    async with trio.open_nursery() as servers:
        pool = RouterPool([config("r1")], dial=SimNet(servers, {"r1": router}).dial)
        await pool.run("r1", commands.identity())
        got: list[float] = []
        start = trio.current_time()

        async def reader_gives_up() -> None:
            with trio.move_on_after(0.5):
                await pool.run("r1", HEAVY)

        async def waiter() -> None:
            await trio.sleep(0.1)
            await pool.run("r1", HEAVY)
            got.append(trio.current_time() - start)

        with trio.fail_after(60):  # nobody taking over the reading would be a deadlock
            async with trio.open_nursery() as calls:
                calls.start_soon(reader_gives_up)
                calls.start_soon(waiter)
        servers.cancel_scope.cancel()
    assert got == [pytest.approx(2.1)]


# --------------------------------------------------------------------------- TLS (API-SSL)


def tls_server(ca: trustme.CA, hostname: str) -> Callable[[trio.abc.Stream], trio.abc.Stream]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(hostname).configure_cert(context)
    return lambda stream: trio.SSLStream(stream, context, server_side=True)


@pytest.fixture
def ca_file(tmp_path: Path) -> tuple[trustme.CA, str]:
    ca = trustme.CA()
    path = tmp_path / "noc-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, str(path)


async def tls_identity(server_side: Callable[[trio.abc.Stream], trio.abc.Stream],
                       **tls: Any) -> list[dict[str, str]] | RouterFailure:
    router = sim_router("r1.noc.test")
    async with trio.open_nursery() as servers:
        net = SimNet(servers, {"r1.noc.test": router}, server_side=server_side)
        pool = RouterPool([config("r1.noc.test", tls=True, port=8729, **tls)], dial=net.dial)
        try:
            return await pool.run("r1.noc.test", commands.identity())
        except RouterFailure as failure:
            return failure
        finally:
            servers.cancel_scope.cancel()


async def test_tls_with_a_trusted_certificate(autojump_clock: trio.testing.MockClock,
                                              ca_file: tuple[trustme.CA, str]) -> None:
    ca, path = ca_file
    assert await tls_identity(tls_server(ca, "r1.noc.test"), ca_file=path) == [{"name": "R-r1-noc-test"}]


@pytest.mark.parametrize(("issuer", "name", "why"), [
    ("another CA", "r1.noc.test", "certificate verify failed: unable to get local issuer certificate"),
    ("our CA", "r9.noc.test", "Hostname mismatch, certificate is not valid for 'r1.noc.test'"),
])
async def test_tls_with_a_certificate_we_cannot_trust_is_tls(
        autojump_clock: trio.testing.MockClock, ca_file: tuple[trustme.CA, str], issuer: str, name: str,
        why: str) -> None:
    ca, path = ca_file
    server = tls_server(trustme.CA() if issuer == "another CA" else ca, name)
    failure = await tls_identity(server, ca_file=path)
    assert isinstance(failure, RouterFailure) and failure.reason is Reason.TLS
    assert failure.detail.startswith("TLS handshake with r1.noc.test:8729 failed: [SSL: CERTIFICATE_VERIFY_FAILED]")
    assert why in failure.detail


async def test_tls_without_verification_accepts_any_certificate(autojump_clock: trio.testing.MockClock) -> None:
    assert await tls_identity(tls_server(trustme.CA(), "whatever"), tls_verify=False) == [{"name": "R-r1-noc-test"}]


#: RFC 7919 ffdhe2048: the parameters for a test server that, like api-ssl without a certificate,
#: offers only anonymous Diffie-Hellman.
FFDHE2048 = b"""-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
"""


async def test_tls_without_verification_speaks_to_a_router_without_certificate(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    params = tmp_path / "ffdhe2048.pem"
    params.write_bytes(FFDHE2048)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # TLS 1.3 has no anonymous suites
    context.set_ciphers("ADH:@SECLEVEL=0")
    context.load_dh_params(str(params))
    server = lambda stream: trio.SSLStream(stream, context, server_side=True)  # noqa: E731
    assert await tls_identity(server, tls_verify=False) == [{"name": "R-r1-noc-test"}]


# --------------------------------------------------------------------------- real TCP


async def test_real_tcp_with_the_default_dialer() -> None:
    router = sim_router("r1", latency_s=0.01)
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with trio.fail_after(10):
        async with trio.open_nursery() as servers:
            configs = await servers.start(serve_fleet, [router])
            nowhere = RouterConfig("nowhere", "127.0.0.1", closed_port)
            pool = RouterPool([*configs, nowhere])
            assert await pool.run("r1", commands.identity()) == [{"name": "R-r1"}]
            rows = await pool.run("r1", HEAVY)
            assert rows[0]["name"] == "ether1"
            failure = await failure_of(pool.run("nowhere", commands.identity()))
            await pool.aclose()
            servers.cancel_scope.cancel()
    assert failure.reason is Reason.UNREACHABLE
    assert failure.detail == f"cannot connect to 127.0.0.1:{closed_port}: Connection refused"
    assert (pool.stats.connects, pool.stats.commands, pool.stats.open_connections) == (1, 2, 0)

"""The RouterOS simulator sentence by sentence (our own codec over in-memory streams) on the virtual
clock: exact replies and tags, exact timings, the session limit, every fault, hostile clients,
and the seeded data's cross-fleet facts."""

from __future__ import annotations

import logging
import random
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from mikrovoice.cli import build_parser
from mikrovoice.routeros.protocol import Reply, SentenceReader, encode_sentence
from mikrovoice.sim.routeros import (
    FAULTS,
    LOG_LINES,
    FaultSpecError,
    FleetProfile,
    SimRouter,
    make_fleet,
    make_router,
    parse_duration,
    parse_fault_specs,
    router_names,
    serve_router_stream,
)
from mikrovoice.sim.routeros.router import rtt_text


def router(latency_s: float = 2.0, seed: str = "raw") -> SimRouter:
    return make_router("152.1", random.Random(seed), latency_s, password="pw")


class Client:
    """The client's end of one API connection, speaking raw sentences."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.reader = SentenceReader()
        self.ready: list[list[str]] = []

    async def send(self, *words: str) -> None:
        await self.stream.send_all(encode_sentence(words))

    async def sentence(self) -> list[str]:
        while not self.ready:
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError
            self.reader.receive_data(data)
            self.ready += self.reader.sentences()
        return self.ready.pop(0)

    async def until_done(self, tag: str | None = None) -> list[list[str]]:
        out = []
        while True:
            words = await self.sentence()
            out.append(words)
            if words[0] == "!done" and (tag is None or f".tag={tag}" in words):
                return out

    async def closed(self) -> bool:
        """True if the router closed the connection without another byte."""
        try:
            return await self.stream.receive_some(65536) == b""
        except trio.BrokenResourceError:
            return True


@asynccontextmanager
async def session(sim: SimRouter, login: bool = True) -> AsyncIterator[Client]:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_router_stream, sim, server)
        c = Client(client)
        if login:
            await c.send("/login", "=name=admin", "=password=pw")
            assert await c.sentence() == ["!done"]
        yield c
        nursery.cancel_scope.cancel()


def busy_port(sim: SimRouter) -> str:
    return next(name for name, (rx, _) in sim.traffic.items() if rx and not name.startswith("<"))


# --------------------------------------------------------------------------- login, print, traps


async def test_login_on_the_wire(autojump_clock: trio.testing.MockClock) -> None:
    sim = router()
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_router_stream, sim, server)
        await client.send_all(b"\x06/login\x0b=name=admin\x0c=password=pw\x00")
        assert await client.receive_some(100) == b"\x05!done\x00"
        await client.send_all(b"\x16/system/identity/print\x00")
        assert await client.receive_some(100) == b"\x03!re\x0d=name=R-152-1\x00\x05!done\x00"
        nursery.cancel_scope.cancel()
    async with session(sim, login=False) as c:
        await c.send("/system/identity/print", ".tag=1")
        assert await c.until_done() == [["!trap", "=message=not logged in", ".tag=1"], ["!done", ".tag=1"]]
        await c.send("/login", "=name=admin", "=password=nope", ".tag=2")
        assert await c.until_done() == [["!trap", "=message=invalid user name or password (6)", ".tag=2"],
                                        ["!done", ".tag=2"]]
        await c.send("/login")  # the pre-6.43 challenge: answered, and its response always fails
        ret = await c.sentence()
        assert ret[0] == "!done" and ret[1].startswith("=ret=") and len(ret[1]) == 5 + 32
        await c.send("/login", "=name=admin", "=response=00e134102a9d330dd7b1849fedfea3cb57")
        assert (await c.sentence())[1] == "=message=invalid user name or password (6)"


async def test_print_replies(autojump_clock: trio.testing.MockClock) -> None:
    sim = router()
    sim.pre_7_18 = False
    async with session(sim) as c:
        await c.send("/ip/arp/print", "?address=203.0.113.9", ".tag=5")
        assert await c.until_done() == [["!empty", ".tag=5"], ["!done", ".tag=5"]]
        sim.pre_7_18 = True
        await c.send("/ip/arp/print", "?address=203.0.113.9", ".tag=6")
        assert await c.until_done() == [["!done", ".tag=6"]]
        bound = [lease for lease in sim.leases if lease["status"] == "bound"]
        await c.send("/ip/dhcp-server/lease/print", "=count-only=", "?status=bound")
        assert await c.until_done() == [["!done", f"=ret={len(bound)}"]]
        await c.send("/ip/dhcp-server/lease/print", "=.proplist=mac-address,address,nothing", "?status=bound",
                     "?=dynamic=true", "?#&", "=detail=", "=without-paging=", "=stats=")
        rows = await c.until_done()
        want = [[f"=mac-address={x['mac-address']}", f"=address={x['address']}"] for x in bound if x["dynamic"] == "true"]
        assert [r[1:] for r in rows[:-1]] == want and rows[-1] == ["!done"] and want
        await c.send("/interface/print", "?type=vlan", "?type=bridge", "?#|", "=.proplist=name")
        assert await c.until_done() == [["!re", "=name=bridge-lan"], ["!re", "=name=vlan100-clientes"],
                                        ["!re", "=name=vlan200-gestion"], ["!done"]]


async def test_traps(autojump_clock: trio.testing.MockClock) -> None:
    sim = router()
    async with session(sim) as c:
        await c.send("/interface/wifi/registration-table/print", ".tag=1")
        missing = "wifi" if sim.wireless_package != "wifi" else "wireless"
        if missing == "wireless":
            await c.send("/interface/wireless/registration-table/print", ".tag=1")
        assert await c.until_done("1") == [["!trap", f"=message=no such command or directory ({missing})", ".tag=1"],
                                           ["!trap", "=message=no such command prefix", ".tag=1"], ["!done", ".tag=1"]]
        expected = {
            ("/interface/monitor-traffic", "=interface=nope", "=once="): ["=category=1",
                                                                        "=message=input does not match any value of interface"],
            ("/system/identity/print", "=frob=1"): ["=message=unknown parameter frob"],
            ("/interface/monitor-traffic", "=interface=ether1", "=count=3"): ["=message=unknown parameter count"],
            ("/cancel", "=bogus="): ["=message=unknown parameter bogus"],
            ("/interface/set", "=numbers=ether1", "=disabled=yes"): ["=message=not enough permissions (9)"],
            ("/ip/dhcp-server/lease/remove", "=numbers=*40"): ["=message=not enough permissions (9)"],
            ("/system/identity/frobnicate",): ["=message=no such command"],
            ("/ip/arp",): ["=message=no such command"],
            ("/ping", "=address=nowhere"): ["=message=invalid value for argument address"],
        }
        for words, trap in expected.items():
            await c.send(*words)
            assert await c.until_done() == [["!trap", *trap], ["!done"]], words
        await c.send("interface/print")  # no command word
        assert (await c.until_done())[0][0] == "!trap"


async def test_four_forms_of_a_flag(autojump_clock: trio.testing.MockClock) -> None:
    sim = router(latency_s=1.5)
    port = busy_port(sim)
    async with session(sim) as c:
        for flag in ("=once", "=once=", "=once=yes", "=once=true"):
            start = trio.current_time()
            await c.send("/interface/monitor-traffic", f"=interface={port}", flag)
            replies = await c.until_done()
            assert [r[0] for r in replies] == ["!re", "!done"] and "=.section=0" in replies[0], flag
            assert f"=rx-bits-per-second={sim.traffic[port][0]}" in replies[0]
            assert trio.current_time() - start == pytest.approx(1.5)
        for flag in ("=count-only", "=count-only=", "=count-only=yes", "=count-only=true"):
            await c.send("/ip/arp/print", flag)
            assert await c.until_done() == [["!done", f"=ret={len(sim.arp)}"]]


# --------------------------------------------------------------------------- tags, cancel, streams


async def test_tagged_commands_interleave(autojump_clock: trio.testing.MockClock) -> None:
    sim = router(latency_s=2.0)
    async with session(sim) as c:
        start = trio.current_time()
        await c.send("/ip/arp/print", "=.proplist=address", ".tag=a")
        await c.send("/system/identity/print", ".tag=b")
        first = await c.sentence()
        assert first == ["!re", "=name=R-152-1", ".tag=b"] and trio.current_time() - start == pytest.approx(0.05)
        assert await c.sentence() == ["!done", ".tag=b"]
        rest = await c.until_done("a")
        assert trio.current_time() - start == pytest.approx(2.0)
        assert rest == [["!re", f"=address={r['address']}", ".tag=a"] for r in sim.arp] + [["!done", ".tag=a"]]


async def test_monitor_streams_a_batch_a_second_until_cancel(autojump_clock: trio.testing.MockClock) -> None:
    sim = router(latency_s=0.5)
    port = busy_port(sim)
    async with session(sim) as c:
        start = trio.current_time()
        await c.send("/interface/monitor-traffic", f"=interface={port}", "=.proplist=rx-bits-per-second,tx-bits-per-second",
                     ".tag=3")
        seen = []
        for section in range(3):
            words = await c.sentence()
            seen.append(words)
            assert trio.current_time() - start == pytest.approx(0.5 + section)
        rates = [sim.traffic_at(port, k) for k in range(3)]
        assert seen == [["!re", f"=rx-bits-per-second={rx}", f"=tx-bits-per-second={tx}", f"=.section={k}", ".tag=3"]
                        for k, (rx, tx) in enumerate(rates)]
        assert rates[0] == sim.traffic[port] and rates[1] != rates[0]
        assert all(abs(rx - rates[0][0]) <= rates[0][0] * 0.05 for rx, _ in rates)
        await trio.sleep(0.25)
        await c.send("/cancel", "=tag=3", ".tag=4")
        assert await c.until_done("3") == [["!trap", "=category=2", "=message=interrupted", ".tag=3"],
                                           ["!done", ".tag=4"], ["!done", ".tag=3"]]
        await c.send("/system/identity/print", ".tag=5")  # the session goes on, and nothing else came for tag 3
        assert await c.until_done() == [["!re", "=name=R-152-1", ".tag=5"], ["!done", ".tag=5"]]


async def test_monitor_duration_and_cancel_all(autojump_clock: trio.testing.MockClock) -> None:
    sim = router(latency_s=0.5)
    port = busy_port(sim)
    async with session(sim) as c:
        start = trio.current_time()
        await c.send("/interface/ethernet/monitor", "=numbers=0", "=duration=3", "=.proplist=name,status", ".tag=1")
        replies = await c.until_done("1")
        first = sim.interfaces[0]["name"]
        assert replies == [["!re", f"=name={first}", f"=status={sim.optics[first]['status']}", f"=.section={k}", ".tag=1"]
                           for k in range(3)] + [["!done", ".tag=1"]]
        assert trio.current_time() - start == pytest.approx(3.5)
        await c.send("/interface/monitor-traffic", f"=interface={port}", ".tag=7")
        await c.send("/ping", "=address=8.8.8.8")
        await trio.sleep(2.25)  # monitor batches at 0.5 and 1.5, echoes at 1 and 2
        await c.send("/cancel", ".tag=9")
        replies = await c.until_done("9") + [await c.sentence(), await c.sentence()]
        assert [(r[1], r[-1]) for r in replies[:4]] == [(f"=name={port}", ".tag=7"), ("=seq=0", "=max-rtt=" + replies[1][-1][9:]),
                                                        (f"=name={port}", ".tag=7"), ("=seq=1", replies[3][-1])]
        assert replies[3][-1].startswith("=max-rtt=") and replies[2][-2] == "=.section=1"
        assert replies[4:] == [["!trap", "=category=2", "=message=interrupted", ".tag=7"],
                                ["!trap", "=category=2", "=message=interrupted"],
                                ["!done", ".tag=9"], ["!done", ".tag=7"], ["!done"]]


async def test_ping_timing_on_the_virtual_clock(autojump_clock: trio.testing.MockClock) -> None:
    sim = router()
    async with session(sim) as c:
        start = trio.current_time()
        await c.send("/ping", "=address=8.8.8.8", "=count=4", "=interval=500ms", ".tag=p")
        times, rows = [], []
        while True:
            words = await c.sentence()
            times.append(trio.current_time() - start)
            rows.append(words)
            if words[0] == "!done":
                break
        assert times == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.0])
        rtts = [sim.ping_rtt_us("8.8.8.8", k) for k in range(4)]
        assert all(r is not None for r in rtts)
        us = [r for r in rtts if r is not None]
        assert rows[0][:3] == ["!re", "=seq=0", "=host=8.8.8.8"]
        assert rows[3] == ["!re", "=seq=3", "=host=8.8.8.8", "=size=56", f"=ttl={sim.ping_ttl('8.8.8.8')}",
                           f"=time={rtt_text(us[3])}", "=sent=4", "=received=4", "=packet-loss=0",
                           f"=min-rtt={rtt_text(min(us))}", f"=avg-rtt={rtt_text(sum(us) // 4)}",
                           f"=max-rtt={rtt_text(max(us))}", ".tag=p"]
        start = trio.current_time()
        await c.send("/ping", "=address=192.0.2.7", "=count=2", "=interval=1")
        assert await c.until_done() == [
            ["!re", "=seq=0", "=host=192.0.2.7", "=status=timeout", "=sent=1", "=received=0", "=packet-loss=100"],
            ["!re", "=seq=1", "=host=192.0.2.7", "=status=timeout", "=sent=2", "=received=0", "=packet-loss=100"],
            ["!done"]]
        assert trio.current_time() - start == pytest.approx(2.0)
        await c.send("/ping", "=address=1.1.1.1", ".tag=f")  # no count: until /cancel
        await trio.sleep(10.5)
        await c.send("/cancel", "=tag=f")
        replies = await c.until_done("f")
        assert [r[1] for r in replies if r[0] == "!re"] == [f"=seq={k}" for k in range(10)]
        await c.send("/ping", "=address=8.8.8.8", "=count=1", "=interval=10s")
        assert await c.until_done() == [["!trap", "=message=value of interval out of range (10ms..5s)"], ["!done"]]


async def test_quit(autojump_clock: trio.testing.MockClock) -> None:
    sim = router()
    async with session(sim) as c:
        await c.send("/quit", ".tag=9")
        assert await c.sentence() == ["!fatal", "session terminated on request"]
        assert await c.closed()
    assert sim.sessions == 0
    assert sim.table("/log")[-1]["message"] == "user admin logged out from 10.1.2.3 via api"


# --------------------------------------------------------------------------- sessions and faults


async def test_max_sessions(autojump_clock: trio.testing.MockClock) -> None:
    sim = router()
    sim.max_sessions = 2
    async with session(sim) as one, session(sim) as two:
        assert sim.sessions == 2
        async with session(sim, login=False) as three:
            await three.send("/login", "=name=admin", "=password=pw")
            assert await three.closed()
        assert sim.sessions == 2
        await one.send("/quit")
        assert (await one.sentence())[0] == "!fatal" and await one.closed()
        await trio.sleep(0.01)
        async with session(sim) as four:  # a place is free again
            await four.send("/system/identity/print")
            assert (await four.until_done())[0] == ["!re", "=name=R-152-1"]
        await two.send("/system/identity/print")
        assert (await two.until_done())[0] == ["!re", "=name=R-152-1"]
    assert sim.sessions == 0


@pytest.mark.parametrize("fault", ["hangs", "black_hole"])
async def test_a_hung_router_says_nothing(autojump_clock: trio.testing.MockClock, fault: str) -> None:
    sim = router()
    sim.fault = fault
    async with session(sim, login=False) as c:
        await c.send("/login", "=name=admin", "=password=pw")
        with trio.move_on_after(300) as waited:
            await c.sentence()
        assert waited.cancelled_caught
    assert [words[0] for _, words in sim.journal] == ["/login"]


async def test_hangs_after_login(autojump_clock: trio.testing.MockClock) -> None:
    sim = router()
    sim.fault = "hangs_after_login"
    async with session(sim) as c:
        await c.send("/system/identity/print", ".tag=1")
        await c.send("/cancel", "=tag=1", ".tag=2")
        with trio.move_on_after(300) as waited:
            await c.sentence()
        assert waited.cancelled_caught


async def test_drops_mid_query(autojump_clock: trio.testing.MockClock) -> None:
    sim = router(latency_s=4.0)
    sim.fault = "drops_mid_query"
    async with session(sim) as c:
        start = trio.current_time()
        await c.send("/ip/arp/print")
        assert await c.closed() and trio.current_time() - start == pytest.approx(1.0)


async def test_refuses_login(autojump_clock: trio.testing.MockClock) -> None:
    sim = router()
    sim.fault = "refuses_login"
    async with session(sim, login=False) as c:
        await c.send("/login", "=name=admin", "=password=pw")
        assert await c.until_done() == [["!trap", "=message=invalid user name or password (6)"], ["!done"]]


@pytest.mark.parametrize(("latency", "takes"), [(0.3, 8.0), (2.0, 20.0)])
async def test_slow(autojump_clock: trio.testing.MockClock, latency: float, takes: float) -> None:
    sim = router(latency_s=latency)
    sim.fault = "slow"
    async with session(sim) as c:  # the login is not slowed
        start = trio.current_time()
        await c.send("/system/identity/print")
        assert await c.until_done() == [["!re", "=name=R-152-1"], ["!done"]]
        assert trio.current_time() - start == pytest.approx(takes)


async def test_drops_mid_reply(autojump_clock: trio.testing.MockClock) -> None:
    sim = router()
    sim.fault = "drops_mid_reply"
    whole = Reply("!re", {"name": "R-152-1"}).encode() + Reply("!done").encode()
    async with session(sim) as c:
        await c.send("/system/identity/print")
        got = b""
        while data := await c.stream.receive_some(100):
            got += data
        assert got == whole[: len(whole) // 2]


async def test_drips(autojump_clock: trio.testing.MockClock) -> None:
    sim = router()
    sim.fault = "drips"
    async with session(sim, login=False) as c:
        start = trio.current_time()
        await c.send("/login", "=name=admin", "=password=pw")
        got = []
        for _ in range(7):
            got.append((await c.stream.receive_some(100), trio.current_time() - start))
        assert [b for b, _ in got] == [bytes([b]) for b in b"\x05!done\x00"]
        assert [t for _, t in got] == pytest.approx([0.05 + 0.02 * i for i in range(7)])


async def test_busy(autojump_clock: trio.testing.MockClock) -> None:
    sim = router()
    sim.fault = "busy"
    async with session(sim, login=False) as c:
        assert await c.closed()
    assert sim.sessions == 0 and sim.journal == []


def test_fault_names_and_specs() -> None:
    assert FAULTS == ("hangs", "hangs_after_login", "drops_mid_query", "refuses_login", "slow", "black_hole",
                      "drops_mid_reply", "drips", "busy")
    names = router_names(12, 7)
    assert parse_fault_specs(["black_hole=46.3", "slow=26.1, 59.3"], names) == {
        "46.3": "black_hole", "26.1": "slow", "59.3": "slow"}
    for spec, message in [("nope=26.1", "unknown fault 'nope'"), ("slow=999.9", "no router named '999.9'"),
                          ("slow", "expected FAULT=ROUTER"), ("slow=26.1,26.1", None)]:
        if message is None:
            assert parse_fault_specs([spec], names) == {"26.1": "slow"}
            continue
        with pytest.raises(FaultSpecError, match=message):
            parse_fault_specs([spec], names)
    with pytest.raises(FaultSpecError, match="two faults"):
        parse_fault_specs(["slow=26.1", "drips=26.1"], names)


@pytest.mark.parametrize(("argv", "message"), [
    (["--fault", "nope=26.1"], "bad --fault: unknown fault 'nope'"),
    (["--fault", "slow=999.9"], "bad --fault: no router named '999.9'"),
    (["--tls-cert", "/nonexistent.pem"], "--tls-cert and --tls-key go together"),
    (["--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"], "cannot load --tls-cert/--tls-key"),
    (["--max-sessions", "-1"], "--max-sessions must be 0..1000"),
])
def test_cli_refuses_bad_arguments(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    args = build_parser().parse_args(["sim", "routers", "--listen", "127.0.0.1:0", *argv])
    assert args.run(args) == 2
    assert message in capsys.readouterr().err


def test_cli_help_names_every_fault(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sim", "routers", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert all(name in help_text for name in FAULTS) and "--fault FAULT=NAME[,NAME...]" in help_text


# --------------------------------------------------------------------------- hostile clients


async def test_a_client_that_hangs_up_mid_command_ends_only_its_session(
        autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture) -> None:
    sim = router(latency_s=3.0)
    async with session(sim) as keeps:
        for hang_up_after in (0.0, 1.0, 3.5):
            async with session(sim) as c:
                await c.send("/ip/arp/print", ".tag=1")
                await c.send("/ping", "=address=8.8.8.8", ".tag=2")
                await c.send("/interface/monitor-traffic", "=interface=ether1", ".tag=3")
                await trio.sleep(hang_up_after)
                await c.stream.aclose()
                await trio.sleep(5)
        await keeps.send("/system/identity/print")
        assert (await keeps.until_done())[0] == ["!re", "=name=R-152-1"]
        assert sim.sessions == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("garbage", [b"\xf8\x01\x02", b"\xff" * 10, b"\xe0\x20\x00\x00" + b"x" * 100,
                                     b"\x06/login\x0b=name=admin" + b"\xfa"])
async def test_garbage_closes_the_session_with_one_warning(
        autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture, garbage: bytes) -> None:
    sim = router()
    async with session(sim) as keeps:
        async with session(sim, login=False) as c:
            await c.stream.send_all(garbage)
            assert await c.closed()
        await keeps.send("/system/identity/print")
        assert (await keeps.until_done())[0] == ["!re", "=name=R-152-1"]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].getMessage().startswith("router.protocol_error router=152.1")
    assert sim.sessions == 0


async def test_a_half_sentence_then_hang_up_is_quiet(
        autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture) -> None:
    sim = router()
    async with session(sim, login=False) as c:
        await c.stream.send_all(b"\x06/login\x0b=name=ad")
        await c.stream.aclose()
        await trio.sleep(1)
    assert sim.sessions == 0 and sim.journal == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# --------------------------------------------------------------------------- seeded data


def _tables(routers: list[SimRouter]) -> list[object]:
    return [(r.name, r.site, r.latency_s, r.traffic, r.optics, [r.table(m) for m in sorted(r.menus())]) for r in routers]


def test_the_same_seed_gives_the_same_fleet() -> None:
    profile = FleetProfile(count=20, seed=11)
    assert _tables(make_fleet(profile)) == _tables(make_fleet(profile))
    assert _tables(make_fleet(profile)) != _tables(make_fleet(FleetProfile(count=20, seed=12)))
    assert router_names(3, 7) == ["152.1", "26.1", "121.2"] and router_names(800, 7)[:720] == router_names(720, 7)
    fleet = make_fleet(FleetProfile(count=3, seed=7))
    assert [r.identity for r in fleet] == ["R-152-1", "R-26-1", "R-121-2"] and fleet[0].site == "Torre Norte"


def test_a_fleet_of_three_hundred_has_single_owners() -> None:
    fleet = make_fleet(FleetProfile(count=300, seed=7))
    ppp = [row["name"] for r in fleet for row in r.ppp_active]
    assert len(ppp) > 1000 and len(ppp) == len(set(ppp))
    assert {"juan.perez", "cliente"} & {n if not n.startswith("cliente") else "cliente" for n in ppp}
    ip_owners: dict[str, set[str]] = {}
    mac_owners: dict[str, set[str]] = {}
    for r in fleet:
        for row in r.leases + r.arp + r.ppp_active:
            ip_owners.setdefault(row["address"], set()).add(r.name)
        clients = [*r.leases, *r.arp, *r.registrations, *(h for h in r.bridge_hosts if h["local"] == "false")]
        for row in clients + [{"mac-address": p["caller-id"]} for p in r.ppp_active]:
            if "mac-address" in row:
                mac_owners.setdefault(row["mac-address"], set()).add(r.name)
        bound = {(x["address"], x["mac-address"]) for x in r.leases if x["status"] == "bound"}
        assert bound <= {(x["address"], x.get("mac-address")) for x in r.arp if x["DHCP"] == "true"}
        assert {m for _, m in bound} == {h["mac-address"] for h in r.bridge_hosts if h["local"] == "false"}
    assert all(len(owners) == 1 for owners in ip_owners.values())
    assert all(len(owners) == 1 for owners in mac_owners.values())
    sites = Counter(r.site for r in fleet)
    assert all(1 <= n <= 4 for n in sites.values()) and fleet[0].site == "Torre Norte"


def test_the_log_is_a_ring_of_a_thousand_lines() -> None:
    sim = router()
    first = sim.table("/log")[0]
    assert first["time"][:4] == "2026" and sim.table("/log")[-1]["time"].count(":") == 2
    for i in range(LOG_LINES + 5):
        sim.append_log("script,info", f"line {i}")
    rows = sim.table("/log")
    assert len(rows) == LOG_LINES and rows[-1]["message"] == f"line {LOG_LINES + 4}" and rows[-1]["time"] == "14:37:05"
    ids = [int(r[".id"][1:], 16) for r in rows]
    assert ids == list(range(ids[0], ids[0] + LOG_LINES))
    with pytest.raises(KeyError):
        sim.table("/routing/ospf/neighbor")


def test_durations() -> None:
    assert [parse_duration(t) for t in ("1", "0.5", "100ms", "1m30s", "00:00:02", "2x", "")] == [
        1.0, 0.5, 0.1, 90.0, 2.0, None, None]


def test_the_cli_serves_a_fleet_with_faults_and_pre_7_18() -> None:
    command = [sys.executable, "-m", "mikrovoice", "sim", "routers", "--listen", "127.0.0.1:0", "--count", "3",
               "--fault", "black_hole=26.1", "--pre-7-18", "--max-sessions", "5"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as process:
        try:
            assert process.stdout is not None
            lines = [process.stdout.readline() for _ in range(3)]
            assert [line.split()[1] for line in lines] == ["152.1", "26.1", "121.2"]
            assert 'site="Torre Norte"' in lines[0] and "fault=-" in lines[0] and "fault=black_hole" in lines[1]
            port = int(lines[0].split()[2].rsplit(":", 1)[1])
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                reader, sentences = SentenceReader(), list[list[str]]()
                for sentence, replies in [(["/login", "=name=admin", "=password="], 1),
                                          (["/ip/arp/print", "?address=203.0.113.9", ".tag=1"], 2),
                                          (["/system/resource/print", "=.proplist=version", ".tag=2"], 4)]:
                    sock.sendall(encode_sentence(sentence))
                    while len(sentences) < replies:
                        reader.receive_data(sock.recv(65536))
                        sentences += reader.sentences()
        finally:
            process.terminate()
    assert sentences == [["!done"], ["!done", ".tag=1"], ["!re", "=version=7.17.2 (stable)", ".tag=2"],
                         ["!done", ".tag=2"]]

"""The RouterOS simulator against the reference client (librouteros, blocking, in a thread) and
our Trio client and fan-out on the virtual clock."""

import librouteros
import pytest
import trio
import trio.testing
from librouteros.exceptions import TrapError
from librouteros.query import Key

from mikrovoice.routeros import commands
from mikrovoice.routeros.client import RouterOSClient, RouterTrap
from mikrovoice.routeros.fleet import FanOut, RouterFleet
from mikrovoice.sim.routeros import FleetProfile, make_fleet, serve_fleet

QUICK = FleetProfile(count=3, seed=1, fast_s=(0.01, 0.02), slow=1, slow_s=(5.0, 5.0))


async def test_reference_client_reads_the_simulator() -> None:
    async with trio.open_nursery() as nursery:
        configs = await nursery.start(serve_fleet, make_fleet(QUICK, password="pw"))
        port = configs[0].port

        def reference() -> tuple[object, ...]:
            api = librouteros.connect("127.0.0.1", "admin", "pw", port=port, timeout=5)
            identity = next(iter(api("/system/identity/print")))["name"]
            traffic = list(api("/interface/monitor-traffic", interface="sfp-sfpplus1", once=True))
            bound = list(api.path("ip", "dhcp-server", "lease").select(Key("address")).where(Key("status") == "bound"))
            try:
                list(api("/interface/set", numbers="ether1", disabled=True))
                write = "accepted"
            except TrapError as exc:
                write = str(exc)
            api.close()
            try:
                librouteros.connect("127.0.0.1", "admin", "wrong", port=port, timeout=5)
                login = "accepted"
            except TrapError as exc:
                login = str(exc)
            return identity, traffic, bound, write, login

        identity, traffic, bound, write, login = await trio.to_thread.run_sync(reference)
        nursery.cancel_scope.cancel()
    assert identity == "R-152-1"
    assert traffic[0]["name"] == "sfp-sfpplus1" and traffic[0]["rx-bits-per-second"] > 0
    assert bound and all(set(row) == {"address"} for row in bound)
    assert write == "not enough permissions (9)"
    assert login == "invalid user name or password (6)"


async def test_trio_client_and_traps(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        configs = await nursery.start(serve_fleet, make_fleet(QUICK))
        c = configs[0]
        client = await RouterOSClient.connect(c.name, c.host, c.port, "admin", "")
        rows = await client.run(commands.interfaces())
        assert {r["name"] for r in rows} >= {"ether1", "sfp-sfpplus1"} and "bridge1" not in {r["name"] for r in rows}
        with pytest.raises(RouterTrap, match="input does not match any value of interface"):
            await client.run(commands.monitor_traffic(["sfp-missing"]))
        await client.aclose()
        with pytest.raises(RouterTrap, match="login refused: invalid user name or password"):
            await RouterOSClient.connect(c.name, c.host, c.port, "admin", "nope")
        nursery.cancel_scope.cancel()


async def test_fan_out_is_parallel_and_its_deadline_keeps_what_arrived(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        configs = await nursery.start(serve_fleet, make_fleet(QUICK))
        fleet = RouterFleet(tuple(configs), router_timeout_s=60)

        async def leases(client: RouterOSClient) -> int:
            return len(await client.run(commands.bound_leases()))

        fan = FanOut(tuple(c.name for c in configs))
        start = trio.current_time()
        await fleet.fan_out(fan, leases)
        assert trio.current_time() - start == pytest.approx(5.05)  # the slowest router, not the sum
        assert fan.done == 3 and not fan.errors

        fan = FanOut(tuple(c.name for c in configs))
        with trio.move_on_after(1.0):
            await fleet.fan_out(fan, leases)
        assert sorted(fan.results) == sorted(c.name for c in configs[:2]) and fan.pending == [configs[2].name]
        nursery.cancel_scope.cancel()

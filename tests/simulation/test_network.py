"""The in-memory network behaves like TCP where the production code can tell the difference."""

import pytest
import trio
import trio.testing

from mikrovoice.simulation.network import MemoryNetwork


async def echo(stream: trio.abc.Stream) -> None:
    async with stream:
        while data := await stream.receive_some(100):
            await stream.send_all(data.upper())


async def test_bytes_arrive_in_order_and_close_is_seen_as_eof(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        net = MemoryNetwork(nursery)
        net.listen("10.0.0.1", 7, echo, "echo")
        client = await net.dial("10.0.0.1", 7)
        await client.send_all(b"hola ")
        await client.send_all(b"mundo")
        received = b""
        while len(received) < 10:
            received += await client.receive_some(3)
        assert received == b"HOLA MUNDO"
        await client.aclose()
        await net.wait_settled()
        (connection,) = net.connections
        assert connection.service == "echo" and connection.open_ends == [] and connection.crash is None
        assert connection.handler_done_at is not None


async def test_nothing_listening_is_connection_refused(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        net = MemoryNetwork(nursery)
        with pytest.raises(ConnectionRefusedError):
            await net.dial("10.0.0.2", 8728)
        assert net.refused == [(0.0, "10.0.0.2", 8728)] and net.connections == []


async def test_writing_to_a_closed_peer_breaks_and_writing_after_own_close_is_an_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def hang_up_at_once(stream: trio.abc.Stream) -> None:
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        net = MemoryNetwork(nursery)
        net.listen("h", 1, hang_up_at_once, "rude")
        client = await net.dial("h", 1)
        assert await client.receive_some() == b""
        with pytest.raises(trio.BrokenResourceError):
            await client.send_all(b"x")
        await client.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await client.send_all(b"x")
        assert net.settled


async def test_a_crashing_server_is_recorded_and_its_socket_closed(autojump_clock: trio.testing.MockClock) -> None:
    async def crash(stream: trio.abc.Stream) -> None:
        await stream.receive_some()
        raise ValueError("simulator bug")

    async with trio.open_nursery() as nursery:
        net = MemoryNetwork(nursery)
        net.listen("h", 1, crash, "buggy")
        client = await net.dial("h", 1)
        await client.send_all(b"x")
        assert await client.receive_some() == b""  # the "process" died: its socket closed
        assert net.connections[0].crash == "ValueError('simulator bug')" and "Traceback" in (net.connections[0].crash_traceback or "")
        assert not net.settled  # our own end is still open
        await client.aclose()
        with trio.fail_after(1):  # the handler's end is recorded by its task: let it run
            await net.wait_settled()


async def test_a_connection_left_open_keeps_the_network_unsettled(autojump_clock: trio.testing.MockClock) -> None:
    async def forgetful(stream: trio.abc.Stream) -> None:
        return  # never closes its end

    async with trio.open_nursery() as nursery:
        net = MemoryNetwork(nursery)
        net.listen("h", 1, forgetful, "leaky")
        client = await net.dial("h", 1)
        await client.aclose()
        with trio.move_on_after(5):
            await net.wait_settled()
        assert net.connections[0].open_ends == ["leaky"]

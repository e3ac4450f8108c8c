"""RealtimeLink against small WebSocket servers: garbage is skipped, a dead peer is detected by the ping deadline."""

import logging
from functools import partial

import pytest
import trio
import trio.testing
from trio_websocket import WebSocketRequest, serve_websocket, wrap_server_stream

from mikrovoice.realtime import protocol as rt
from mikrovoice.realtime.link import RealtimeLink
from mikrovoice.simulation.network import MemoryNetwork


async def test_garbage_is_logged_and_skipped(autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture) -> None:
    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message("this is not json")
        await ws.send_message('{"type":"session.created","session":{}}')
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
        link = RealtimeLink(f"ws://127.0.0.1:{server.port}/v1/realtime", "sk-x")
        send, receive = trio.open_memory_channel[rt.ServerEvent](10)
        nursery.start_soon(link.run, send)
        assert await receive.receive() == rt.SessionCreated({})
        nursery.cancel_scope.cancel()
    assert any("model.bad_event" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


async def test_a_peer_that_stops_answering_pings_is_declared_dead(autojump_clock: trio.testing.MockClock) -> None:
    async def handler(request: WebSocketRequest) -> None:
        await request.accept()
        await trio.sleep_forever()  # never reads: once its queue is full, its pongs stop too

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
        link = RealtimeLink(f"ws://127.0.0.1:{server.port}/v1/realtime", "sk-x", ping_interval_s=15, pong_timeout_s=10)
        for _ in range(3):  # more than the peer's message queue (1) holds
            link.send(rt.client_append_audio(b"\xff" * 160))
        send, receive = trio.open_memory_channel[rt.ServerEvent](100)
        start = trio.current_time()
        closed = await link.run(send)
        nursery.cancel_scope.cancel()
    assert closed.reason == "no pong within 10 s: link dead" and not closed.by_us
    assert trio.current_time() - start == pytest.approx(25.0)


async def test_unreachable_endpoint_is_reported(autojump_clock: trio.testing.MockClock) -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    await listener.aclose()
    link = RealtimeLink(f"ws://127.0.0.1:{port}/v1/realtime", "sk-x")
    send, _ = trio.open_memory_channel[rt.ServerEvent](1)
    closed = await link.run(send)
    assert closed.reason.startswith("cannot connect to ws://127.0.0.1") and "sk-x" not in closed.reason


async def _serve_ws(stream: trio.abc.Stream, on_request) -> None:  # type: ignore[no-untyped-def]
    async with trio.open_nursery() as nursery:
        request = await wrap_server_stream(nursery, stream)
        await on_request(request)
        nursery.cancel_scope.cancel()
    await stream.aclose()


async def test_a_refused_handshake_is_one_line_with_the_status_and_code(autojump_clock: trio.testing.MockClock) -> None:
    async def refuse(request: WebSocketRequest) -> None:
        await request.reject(401, body=b'{"error":{"type":"invalid_request_error","code":"invalid_api_key",'
                                       b'"message":"Incorrect API key provided: sk-x***."}}')

    async with trio.open_nursery() as nursery:
        net = MemoryNetwork(nursery)
        net.listen("api.sim", 443, partial(_serve_ws, on_request=refuse), "model")
        link = RealtimeLink("ws://api.sim:443/v1/realtime?model=m", "sk-x", dial=net.dial)
        send, _ = trio.open_memory_channel[rt.ServerEvent](1)
        closed = await link.run(send)
        await net.wait_settled()  # and the link closed its socket
    assert closed.reason == ("ws://api.sim:443/v1/realtime refused the WebSocket handshake: HTTP 401 "
                             "invalid_api_key: Incorrect API key provided: sk-x***.")


async def test_a_handshake_that_never_completes_is_bounded(autojump_clock: trio.testing.MockClock) -> None:
    async def mute(stream: trio.abc.Stream) -> None:
        async with stream:
            while await stream.receive_some():
                pass

    async with trio.open_nursery() as nursery:
        net = MemoryNetwork(nursery)
        net.listen("api.sim", 80, mute, "mute")
        link = RealtimeLink("ws://api.sim/v1/realtime", "sk-x", connect_timeout_s=3, dial=net.dial)
        send, _ = trio.open_memory_channel[rt.ServerEvent](1)
        start = trio.current_time()
        closed = await link.run(send)
        assert trio.current_time() - start == pytest.approx(3.0)
        await net.wait_settled()
    assert closed.reason == "no WebSocket handshake within 3 s"


async def test_while_watched_a_silent_server_is_found_within_two_seconds(autojump_clock: trio.testing.MockClock) -> None:
    silent_from = 30.0

    async def goes_silent(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message('{"type":"session.created","session":{}}')
        await trio.sleep_forever()

    class Stalling(trio.abc.Stream):
        """Stops delivering bytes either way at ``silent_from``, as a dead peer or a black-holed route."""

        def __init__(self, inner: trio.abc.Stream) -> None:
            self.inner = inner

        async def send_all(self, data: bytes | bytearray | memoryview) -> None:
            if trio.current_time() < silent_from:
                await self.inner.send_all(data)

        async def wait_send_all_might_not_block(self) -> None:
            await self.inner.wait_send_all_might_not_block()

        async def receive_some(self, max_bytes: int | None = None) -> bytes:
            while True:
                data = await self.inner.receive_some(max_bytes)
                if not data or trio.current_time() < silent_from:
                    return data

        async def aclose(self) -> None:
            await self.inner.aclose()

    async with trio.open_nursery() as nursery:
        net = MemoryNetwork(nursery)
        net.listen("api.sim", 80, lambda s: _serve_ws(Stalling(s), goes_silent), "model")
        link = RealtimeLink("ws://api.sim/v1/realtime", "sk-x", ping_interval_s=15, pong_timeout_s=10, dial=net.dial)
        link.watching = True  # a query is running
        send, receive = trio.open_memory_channel[rt.ServerEvent](10)
        closed = await link.run(send)
        nursery.cancel_scope.cancel()
    # Probes every second of server silence answered until 30 s; then one probe unanswered for 1 s.
    assert closed.reason == "no pong within 1 s: link dead"
    assert 31.0 <= trio.current_time() <= 32.0 + 1e-6

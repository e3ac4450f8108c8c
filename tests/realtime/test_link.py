"""RealtimeLink against small WebSocket servers: garbage is skipped, a dead peer is detected by the ping deadline."""

import logging

import pytest
import trio
import trio.testing
from trio_websocket import WebSocketRequest, serve_websocket

from mikrovoice.realtime import protocol as rt
from mikrovoice.realtime.link import RealtimeLink


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

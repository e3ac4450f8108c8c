"""RealtimeLink against small WebSocket servers: garbage is skipped, a dead peer is detected by the ping deadline."""

import base64
import contextlib
import json
import logging
from functools import partial

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket, wrap_server_stream

from mikrovoice.realtime import protocol as rt
from mikrovoice.realtime.link import RealtimeLink
from mikrovoice.sim.realtime import ModelFaults, SimModelConfig, serve_model
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


async def test_a_ping_that_arrives_while_we_close_ends_the_link_not_the_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A server that stops answering our pings but keeps pinging us: we declare the link dead and
    # close; its next ping arrives in LOCAL_CLOSING and trio-websocket's pong is refused by wsproto
    # ("Pong cannot be sent in state LOCAL_CLOSING"). That error escaped RealtimeLink.run() and
    # crashed the call; it must end the link with a reason instead.
    config = SimModelConfig(api_key="sk-x", faults=ModelFaults(deaf_pings_after_s=0.0), ping_interval_s=0.5)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_model, "127.0.0.1", 0, config)
        link = RealtimeLink(f"ws://127.0.0.1:{server.port}/v1/realtime?model=gpt-realtime-2.1", "sk-x",
                            ping_interval_s=1.0, pong_timeout_s=1.0)
        send, receive = trio.open_memory_channel[rt.ServerEvent](100)
        nursery.start_soon(_drain, receive)
        closed = await link.run(send)
        nursery.cancel_scope.cancel()
    assert not closed.by_us and ("pong" in closed.reason.lower() or "protocol" in closed.reason.lower())


async def _drain(receive: trio.MemoryReceiveChannel[rt.ServerEvent]) -> None:
    async for _ in receive:
        pass


async def test_stale_caller_audio_is_dropped_and_counted_control_events_never(
    autojump_clock: trio.testing.MockClock,
) -> None:
    received: list[str] = []
    all_in = trio.Event()

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        with contextlib.suppress(ConnectionClosed):
            while True:
                received.append(str(await ws.get_message()))
                if len(received) == 2002:
                    all_in.set()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
        link = RealtimeLink(f"ws://127.0.0.1:{server.port}/v1/realtime", "sk-x", max_audio_lag_s=1.0)
        for _ in range(3):
            link.send(rt.client_append_audio(b"\xff" * 800))  # queued while no link could take them
        link.send(rt.client_truncate("item_1", 100))
        for _ in range(2000):  # far more control events than any queue bound: never refused, never lost
            link.send(rt.client_system_note("nota"))
        await trio.sleep(1.5)  # the link stalls 1.5 s: that audio is stale now
        link.send(rt.client_append_audio(b"\x7f" * 800))  # fresh
        send, _receive = trio.open_memory_channel[rt.ServerEvent](10)
        nursery.start_soon(link.run, send)
        with trio.fail_after(10):
            await all_in.wait()
        await link.aclose()
        nursery.cancel_scope.cancel()
    kinds = [json.loads(m)["type"] for m in received]
    assert link.dropped_audio == 3
    assert kinds[0] == "conversation.item.truncate" and kinds.count("conversation.item.create") == 2000
    assert kinds[-1] == "input_audio_buffer.append"  # the fresh one, in order


async def _echo_appends(out: trio.MemorySendChannel[str | None], request: WebSocketRequest) -> None:
    ws = await request.accept()
    with contextlib.suppress(ConnectionClosed):
        while True:
            await out.send(json.loads(await ws.get_message()).get("audio"))


async def _linked(nursery: trio.Nursery) -> tuple[RealtimeLink, trio.MemoryReceiveChannel[str | None]]:
    """A link up to a server that passes on each message's ``audio`` (None for other events)."""
    out, heard = trio.open_memory_channel[str | None](100)
    server = await nursery.start(serve_websocket, partial(_echo_appends, out), "127.0.0.1", 0, None)
    link = RealtimeLink(f"ws://127.0.0.1:{server.port}/v1/realtime", "sk-x")
    send, _ = trio.open_memory_channel[rt.ServerEvent](10)
    await nursery.start(link.run, send)
    return link, heard


async def test_caller_audio_is_written_at_once_and_in_order_with_the_writer() -> None:
    # Over plain TCP an append goes out from the caller's own task (no hand-over to the writer);
    # while the writer has something queued (a control event) appends queue behind it, in order.
    async with trio.open_nursery() as nursery:
        link, heard = await _linked(nursery)
        assert link._ws is not None and link._pipe is not None  # (trio-websocket's internals it relies on:)
        assert hasattr(link._ws, "_stream_lock") and hasattr(link._ws, "_wsproto") and hasattr(link._ws, "_stream")
        chunks = [bytes([n]) * 800 for n in range(6)]
        link.send(rt.client_append_audio(chunks[0]))
        assert link.sent_events == 1 and link.queued == 0  # written, no task switch needed
        link.send({"type": "input_audio_buffer.clear"})  # queued for the writer ...
        for chunk in chunks[1:]:
            link.send(rt.client_append_audio(chunk))  # ... and so are these, behind it
        assert link.queued == 6
        with trio.fail_after(5):
            received = [await heard.receive() for _ in range(7)]  # the clear and the six appends
        link.send(rt.client_append_audio(chunks[0]))
        assert link.queued == 0
        nursery.cancel_scope.cancel()
    assert received[1] is None  # the clear came second, as sent
    assert [base64.b64decode(a)[:1] for a in received if a is not None] == [bytes([n]) for n in range(6)]


class HalfPipe:
    """A socket whose buffer takes only the first ``room`` bytes of the next write."""

    def __init__(self, real: object, room: int) -> None:
        self.real, self.room = real, room

    def try_send(self, data: bytes) -> int:
        n = min(self.room, len(data))
        self.room = 0
        return self.real.try_send(data[:n])  # type: ignore[attr-defined, no-any-return]


async def test_a_message_the_socket_took_only_in_part_is_finished_by_the_writer_before_anything_else() -> None:
    async with trio.open_nursery() as nursery:
        link, heard = await _linked(nursery)
        link._pipe = HalfPipe(link._pipe, room=100)  # type: ignore[assignment]
        link.send(rt.client_append_audio(b"\x01" * 800))  # 100 bytes out, the rest left to the writer
        link.send(rt.client_append_audio(b"\x02" * 800))  # queued behind the rest
        with trio.fail_after(5):
            received = [await heard.receive() for _ in range(2)]
        nursery.cancel_scope.cancel()
    assert [base64.b64decode(a or "")[:1] for a in received] == [b"\x01", b"\x02"]

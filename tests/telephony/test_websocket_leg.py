"""The chan_websocket listener against hostile or broken peers: each gets a clear log line, never a
crash, and the listener goes on (real sockets, the real service, the simulated model and routers)."""

import logging
from dataclasses import replace

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket

from mikrovoice.config import Settings
from mikrovoice.service import ServiceStats, serve_websocket_calls, start_simulated_peers
from mikrovoice.telephony import chan_websocket as cw

START = cw.MediaStart("mikrovoice", "WebSocket/mikrovoice-0001", "1764000000.1", "slin", 320, 20)


async def serve(nursery: trio.Nursery, stats: ServiceStats) -> int:
    settings = await start_simulated_peers(nursery, replace(Settings(), websocket_listen=("127.0.0.1", 0)))
    port: int = await nursery.start(serve_websocket_calls, settings, stats)
    return port


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(name)]


async def test_hostile_peers_get_a_log_line_and_never_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    stats = ServiceStats()
    with caplog.at_level(logging.INFO):
        async with trio.open_nursery() as nursery:
            port = await serve(nursery, stats)

            # 1. Another subprotocol: refused at the handshake.
            with pytest.raises(HandshakeError):
                async with open_websocket("127.0.0.1", port, "/media", use_ssl=False, subprotocols=["other"]):
                    pass
            # 2. Garbage, then binary, then never a MEDIA_START: no call after 5 s.
            async with open_websocket("127.0.0.1", port, "/media", use_ssl=False, subprotocols=["media"]) as ws:
                await ws.send_message("{not json")
                await ws.send_message("MEDIA_START")  # no fields
                await ws.send_message(bytes(320))
                with trio.move_on_after(7), pytest.raises(ConnectionClosed):
                    await ws.get_message()  # the service closes when it gives up
            # 3. A call that starts, then sends a message larger than Asterisk ever could, and garbage text.
            async with open_websocket("127.0.0.1", port, "/media", use_ssl=False, subprotocols=["media"]) as ws:
                await ws.send_message(cw.encode_event(START, "plain-text"))
                await ws.send_message("\x00\x01 garbage")
                await ws.send_message(bytes(321))  # an odd length
                with trio.move_on_after(3), pytest.raises(ConnectionClosed):
                    await ws.send_message(bytes(70000))
                    while True:
                        await ws.get_message()
            # 4. The listener still takes a normal call, an A-law one.
            alaw = replace(START, channel_id="1764000000.2", format="alaw", optimal_frame_size=160)
            async with open_websocket("127.0.0.1", port, "/media", use_ssl=False, subprotocols=["media"]) as ws:
                await ws.send_message(cw.encode_event(alaw, "json"))
                got: list[bytes] = []
                with trio.move_on_after(3):
                    while not got:
                        message = await ws.get_message()
                        if isinstance(message, bytes):
                            got.append(message)
                assert got and len(got[0]) == 5 * 160  # the greeting, 100 ms per message, in A-law
            with trio.move_on_after(5):
                for record in list(stats.calls):
                    await record.finished.wait()
            nursery.cancel_scope.cancel()
    assert not events(caplog, "call.crashed")
    assert events(caplog, "call.websocket_refused")
    assert events(caplog, "call.websocket_garbage")
    assert events(caplog, "call.no_media_start")
    ended = [call.end_reason for call in stats.calls]
    assert len(ended) == 3 and all(reason for reason in ended), ended

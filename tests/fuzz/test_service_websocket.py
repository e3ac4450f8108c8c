"""The chan_websocket listener while hostile clients connect beside a good call (real TCP, virtual clock).

Bad clients: TCP bytes that are no WebSocket upgrade; an upgrade without the ``media``
subprotocol; a proper upgrade followed by hypothesis-generated TEXT (garbage, mutated events of
both control formats, sometimes a valid MEDIA_START among them) and BINARY messages, ended by a
close frame, a bare TCP close, a reset, or silence. ``parse_event`` itself predicts what the
service must log: one ``call.websocket_garbage`` per message it refuses, under the call id once
MEDIA_START gave one, and one clear line for a connection that never became a call.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

import pytest
import trio
from hypothesis import example, given
from hypothesis import strategies as st
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, wrap_client_stream

from mikrovoice.config import Settings
from mikrovoice.service import ServiceStats, serve_websocket_calls
from mikrovoice.sim.asterisk import Line
from mikrovoice.telephony import chan_websocket as cw
from mikrovoice.telephony.websocket_leg import MEDIA_START_TIMEOUT_S, SUPPORTED_FORMATS
from tests.fuzz.harness import (
    LogCheck,
    good_call_beside_bad_clients,
    read_until_closed,
    reset,
    run_virtual,
    start_capture,
)
from tests.fuzz.hostile import socket_settings
from tests.fuzz.test_decoders_chan_websocket import HOSTILE_EVENTS

SILENT_WAIT_S = MEDIA_START_TIMEOUT_S + 3.0
WS_LINE = Line(transport="websocket")


def _start(index: int, fmt: cw.Format, media: str = "slin") -> str:
    start = cw.MediaStart("bad", f"WebSocket/bad-{index}", f"1700000000.{index}", media, 320, 20)
    return cw.encode_event(start, fmt)


def _sendable(text: str) -> bool:
    try:
        return len(text.encode("utf-8")) < 60_000  # one WebSocket TEXT message the service accepts
    except UnicodeEncodeError:
        return False  # a lone surrogate: no WebSocket can carry it


@dataclass(frozen=True)
class BadWsClient:
    kind: str  # "raw": bytes that are no upgrade; "refused": no 'media' subprotocol; "media": a proper upgrade
    raw: bytes = b""
    #: TEXT (str) and BINARY (bytes) messages after the upgrade; ("start", fmt, format) is a MEDIA_START
    messages: tuple[str | bytes | tuple[str, str, str], ...] = ()
    ending: str = "close"  # "close" (close frame), "drop" (TCP close), "reset" (RST), "silence"
    delay_s: float = 0.0


_messages = st.lists(
    HOSTILE_EVENTS.filter(_sendable)
    | st.binary(max_size=1200)
    | st.tuples(st.just("start"), st.sampled_from(["plain-text", "json"]),
                st.sampled_from(["slin", "ulaw", "alaw", "slin16", "opus", "g729"])),
    max_size=6,
).map(tuple)
#: Raw bytes ("raw") are left out: service.handle_websocket awaits wrap_server_stream() without a
#: deadline, and trio-websocket never returns from it when the upgrade fails or never comes: no log
#: line, and the handler task (with the socket, for a request begun) is held forever. Pinned by
#: test_a_client_that_never_finishes_its_upgrade_is_dropped below.
bad_ws_clients = st.one_of(
    st.builds(BadWsClient, kind=st.just("refused"), delay_s=st.floats(0, 4)),
    st.builds(BadWsClient, kind=st.just("media"), messages=_messages,
              ending=st.sampled_from(["close", "drop", "reset", "silence"]), delay_s=st.floats(0, 4)),
)


def expected(bad: BadWsClient, index: int) -> tuple[Counter[tuple[str, str]], str | None]:
    """({(log line, call id): count} the service must write for ``bad``, its call id if it became a call)."""
    lines: Counter[tuple[str, str]] = Counter()
    if bad.kind == "raw":
        lines["call.websocket_handshake_failed", "-"] += 1
        return lines, None
    if bad.kind == "refused":
        lines["call.websocket_refused", "-"] += 1
        return lines, None
    call_id: str | None = None
    for message in bad.messages:
        if isinstance(message, bytes):
            continue
        text = _start(index, message[1], message[2]) if isinstance(message, tuple) else message  # type: ignore[arg-type]
        try:
            event = cw.parse_event(text)
        except cw.ChanWebsocketProtocolError:
            lines["call.websocket_garbage", call_id or "-"] += 1
            continue
        if call_id is not None:
            continue
        if isinstance(event, cw.MediaStart):
            if event.format not in SUPPORTED_FORMATS:
                lines["call.websocket_format", "-"] += 1
                return lines, None  # no call: the connection is closed, the rest never read
            call_id = event.channel_id or event.connection_id
    if call_id is None:
        lines["call.no_media_start", "-"] += 1
    return lines, call_id


async def bad_client(port: int, index: int, bad: BadWsClient, closed_by_server: dict[int, bool]) -> None:
    await trio.sleep(bad.delay_s)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        if bad.kind == "raw":
            await raw_client(stream, index, bad, closed_by_server)
        else:
            await websocket_client(stream, index, bad, closed_by_server)
    finally:
        await trio.aclose_forcefully(stream)


async def raw_client(stream: trio.SocketStream, index: int, bad: BadWsClient, closed_by_server: dict[int, bool]) -> None:
    try:
        await stream.send_all(bad.raw)
        await trio.sleep(0.05)
        if bad.ending == "reset":
            await reset(stream)
        else:
            await stream.send_eof()
            closed_by_server[index] = await read_until_closed(stream, SILENT_WAIT_S)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        closed_by_server[index] = True  # the server closed while we were still writing


async def websocket_client(stream: trio.SocketStream, index: int, bad: BadWsClient,
                           closed_by_server: dict[int, bool]) -> None:
    subprotocols = ["other"] if bad.kind == "refused" else [cw.SUBPROTOCOL]
    try:
        async with trio.open_nursery() as nursery:  # trio-websocket's reader task lives here
            ws = await wrap_client_stream(nursery, stream, "127.0.0.1", "/media",
                                          subprotocols=subprotocols)
            await talk(ws, stream, index, bad, closed_by_server)
            nursery.cancel_scope.cancel()
    except* HandshakeError:
        pass  # refused: what a client without the 'media' subprotocol gets
    except* (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionClosed):
        closed_by_server[index] = True  # the server closed while we were still talking


async def talk(ws: WebSocketConnection, stream: trio.SocketStream, index: int, bad: BadWsClient,
               closed_by_server: dict[int, bool]) -> None:
    for message in bad.messages:
        if isinstance(message, tuple):
            message = _start(index, message[1], message[2])  # type: ignore[arg-type]
        await ws.send_message(message)
    await trio.sleep(0.05)  # the server has read what was sent: only the end is abrupt
    if bad.ending == "close":
        await ws.aclose(1000)
    elif bad.ending == "drop":
        await trio.aclose_forcefully(stream)
    elif bad.ending == "reset":
        await reset(stream)
    else:  # silence: keep reading (the call plays to us) until the server closes, or hang up
        with trio.move_on_after(SILENT_WAIT_S):
            try:
                while True:
                    await ws.get_message()
            except ConnectionClosed:
                closed_by_server[index] = True


def check_example(bads: list[BadWsClient], caplog: pytest.LogCaptureFixture) -> None:
    settings = replace(Settings(), listen=("127.0.0.1", 0), websocket_listen=("127.0.0.1", 0))
    run = good_call_beside_bad_clients(caplog, serve_websocket_calls, settings, WS_LINE, bads, bad_client)
    logs, closed_by_server = run.logs, run.closed_by_server
    want: Counter[tuple[str, str]] = Counter()
    for index, bad in enumerate(bads):
        lines, call_id = expected(bad, index)
        want += lines
        if bad.ending == "silence" and call_id is None and bad.kind == "media":
            assert closed_by_server.get(index), f"the server kept a connection without a call open: {bad}"
    got = Counter((name, str(getattr(r, "call_id", "-"))) for r in logs.records
                  if (name := r.getMessage().split(" ", 1)[0]) in {n for n, _ in want} | {
                      "call.websocket_handshake_failed", "call.websocket_refused", "call.no_media_start",
                      "call.websocket_format", "call.websocket_garbage", "call.bad_peer"})
    assert got == want


@socket_settings(10)
@given(bads=st.lists(bad_ws_clients, min_size=1, max_size=3))
@example(bads=[BadWsClient("media", messages=(), ending="silence")])  # upgrade, then nothing: 5 s
@example(bads=[BadWsClient("media", messages=(("start", "json", "opus"),), ending="close")])  # a format we cannot carry
@example(bads=[BadWsClient("media", messages=("{not json", ("start", "plain-text", "slin"), "MEDIA_START", b"\x01"),
                           ending="reset", delay_s=1.0)])  # garbage before and after the start, then a reset
@example(bads=[BadWsClient("media", messages=("STATUS channel_id:x queue_length:" + "9" * 5000,
                                              ("start", "plain-text", "slin")), ending="drop")])  # was a ValueError
@example(bads=[BadWsClient("refused"), BadWsClient("media", messages=(b"\x00" * 70_000,), ending="silence")])
def test_hostile_websocket_clients_never_disturb_a_good_call(
    bads: list[BadWsClient], caplog: pytest.LogCaptureFixture
) -> None:
    check_example(bads, caplog)


@pytest.mark.parametrize("raw", [
    b"G",  # an upgrade begun and never finished
    b"GET /media HTTP/1.1\r\nHost: x\r\n",  # the same, headers without their blank line
    b"\x00garbage\r\n\r\n",  # not HTTP: trio-websocket answers 400 and closes, and never returns
    b"GET / HTTP/1.1\r\n\r\n",  # HTTP, not an upgrade: the same (service.HANDSHAKE_TIMEOUT_S bounds both)
], ids=["begun", "no-blank-line", "not-http", "not-an-upgrade"])
@pytest.mark.parametrize("eof", [False, True], ids=["open", "eof"])
def test_a_client_that_never_finishes_its_upgrade_is_dropped(
    raw: bytes, eof: bool, caplog: pytest.LogCaptureFixture
) -> None:
    start_capture(caplog)
    closed: list[bool] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            settings = replace(Settings(), listen=("127.0.0.1", 0), websocket_listen=("127.0.0.1", 0))
            port = await nursery.start(serve_websocket_calls, settings, ServiceStats())
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(raw)
            if eof:
                await stream.send_eof()
            closed.append(await read_until_closed(stream, 60.0))
            await trio.sleep(10.0)  # the handler's line may come after the close (a deadline)
            await trio.aclose_forcefully(stream)
            nursery.cancel_scope.cancel()

    run_virtual(main)
    assert closed == [True], "the connection was never closed"
    assert LogCheck(list(caplog.records)).clear_lines("-") == {"call.websocket_handshake_failed": 1}

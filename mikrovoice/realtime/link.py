"""The model link: one WebSocket to an OpenAI Realtime endpoint, moved by three Trio tasks.

- the *reader* always drains ``get_message()`` (never blocked by tools: they run in their own
  tasks), parses each message and hands the typed event to the call through a channel;
- the *writer* sends what the call queued, in order (``session.update`` first);
- the *pinger* sends a WebSocket ping every ``ping_interval_s`` and declares the link dead when
  the pong misses its deadline (trio-websocket's ``ping()`` itself would wait forever).
``run()`` returns a ``LinkClosed`` describing why the link ended; it never raises for the peer's
misbehaviour. The same code talks to OpenAI or to ``mikrovoice.sim.realtime``: only the URL and
key differ. The key goes in the Authorization header and nowhere else (never logged).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, connect_websocket_url

from mikrovoice.logs import event
from mikrovoice.realtime.protocol import (
    JSON,
    RealtimeProtocolError,
    ServerEvent,
    encode_client_event,
    parse_server_event,
)

log = logging.getLogger("mikrovoice.realtime")

#: Realtime events can be large (session.updated echoes instructions and tools).
MAX_MESSAGE = 16 * 1024 * 1024


@dataclass(frozen=True)
class LinkClosed:
    reason: str
    by_us: bool  # we closed it (the call ended), as opposed to a drop


class RealtimeLink:
    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        ping_interval_s: float = 15.0,
        pong_timeout_s: float = 10.0,
        connect_timeout_s: float = 10.0,
        outgoing_capacity: int = 1000,
    ) -> None:
        self.url = url
        self._api_key = api_key
        self.ping_interval_s = ping_interval_s
        self.pong_timeout_s = pong_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._out_send, self._out_recv = trio.open_memory_channel[str](outgoing_capacity)
        self.dropped_audio = 0
        self._serve_scope: trio.CancelScope | None = None
        self._finished = trio.Event()

    async def aclose(self) -> None:
        """Close the link gracefully (WebSocket close handshake) and wait until it is closed."""
        if self._serve_scope is not None:
            self._serve_scope.cancel()
        await self._finished.wait()

    def send(self, client_event: JSON) -> None:
        """Queue one client event; never blocks. Audio is dropped (and counted) if the link stalls."""
        try:
            self._out_send.send_nowait(encode_client_event(client_event))
        except trio.WouldBlock:
            if client_event["type"] == "input_audio_buffer.append":
                self.dropped_audio += 1
                return
            raise

    async def run(
        self,
        events: trio.MemorySendChannel[ServerEvent],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> LinkClosed:
        try:
            return await self._run(events, task_status)
        finally:
            self._finished.set()

    async def _run(self, events: trio.MemorySendChannel[ServerEvent], task_status: trio.TaskStatus[None]) -> LinkClosed:
        headers = [(b"Authorization", f"Bearer {self._api_key}".encode())]
        closed: LinkClosed | None = None
        async with trio.open_nursery() as nursery:
            ws: WebSocketConnection | None = None
            # trio-websocket's connect_timeout does not bound a stalled handshake
            # (research/stack-probe.md section 3, trap 1): bound it ourselves.
            with trio.move_on_after(self.connect_timeout_s):
                try:
                    ws = await connect_websocket_url(
                        nursery, self.url, extra_headers=headers, message_queue_size=64, max_message_size=MAX_MESSAGE
                    )
                except (HandshakeError, OSError) as exc:
                    closed = LinkClosed(f"cannot connect to {self._redacted_url()}: {exc}", by_us=False)
            if ws is None:
                nursery.cancel_scope.cancel()
                return closed or LinkClosed(f"no WebSocket handshake within {self.connect_timeout_s:g} s", by_us=False)
            event(log, "model.connected", url=self._redacted_url())
            task_status.started()
            try:
                closed = await self._serve(ws, events)
            finally:
                # A dead peer will not answer a close handshake: do not wait for one.
                dead = closed is not None and not closed.by_us
                with trio.CancelScope(shield=True), trio.move_on_after(0 if dead else 2):
                    await _close(ws)
                nursery.cancel_scope.cancel()
        assert closed is not None
        return closed

    def _redacted_url(self) -> str:
        return self.url.split("?", 1)[0]

    async def _serve(self, ws: WebSocketConnection, events: trio.MemorySendChannel[ServerEvent]) -> LinkClosed:
        outcome: list[LinkClosed] = []

        async def reader() -> None:
            while True:
                try:
                    message = await ws.get_message()
                except ConnectionClosed as exc:
                    outcome.append(LinkClosed(f"closed by the server: {exc.reason}", by_us=False))
                    return
                try:
                    parsed = parse_server_event(message)
                except RealtimeProtocolError as exc:
                    event(log, "model.bad_event", level=logging.WARNING, error=str(exc))
                    continue
                await events.send(parsed)

        async def writer() -> None:
            async for text in self._out_recv:
                try:
                    await ws.send_message(text)
                except ConnectionClosed as exc:
                    outcome.append(LinkClosed(f"closed while sending: {exc.reason}", by_us=False))
                    return

        async def pinger() -> None:
            while True:
                await trio.sleep(self.ping_interval_s)
                try:
                    with trio.fail_after(self.pong_timeout_s):
                        await ws.ping()
                except trio.TooSlowError:
                    outcome.append(LinkClosed(f"no pong within {self.pong_timeout_s:g} s: link dead", by_us=False))
                    return
                except ConnectionClosed as exc:
                    outcome.append(LinkClosed(f"closed: {exc.reason}", by_us=False))
                    return

        async with trio.open_nursery() as nursery:
            self._serve_scope = nursery.cancel_scope
            for task in (reader, writer, pinger):
                nursery.start_soon(_first_to_finish_cancels, task, nursery.cancel_scope)
        return outcome[0] if outcome else LinkClosed("closed by us", by_us=True)


async def _close(ws: WebSocketConnection) -> None:
    """Close handshake; keep draining messages meanwhile, or a full message queue would block the
    library's reader and the peer's close frame would never be read."""

    async def drain() -> None:
        try:
            while True:
                await ws.get_message()
        except ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        await ws.aclose()
        nursery.cancel_scope.cancel()


async def _first_to_finish_cancels(task: Callable[[], Awaitable[None]], scope: trio.CancelScope) -> None:
    await task()
    scope.cancel()

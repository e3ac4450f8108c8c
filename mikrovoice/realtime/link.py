"""The model link: one WebSocket to an OpenAI Realtime endpoint, moved by three Trio tasks.

- the *reader* always drains ``get_message()`` (never blocked by tools: they run in their own
  tasks), parses each message and hands the typed event to the call through a channel;
- the *writer* sends what the call queued, in order (``session.update`` first). Backpressure is
  explicit: ``send()`` never blocks and never fails; control events are never dropped; caller
  audio that waited longer than ``max_audio_lag_s`` for a slow link is dropped when its turn
  comes (counted in ``dropped_audio``): the model must hear the caller now, not twenty seconds ago;
- the *pinger* sends a WebSocket ping every ``ping_interval_s`` and declares the link dead when
  the pong misses its deadline (trio-websocket's ``ping()`` itself would wait forever). While the
  call is ``watching`` the link (a query runs, or we wait for the model to speak), it also probes:
  after ``liveness_s`` without a single byte from the server it pings with a ``probe_timeout_s``
  deadline, so a server that went silent is found within two seconds, not twenty-five.
``run()`` returns a ``LinkClosed`` describing why the link ended; it never raises for the peer's
misbehaviour. The same code talks to OpenAI or to ``mikrovoice.sim.realtime``: only the URL and
key differ. The key goes in the Authorization header and nowhere else (never logged).
"""

from __future__ import annotations

import json
import logging
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from mikrovoice.logs import event
from mikrovoice.net import Dialer, open_tcp
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


#: Handshake refusals a reconnect cannot cure: bad request, key, billing, region, model access.
FATAL_HANDSHAKE_STATUSES = frozenset({400, 401, 402, 403, 404})


@dataclass(frozen=True)
class LinkClosed:
    reason: str
    by_us: bool  # we closed it (the call ended), as opposed to a drop
    fatal: bool = False  # reconnecting cannot help (e.g. HTTP 401 invalid_api_key)


class RealtimeLink:
    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        ping_interval_s: float = 15.0,
        pong_timeout_s: float = 10.0,
        connect_timeout_s: float = 10.0,
        max_audio_lag_s: float = 1.0,
        dial: Dialer = open_tcp,
        ssl_context: ssl.SSLContext | None = None,
        liveness_s: float = 1.0,
        probe_timeout_s: float = 1.0,
    ) -> None:
        self.url = url
        self._dial = dial
        self._ssl_context = ssl_context
        self._api_key = api_key
        self.ping_interval_s = ping_interval_s
        self.pong_timeout_s = pong_timeout_s
        self.liveness_s = liveness_s
        self.probe_timeout_s = probe_timeout_s
        self._watching = False
        self._watch_changed = trio.Event()
        self._last_heard = 0.0
        self._connected = False
        self.connect_timeout_s = connect_timeout_s
        self.max_audio_lag_s = max_audio_lag_s
        #: (queued at, for audio; None for control events, which are never dropped), JSON text
        self._outbox: deque[tuple[float | None, str]] = deque()
        self._outbox_ready = trio.Event()
        self.dropped_audio = 0
        self.sent_events = 0
        self._serve_scope: trio.CancelScope | None = None
        self._finished = trio.Event()

    async def aclose(self) -> None:
        """Close the link gracefully (WebSocket close handshake) and wait until it is closed."""
        if self._serve_scope is not None:
            self._serve_scope.cancel()
        await self._finished.wait()

    @property
    def watching(self) -> bool:
        return self._watching

    @watching.setter
    def watching(self, watching: bool) -> None:
        if watching != self._watching:
            self._watching = watching
            self._watch_changed.set()
            self._watch_changed = trio.Event()

    def send(self, client_event: JSON) -> None:
        """Queue one client event; never blocks, never fails. Stale audio is dropped at send time."""
        audio = client_event["type"] == "input_audio_buffer.append"
        self._outbox.append((trio.current_time() if audio else None, encode_client_event(client_event)))
        self._outbox_ready.set()

    @property
    def last_heard(self) -> float | None:
        """When the server last sent us anything (a message or a pong); None: never connected."""
        return self._last_heard if self._connected else None

    @property
    def queued(self) -> int:
        return len(self._outbox)

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
        closed: LinkClosed | None = None
        streams: list[trio.abc.Stream] = []
        try:
            async with trio.open_nursery() as nursery:
                ws: WebSocketConnection | None = None
                # trio-websocket's connect_timeout does not bound a stalled handshake
                # (research/stack-probe.md section 3, trap 1): bound it ourselves.
                with trio.move_on_after(self.connect_timeout_s):
                    try:
                        ws = await self._connect(nursery, streams)
                    except OSError as exc:
                        closed = LinkClosed(f"cannot connect to {self._redacted_url()}: {exc.strerror or exc}", by_us=False)
                if ws is None:
                    nursery.cancel_scope.cancel()
                    return closed or LinkClosed(f"no WebSocket handshake within {self.connect_timeout_s:g} s", by_us=False)
                event(log, "model.connected", url=self._redacted_url())
                self._connected = True
                self._last_heard = trio.current_time()
                task_status.started()
                try:
                    closed = await self._serve(ws, events)
                finally:
                    # A dead peer will not answer a close handshake: do not wait for one.
                    dead = closed is not None and not closed.by_us
                    with trio.CancelScope(shield=True), trio.move_on_after(0 if dead else 2):
                        await _close(ws)
                    nursery.cancel_scope.cancel()
        except* ConnectionRejected as group:
            rejected = _first(group)
            assert isinstance(rejected, ConnectionRejected)
            closed = LinkClosed(_rejection(self._redacted_url(), rejected), by_us=False,
                                fatal=rejected.status_code in FATAL_HANDSHAKE_STATUSES)
        except* HandshakeError as group:
            closed = LinkClosed(f"WebSocket handshake with {self._redacted_url()} failed: {_first(group)!r}", by_us=False)
        except* (LocalProtocolError, RemoteProtocolError, trio.BrokenResourceError, trio.ClosedResourceError) as group:
            # trio-websocket's own reader can fail on a peer that misbehaves while we close (e.g. a
            # ping in LOCAL_CLOSING: "Pong cannot be sent"): the link is over, not the call.
            if closed is None or closed.by_us:
                closed = LinkClosed(f"WebSocket protocol failure: {_first(group)!r}", by_us=closed is not None)
        finally:
            # The library leaves the stream open when the handshake fails or times out.
            with trio.CancelScope(shield=True):
                for stream in streams:
                    await trio.aclose_forcefully(stream)
        assert closed is not None
        return closed

    async def _connect(self, nursery: trio.Nursery, streams: list[trio.abc.Stream]) -> WebSocketConnection:
        """TCP (through the dialer), TLS for ``wss``, then the HTTP upgrade with our Authorization header."""
        parts = urlsplit(self.url)
        secure = parts.scheme == "wss"
        host = parts.hostname or "localhost"
        port = parts.port or (443 if secure else 80)
        stream = await self._dial(host, port)
        streams.append(stream)
        if secure:
            context = self._ssl_context or ssl.create_default_context()
            stream = trio.SSLStream(stream, context, server_hostname=host, https_compatible=True)
            streams.append(stream)
        host_header = host if port in (80, 443) else f"{host}:{port}"
        resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = [(b"Authorization", f"Bearer {self._api_key}".encode())]
        return await wrap_client_stream(
            nursery, stream, host_header, resource,  # type: ignore[arg-type]  # any trio Stream works
            extra_headers=headers, message_queue_size=64, max_message_size=MAX_MESSAGE,
        )

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
                self._last_heard = trio.current_time()
                try:
                    parsed = parse_server_event(message)
                except RealtimeProtocolError as exc:
                    event(log, "model.bad_event", level=logging.WARNING, error=str(exc))
                    continue
                await events.send(parsed)

        async def writer() -> None:
            while True:
                while not self._outbox:
                    self._outbox_ready = trio.Event()
                    await self._outbox_ready.wait()
                queued_at, text = self._outbox.popleft()
                if queued_at is not None and trio.current_time() - queued_at > self.max_audio_lag_s:
                    self.dropped_audio += 1
                    continue
                try:
                    await ws.send_message(text)
                except ConnectionClosed as exc:
                    outcome.append(LinkClosed(f"closed while sending: {exc.reason}", by_us=False))
                    return
                self.sent_events += 1

        async def pinger() -> None:
            self._last_heard = next_ping = trio.current_time()
            next_ping += self.ping_interval_s
            while True:
                due = min(next_ping, self._last_heard + self.liveness_s) if self._watching else next_ping
                with trio.move_on_at(due):
                    await self._watch_changed.wait()
                now = trio.current_time()
                regular = now >= next_ping
                if not regular and not (self._watching and now >= self._last_heard + self.liveness_s):
                    continue  # woken early: something changed, or the server spoke meanwhile
                timeout = min(self.probe_timeout_s, self.pong_timeout_s) if self._watching else self.pong_timeout_s
                try:
                    with trio.fail_after(timeout):
                        await ws.ping()
                except trio.TooSlowError:
                    outcome.append(LinkClosed(f"no pong within {timeout:g} s: link dead", by_us=False))
                    return
                except ConnectionClosed as exc:
                    outcome.append(LinkClosed(f"closed: {exc.reason}", by_us=False))
                    return
                self._last_heard = trio.current_time()
                if regular:
                    next_ping = self._last_heard + self.ping_interval_s

        async with trio.open_nursery() as nursery:
            self._serve_scope = nursery.cancel_scope
            for task in (reader, writer, pinger):
                nursery.start_soon(_first_to_finish_cancels, task, nursery.cancel_scope)
        return outcome[0] if outcome else LinkClosed("closed by us", by_us=True)


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first exception of a (possibly nested) group."""
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


def _rejection(url: str, exc: ConnectionRejected) -> str:
    """One line: the HTTP status and, when the body is OpenAI's JSON error, its code and message."""
    text = f"{url} refused the WebSocket handshake: HTTP {exc.status_code}"
    try:
        error = json.loads(exc.body or b"{}").get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    if isinstance(error, dict):
        code = error.get("code") or error.get("type")
        if code:
            text += f" {code}"
        if error.get("message"):
            text += f": {str(error['message'])[:160]}"
    return text


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

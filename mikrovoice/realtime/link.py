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
from wsproto.events import TextMessage
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from mikrovoice.logs import event
from mikrovoice.net import Dialer, RawPipe, open_tcp, raw_pipe
from mikrovoice.realtime.protocol import (
    JSON,
    AudioDelta,
    FunctionCall,
    InputTranscript,
    ItemAdded,
    RealtimeProtocolError,
    ResponseCreated,
    ResponseDone,
    ServerError,
    ServerEvent,
    SessionCreated,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    TranscriptDelta,
    TranscriptDone,
    Unrecognised,
    encode_client_event,
    parse_server_event,
)
from mikrovoice.timings import ADDED_IN

log = logging.getLogger("mikrovoice.realtime")

#: Realtime events can be large (session.updated echoes instructions and tools).
MAX_MESSAGE = 16 * 1024 * 1024


#: Debug: caller audio appends are summarised once per this many sent (100 ms each: every 5 s).
AUDIO_SENT_LOG_EVERY = 50

#: Debug: the wire type of each parsed server event (``Unrecognised`` carries its own).
_WIRE_TYPES: dict[type, str] = {
    SessionCreated: "session.created",
    SessionUpdated: "session.updated",
    ResponseCreated: "response.created",
    ResponseDone: "response.done",
    AudioDelta: "response.output_audio.delta",
    TranscriptDelta: "response.output_audio_transcript.delta",
    TranscriptDone: "response.output_audio_transcript.done",
    FunctionCall: "response.output_item.done",
    ItemAdded: "conversation.item.added",
    SpeechStarted: "input_audio_buffer.speech_started",
    SpeechStopped: "input_audio_buffer.speech_stopped",
    InputTranscript: "conversation.item.input_audio_transcription.completed",
    ServerError: "error",
}


def _received_fields(parsed: ServerEvent) -> dict[str, object]:
    """Debug detail of one server event: identifiers and states, never audio, text or arguments."""
    if isinstance(parsed, Unrecognised):
        return {"type": parsed.type}
    fields: dict[str, object] = {"type": _WIRE_TYPES.get(type(parsed), type(parsed).__name__)}
    if isinstance(parsed, ResponseCreated):
        fields["response_id"] = parsed.response_id
    elif isinstance(parsed, FunctionCall):
        fields.update(response_id=parsed.response_id, call_id=parsed.call_id, tool=parsed.name)
    elif isinstance(parsed, ItemAdded):
        fields.update(item_id=parsed.item_id, item_type=parsed.item_type)
    elif isinstance(parsed, (SpeechStarted, SpeechStopped)):
        fields["item_id"] = parsed.item_id
    elif isinstance(parsed, ServerError):
        fields.update(code=parsed.code, event_id=parsed.event_id or "-")
    elif isinstance(parsed, TranscriptDone):
        fields.update(response_id=parsed.response_id, item_id=parsed.item_id)
    return fields


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
        #: (queued at, for audio; None for control events, which are never dropped), type, JSON text
        self._outbox: deque[tuple[float | None, str, str, float | None]] = deque()
        #: When each ``AudioDelta`` passed on was read, in order: the session takes them in the same
        #: order (the ADDED_OUT timing starts there).
        self.audio_received_at: deque[float] = deque()
        self._outbox_ready = trio.Event()
        self.dropped_audio = 0
        self.sent_events = 0
        self._serve_scope: trio.CancelScope | None = None
        self._finished = trio.Event()
        #: While connected over plain TCP: the connection and its socket, for ``_send_now``.
        self._ws: WebSocketConnection | None = None
        self._pipe: RawPipe | None = None
        self._unsent = b""  # the rest of a frame ``_send_now`` began: the writer sends it first

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

    def send(self, client_event: JSON, read_at: float | None = None) -> None:
        """Queue one client event; never blocks, never fails. Stale audio is dropped at send time.
        ``read_at``: an append's audio was read off the caller's connection then (ADDED_IN)."""
        kind = str(client_event["type"])
        audio = kind == "input_audio_buffer.append"
        text = encode_client_event(client_event)
        if audio and self._send_now(text):
            self.sent_events += 1
            if read_at is not None:
                ADDED_IN.observe(trio.current_time() - read_at)
            return
        self._outbox.append((trio.current_time() if audio else None, kind, text, read_at))
        self._outbox_ready.set()

    def _send_now(self, text: str) -> bool:
        """Write one message at once, from the caller's task, when nothing else is being written:
        caller audio goes out ten times a second per call, and handing each to the writer task
        cost three task switches (its wake-up, trio-websocket's lock and its ``send_all``). Only
        over plain TCP; the frame is trio-websocket's own (``_wsproto``), written under the same
        rule its lock enforces (nobody else mid-write). False: queue it for the writer."""
        ws, pipe = self._ws, self._pipe
        if ws is None or pipe is None or self._outbox or self._unsent:
            return False
        lock, wsproto = getattr(ws, "_stream_lock", None), getattr(ws, "_wsproto", None)
        if lock is None or wsproto is None or lock.locked() or ws.closed is not None:
            return False  # (a trio-websocket without these internals: the writer's way, always)
        data = wsproto.send(TextMessage(data=text))
        try:
            written = pipe.try_send(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return True  # the connection is gone; the reader is about to say so
        if written < len(data):
            self._unsent = data[written:]
            self._outbox_ready.set()
        return True

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
        event(log, "model.dialing", level=logging.DEBUG, host=host, port=port, tls=secure)
        began = trio.current_time()
        stream = await self._dial(host, port)
        streams.append(stream)
        tcp_s = trio.current_time() - began
        if secure:
            context = self._ssl_context or ssl.create_default_context()
            stream = trio.SSLStream(stream, context, server_hostname=host, https_compatible=True)
            streams.append(stream)
        else:
            self._pipe = raw_pipe(stream)  # plain TCP: caller audio may be written at once (_send_now)
        host_header = host if port in (80, 443) else f"{host}:{port}"
        resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = [(b"Authorization", f"Bearer {self._api_key}".encode())]
        ws = await wrap_client_stream(
            nursery, stream, host_header, resource,  # type: ignore[arg-type]  # any trio Stream works
            extra_headers=headers, message_queue_size=64, max_message_size=MAX_MESSAGE,
        )
        # handshake: TLS (wss) and the HTTP upgrade. The key is in the header only, never in a log line.
        event(log, "model.connect_timing", level=logging.DEBUG, tcp_ms=round(tcp_s * 1000, 1),
              handshake_ms=round((trio.current_time() - began - tcp_s) * 1000, 1), tls=secure)
        return ws

    def _redacted_url(self) -> str:
        return self.url.split("?", 1)[0]

    async def _serve(self, ws: WebSocketConnection, events: trio.MemorySendChannel[ServerEvent]) -> LinkClosed:
        outcome: list[LinkClosed] = []

        async def reader() -> None:
            # debug: audio and transcript deltas are counted per response, summarised at its response.done
            streamed: dict[str, list[int]] = {}  # response id -> [audio deltas, audio bytes, transcript deltas]
            debug = log.isEnabledFor(logging.DEBUG)
            while True:
                try:
                    message = await ws.get_message()
                except ConnectionClosed as exc:
                    outcome.append(LinkClosed(f"closed by the server: {exc.reason}", by_us=False))
                    return
                self._last_heard = received_at = trio.current_time()
                try:
                    parsed = parse_server_event(message)
                except RealtimeProtocolError as exc:
                    event(log, "model.bad_event", level=logging.WARNING, error=str(exc))
                    continue
                if isinstance(parsed, AudioDelta):
                    self.audio_received_at.append(received_at)
                if debug:
                    if isinstance(parsed, AudioDelta):
                        counts = streamed.setdefault(parsed.response_id, [0, 0, 0])
                        counts[0] += 1
                        counts[1] += len(parsed.audio)
                    elif isinstance(parsed, TranscriptDelta):
                        streamed.setdefault(parsed.response_id, [0, 0, 0])[2] += 1
                    elif isinstance(parsed, ResponseDone):
                        deltas, audio_bytes, transcript = streamed.pop(parsed.response_id, [0, 0, 0])
                        event(log, "model.recv", level=logging.DEBUG, type="response.done",
                              response_id=parsed.response_id, status=parsed.status, reason=parsed.reason or "-",
                              function_calls=len(parsed.function_calls), audio_deltas=deltas,
                              audio_ms=audio_bytes // 8, transcript_deltas=transcript)
                    else:
                        event(log, "model.recv", level=logging.DEBUG, **_received_fields(parsed))
                try:  # without a yield per event: the session takes all the queued ones in one wake-up
                    events.send_nowait(parsed)
                except trio.WouldBlock:
                    await events.send(parsed)

        async def writer() -> None:
            audio_sent = 0  # debug: appends sent since the last summary
            while True:
                while not self._outbox and not self._unsent:
                    self._outbox_ready = trio.Event()
                    await self._outbox_ready.wait()
                if self._unsent:  # the end of a frame _send_now began: before anything else
                    stream = getattr(ws, "_stream")  # noqa: B009  (trio-websocket's, as _send_now)
                    try:
                        async with getattr(ws, "_stream_lock"):  # noqa: B009
                            await stream.send_all(self._unsent)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        outcome.append(LinkClosed("closed while sending: the connection broke", by_us=False))
                        return
                    self._unsent = b""
                    continue
                queued_at, kind, text, read_at = self._outbox.popleft()
                if queued_at is not None and trio.current_time() - queued_at > self.max_audio_lag_s:
                    self.dropped_audio += 1
                    continue
                try:
                    await ws.send_message(text)
                except ConnectionClosed as exc:
                    outcome.append(LinkClosed(f"closed while sending: {exc.reason}", by_us=False))
                    return
                self.sent_events += 1
                if read_at is not None:
                    ADDED_IN.observe(trio.current_time() - read_at)
                if queued_at is None:
                    event(log, "model.send", level=logging.DEBUG, type=kind, bytes=len(text), queued=len(self._outbox))
                else:
                    audio_sent += 1
                    if audio_sent >= AUDIO_SENT_LOG_EVERY:
                        event(log, "model.audio_sent", level=logging.DEBUG, appends=audio_sent,
                              dropped_total=self.dropped_audio, queued=len(self._outbox))
                        audio_sent = 0

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
                pinged_at = now
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
                event(log, "model.pong", level=logging.DEBUG, rtt_ms=round((self._last_heard - pinged_at) * 1000, 1),
                      probe=not regular)
                if regular:
                    next_ping = self._last_heard + self.ping_interval_s

        self._ws = ws
        try:
            async with trio.open_nursery() as nursery:
                self._serve_scope = nursery.cancel_scope
                for task in (reader, writer, pinger):
                    nursery.start_soon(_first_to_finish_cancels, task, nursery.cancel_scope)
        finally:
            self._ws = self._pipe = None  # the close handshake is the library's
            self._unsent = b""
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

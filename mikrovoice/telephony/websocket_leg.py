"""A call's leg over Asterisk's chan_websocket: ``Dial(WebSocket/<connection>/c(slin))``.

Asterisk dials us (a websocket_client.conf entry, ``connection_type = per_call_config``,
``protocols = media``): one WebSocket per call. The protocol itself is sans-IO in
``telephony.chan_websocket``; this module moves its messages.

Inbound: ``MEDIA_START`` (plain text or JSON; its channel variables may carry the caller's
number) starts the call; audio that arrives before it (asterisk/asterisk#1712) is kept and
decoded once the format is known. BINARY messages are the caller's audio in the channel's format
(slin at any rate, resampled to 8 kHz; ulaw taken as it is; alaw decoded). ``DTMF_END`` is a digit. The close of
the WebSocket is the caller's hang-up. A garbled TEXT message is logged and skipped.

Outbound, Asterisk does the pacing: it cuts what we send into 20 ms frames, queues them (at most
1000) and plays one per tick. We send ``BATCH_FRAMES`` frames per BINARY message, each followed by
``MARK_MEDIA <n>``, and keep at most ``LEAD_FRAMES`` unplayed in Asterisk's queue (our estimate:
frames sent less frames whose mark came back), so speech that arrives after comfort audio waits
at most that long, and ``MEDIA_XOFF`` is never reached (we stop on it anyway until ``MEDIA_XON``).
What the caller heard of an item is what ``MEDIA_MARK_PROCESSED`` confirmed, never more: a barge-in
sends ``FLUSH_MEDIA`` (Asterisk drops its queue and the marks in it, CW L805-817) and truncates
each item at its confirmed length. Silence is not sent (chan_websocket has no inactivity timer).
``GET_STATUS`` every ``STATUS_EVERY_S`` while audio is queued keeps the estimate honest (logged when
Asterisk's queue is longer than we think). We hang up with ``HANGUP``.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest

from mikrovoice.logs import event
from mikrovoice.telephony import chan_websocket as cw
from mikrovoice.telephony import g711
from mikrovoice.telephony.leg import (
    WRITE_STALL_S,
    CallerAudio,
    Digit,
    LegEnded,
    LegEvent,
    LegStart,
    PeerStalled,
    normalise_digit,
)
from mikrovoice.telephony.loudness import loud_ms
from mikrovoice.telephony.resample import Resampler
from mikrovoice.telephony.server import Playout, Truncation

log = logging.getLogger("mikrovoice.call")

MEDIA_START_TIMEOUT_S = 5.0
BATCH_FRAMES = 5  # 100 ms per BINARY message and per mark: the precision of "what was heard"
LEAD_FRAMES = 15  # at most 300 ms queued in Asterisk ahead of what it has played
STATUS_EVERY_S = 10.0
#: Our hang-up waits at most this for Asterisk to play what is queued, then this for its close.
DRAIN_S = 1.0
CLOSE_S = 0.5
#: A batch whose mark has not come back this long after it should have played counts as played.
MARK_GRACE_S = 1.0
#: Variables of MEDIA_START (JSON) that may hold the caller's number, set in the dialplan before
#: Dial() as an inherited variable, e.g. ``Set(_MIKROVOICE_CALLER=${CALLERID(num)})`` (without the
#: ``_`` it stays on the caller's channel: measured on 23.4.1).
CALLER_VARIABLES = ("MIKROVOICE_CALLER", "CALLERID_NUM", "CALLERID(num)")
#: Formats we can carry: 8 kHz G.711 (mu-law, A-law) or slin at any rate Asterisk knows.
SUPPORTED_FORMATS = frozenset({"ulaw", "alaw", "slin", "slin12", "slin16", "slin24", "slin32", "slin44", "slin48",
                               "slin96", "slin192"})


@dataclass
class _Batch:
    mark: str
    items: list[tuple[str | None, int]]  # (item id or None for comfort, frames)
    due_at: float = 0.0  # when Asterisk should have played it, at real-time rate


async def accept(request: WebSocketRequest) -> WebSocketConnection | None:
    """Accept Asterisk's handshake with the ``media`` subprotocol (refuse anything else)."""
    if cw.SUBPROTOCOL not in request.proposed_subprotocols:
        event(log, "call.websocket_refused", level=logging.WARNING, path=request.path,
              offered=",".join(request.proposed_subprotocols) or "-",
              error="Asterisk offers the 'media' subprotocol: set protocols = media in websocket_client.conf")
        await request.reject(400, body=b"subprotocol 'media' required\n")
        return None
    return await request.accept(subprotocol=cw.SUBPROTOCOL)


class WebSocketLeg:
    transport = "websocket"

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.start_event: cw.MediaStart | None = None
        self.control: cw.Format = "plain-text"
        self._early: list[bytes] = []  # audio before MEDIA_START
        self._pending: deque[LegEvent] = deque()
        self._resampler_in: Resampler | None = None
        self._resampler_out: Resampler | None = None
        self._carry = b""
        self._marks = itertools.count(1)
        self._batches: deque[_Batch] = deque()
        self._in_flight = 0  # frames sent whose mark has not come back
        self._heard_ms: dict[str, int] = {}
        self._xoff = False
        self._xon = trio.Event()
        self._send_lock = trio.Lock()
        self._urgent_send, self._urgent_receive = trio.open_memory_channel[str](float("inf"))
        self._marks_missing = False
        self.flushes = 0
        self.xoffs = 0
        self.max_status_queue = 0
        self.status_queue_length: int | None = None
        self._frames_in = 0  # debug: BINARY messages received since MEDIA_START
        self._batches_out = 0  # debug: BINARY messages sent

    # ------------------------------------------------------------------ inbound

    async def start(self) -> LegStart | None:
        with trio.move_on_after(MEDIA_START_TIMEOUT_S):
            while True:
                try:
                    message = await self.ws.get_message()
                except ConnectionClosed:
                    event(log, "call.no_media_start", level=logging.WARNING, error="closed before MEDIA_START")
                    return None
                if isinstance(message, bytes):
                    self._early.append(message)  # asterisk/asterisk#1712: audio before MEDIA_START
                    continue
                try:
                    parsed = cw.parse_event(message)
                except cw.ChanWebsocketProtocolError as exc:
                    event(log, "call.websocket_garbage", level=logging.WARNING, error=str(exc))
                    continue
                if isinstance(parsed, cw.MediaStart):
                    return self._started(parsed, json=message.lstrip().startswith("{"))
                event(log, "call.websocket_before_start", level=logging.WARNING, event=type(parsed).__name__)
        event(log, "call.no_media_start", level=logging.WARNING, error=f"no MEDIA_START within {MEDIA_START_TIMEOUT_S:g} s")
        return None

    def _started(self, start: cw.MediaStart, *, json: bool) -> LegStart | None:
        self.start_event = start
        self.control = "json" if json else "plain-text"
        # variable names only: their values may hold the caller's number
        event(log, "call.websocket_media_start", level=logging.DEBUG, format=start.format, control=self.control,
              optimal_frame_size=start.optimal_frame_size, ptime=start.ptime,
              variables=",".join(sorted(start.channel_variables)) or "-", early_frames=len(self._early))
        if start.format not in SUPPORTED_FORMATS:
            event(log, "call.websocket_format", level=logging.ERROR, format=start.format,
                  error="use Dial(WebSocket/<connection>/c(slin)) (or c(ulaw), c(alaw), c(slin16))")
            return None
        rate = cw.CODECS[start.format].sample_rate
        if start.format not in ("ulaw", "alaw") and rate != 8000:
            self._resampler_in = Resampler(rate, 8000)
            self._resampler_out = Resampler(8000, rate)
        for audio in self._early:
            converted = self._caller_audio(audio)
            if converted is not None:
                self._pending.append(converted)
        if self._early:
            event(log, "call.websocket_early_audio", frames=len(self._early))
        self._early.clear()
        variables = dict(start.channel_variables)
        caller = next((variables[name] for name in CALLER_VARIABLES if variables.get(name)), None)
        return LegStart(start.channel_id or start.connection_id, caller, variables)

    def _caller_audio(self, data: bytes) -> CallerAudio | None:
        assert self.start_event is not None
        if self.start_event.format == "ulaw":
            return CallerAudio(data, loud_ms(g711.ulaw_to_slin(data))) if data else None
        if self.start_event.format == "alaw":
            slin = g711.alaw_to_slin(data)
            return CallerAudio(g711.slin_to_ulaw(slin), loud_ms(slin)) if data else None
        slin = self._carry + data
        if len(slin) % 2:
            slin, self._carry = slin[:-1], slin[-1:]
        else:
            self._carry = b""
        if self._resampler_in is not None:
            slin = self._resampler_in.process(slin)
        if not slin:
            return None
        return CallerAudio(g711.slin_to_ulaw(slin), loud_ms(slin))

    async def receive(self) -> LegEvent:
        while True:
            if self._pending:
                return self._pending.popleft()
            try:
                message = await self.ws.get_message()
            except ConnectionClosed as exc:
                reason = exc.reason
                code = reason.code if reason is not None else None
                return LegEnded(f"caller hung up (WebSocket closed, code {code})")
            if isinstance(message, bytes):
                self._frames_in += 1
                if self._frames_in == 1:
                    event(log, "call.leg_first_frame", level=logging.DEBUG, transport=self.transport, bytes=len(message))
                audio = self._caller_audio(message)
                if audio is not None:
                    return audio
                continue
            leg_event = self._on_text(message)
            if leg_event is not None:
                return leg_event

    def _on_text(self, text: str) -> LegEvent | None:
        try:
            parsed = cw.parse_event(text)
        except cw.ChanWebsocketProtocolError as exc:
            event(log, "call.websocket_garbage", level=logging.WARNING, error=str(exc))
            return None
        if isinstance(parsed, cw.DtmfEnd):
            digit = normalise_digit(parsed.digit)
            if digit is None:
                event(log, "call.dtmf_unknown", level=logging.WARNING, digit=repr(parsed.digit))
                return None
            # never the digit itself: it may be part of a PIN
            event(log, "call.leg_dtmf", level=logging.DEBUG, transport=self.transport)
            return Digit(digit)
        if isinstance(parsed, cw.MediaMarkProcessed):
            self._mark_processed(parsed.correlation_id)
        elif isinstance(parsed, cw.MediaXoff):
            self._xoff = True
            self.xoffs += 1
            event(log, "call.websocket_xoff", in_flight=self._in_flight)
        elif isinstance(parsed, cw.MediaXon):
            event(log, "call.websocket_xon", level=logging.DEBUG, in_flight=self._in_flight)
            self._xoff = False
            self._xon.set()
            self._xon = trio.Event()
        elif isinstance(parsed, cw.Status):
            self.status_queue_length = parsed.queue_length
            self.max_status_queue = max(self.max_status_queue, parsed.queue_length)
            event(log, "call.websocket_status", level=logging.DEBUG, queue_length=parsed.queue_length,
                  expected=self._in_flight)
            if parsed.queue_length > self._in_flight + BATCH_FRAMES:
                event(log, "call.websocket_queue", level=logging.WARNING, asterisk=parsed.queue_length,
                      expected=self._in_flight)
        elif isinstance(parsed, cw.AsteriskError):
            event(log, "call.websocket_error", level=logging.WARNING, error=parsed.error_text.strip())
        elif isinstance(parsed, cw.MediaStart):
            event(log, "call.websocket_second_start", level=logging.WARNING)
        return None

    def _expire_unmarked(self) -> None:
        """A mark that never comes back (an Asterisk without MARK_MEDIA, before 20.18/22.8/23.2,
        or one that lost it) must not stop our audio: a batch overdue by MARK_GRACE_S counts as
        played. Logged once: the heard position is then the clock's, not Asterisk's."""
        now = trio.current_time()
        grace = 0.0 if self._marks_missing else MARK_GRACE_S  # once missing, the clock paces alone
        while self._batches and self._batches[0].due_at + grace <= now:
            if not self._marks_missing:
                self._marks_missing = True
                event(log, "call.websocket_no_marks", level=logging.WARNING, mark=self._batches[0].mark,
                      error="MEDIA_MARK_PROCESSED did not come back: pacing by the clock (Asterisk >= 20.18/22.8/23.2?)")
            self._mark_processed(self._batches[0].mark)

    def _mark_processed(self, mark: str | None) -> None:
        """Everything before the mark was played: the caller heard it."""
        if mark is None or all(batch.mark != mark for batch in self._batches):
            return  # a mark from before a flush (dropped by Asterisk) or not ours
        while self._batches:
            batch = self._batches.popleft()
            for item_id, frames in batch.items:
                self._in_flight -= frames
                if item_id is not None:
                    self._heard_ms[item_id] = self._heard_ms.get(item_id, 0) + frames * 20
            if batch.mark == mark:
                break

    # ------------------------------------------------------------------ outbound

    async def _send(self, message: str | bytes) -> None:
        async with self._send_lock:
            with trio.move_on_after(WRITE_STALL_S) as stalled:
                await self.ws.send_message(message)
            if stalled.cancelled_caught:
                raise PeerStalled(f"Asterisk read none of our messages for {WRITE_STALL_S:g} s")

    async def _command(self, command: cw.Command) -> None:
        await self._send(cw.encode_command(command, self.control))

    def _channel_audio(self, slin: bytes) -> bytes:
        assert self.start_event is not None
        if self.start_event.format == "ulaw":
            return g711.slin_to_ulaw(slin)
        if self.start_event.format == "alaw":
            return g711.slin_to_alaw(slin)
        if self._resampler_out is not None:
            return self._resampler_out.process(slin)
        return slin

    async def play(self, playout: Playout) -> None:
        """Until cancelled, or until the WebSocket closes (then return: receive() says why)."""
        async with trio.open_nursery() as nursery:

            async def until_closed(task: Callable[[], Awaitable[None]]) -> None:
                try:
                    await task()
                except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
                    nursery.cancel_scope.cancel()

            nursery.start_soon(until_closed, self._status_watch)
            nursery.start_soon(until_closed, self._send_urgent)
            nursery.start_soon(until_closed, partial(self._pump, playout))

    async def _pump(self, playout: Playout) -> None:
        while True:
            if self._xoff:
                await self._xon.wait()
                continue
            self._expire_unmarked()
            if self._in_flight < LEAD_FRAMES and playout.has_sound:
                await self._send_batch(playout)
                continue
            await trio.sleep(0.02)

    async def _send_batch(self, playout: Playout) -> None:
        frames = [playout.take() for _ in range(BATCH_FRAMES)]
        items: list[tuple[str | None, int]] = []
        for frame in frames:
            if items and items[-1][0] == frame.item_id:
                items[-1] = (frame.item_id, items[-1][1] + 1)
            else:
                items.append((frame.item_id, 1))
        mark = str(next(self._marks))
        due = trio.current_time() + (self._in_flight + len(frames)) * 0.02  # behind what is queued
        self._batches.append(_Batch(mark, items, due))
        self._in_flight += len(frames)
        self._batches_out += 1
        if self._batches_out == 1:
            event(log, "call.websocket_first_batch", level=logging.DEBUG, frames=len(frames), mark=mark)
        # Taken from the playout is as good as said: a cancel (the call's end right after a goodbye's
        # last frame was taken) must not lose it. Bounded: a stuck peer cannot hold the call.
        with trio.CancelScope(shield=True), trio.move_on_after(DRAIN_S):
            await self._send(self._channel_audio(b"".join(frame.pcm for frame in frames)))
            await self._command(cw.MarkMedia(mark))

    async def _status_watch(self) -> None:
        while True:
            await trio.sleep(STATUS_EVERY_S)
            if self._in_flight:
                await self._command(cw.GetStatus())

    def expect_audio(self, frames: int) -> None:
        """Each chan_websocket message already carries several frames: nothing to gather."""

    def barge_in(self, playout: Playout) -> list[Truncation]:
        """FLUSH_MEDIA: Asterisk drops its queue and the marks in it; each cut item was heard as far
        as its marks came back."""
        cut = [t.item_id for t in playout.flush()]
        for batch in self._batches:
            for item_id, _ in batch.items:
                if item_id is not None and item_id not in cut:
                    cut.insert(0, item_id)
        flushed = self._in_flight
        self._batches.clear()
        self._in_flight = 0
        if flushed:
            event(log, "call.websocket_flush", level=logging.DEBUG, frames=flushed, cut=len(cut))
            self.flushes += 1
            self._urgent_send.send_nowait(cw.encode_command(cw.FlushMedia(), self.control))
        return [Truncation(item, min(self._heard_ms.get(item, 0), playout.item_ms(item))) for item in cut]

    async def _send_urgent(self) -> None:
        """FLUSH_MEDIA, decided in synchronous code, goes out from here at once. A mark racing it
        is harmless: before the flush Asterisk drops it, after it the mark names no batch of ours."""
        async for text in self._urgent_receive:
            await self._send(text)

    async def hang_up(self) -> None:
        """HANGUP once Asterisk has played what we sent (the last words of a goodbye are in its
        queue: a HANGUP now would cut them), then wait for its close."""
        try:
            with trio.move_on_after(DRAIN_S):
                while self._in_flight > 0:
                    message = await self.ws.get_message()
                    if isinstance(message, str):
                        self._on_text(message)
            event(log, "call.leg_hang_up", level=logging.DEBUG, transport=self.transport, unplayed_frames=self._in_flight)
            await self._command(cw.Hangup())
            with trio.move_on_after(CLOSE_S):
                while True:
                    await self.ws.get_message()  # until Asterisk closes
        except ConnectionClosed:
            return  # closed: the caller hung up first, or Asterisk did on our HANGUP

    async def aclose(self) -> None:
        await self.ws.aclose()

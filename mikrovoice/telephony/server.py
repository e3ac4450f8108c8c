"""The Trio side of AudioSocket: the TCP listener, the inbound reader and the paced playout.

``Playout`` holds what the caller is to hear; ``take()`` gives the next 20 ms frame (speech,
comfort audio, or silence) and the transport moves it. Over AudioSocket, ``run`` sends one 20 ms
frame every 20 ms, scheduled against a monotonic deadline (never bursting to catch up after a
stall), silence whenever there is nothing to say, from the first moment of the call: Asterisk
neither buffers nor re-times what the server sends (research/asterisk-media.md section 1.7).
Silence is sent for the caller's ear, not for a timer: the dialplan app's 2 s timeout
(``app_audiosocket.c``, ``ast_waitfor_nandfds(..., 2000)``, AA L173-177, L218-222) fires only
when *neither* side has sent anything for 2 s, so it could only fire here if the caller were
silent (a phone with silence suppression sends no frames) and we were too; the channel driver
(``Dial(AudioSocket/...)``) has no timer at all. Each frame is one buffer, written with one
``send_all`` on a TCP_NODELAY socket (Asterisk gives the rest of a message 5 ms).

Comfort audio (``call.comfort``) is a bed under the silence, never under speech: while the session
has ``comfort_on`` set and no speech frame is queued, each tick sends the next comfort frame
instead of a silence frame; a speech frame always replaces it (the two are never summed). It
fades in each time it (re)starts, fades out briefly when the session turns it off, and stops at
once on ``flush()`` (barge-in), which also turns it off. ``speaking`` is about speech only.
"""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from mikrovoice.telephony.audiosocket import (
    FRAME_SECONDS,
    SLIN8_FRAME_BYTES,
    Audio,
    AudioSocketCodec,
    Message,
    Role,
    encode,
)
from mikrovoice.timings import ADDED_OUT, FRAME_LATENESS

SILENCE_FRAME = bytes(SLIN8_FRAME_BYTES)
_SILENCE_MESSAGE = encode(Audio(SILENCE_FRAME))
#: After a stall longer than this, the schedule restarts from now instead of bursting.
_MAX_LAG = 0.1

#: (when a model audio delta was read off the socket, when its audio was queued)
Mark = tuple[float, float]


@dataclass(frozen=True)
class Truncation:
    item_id: str
    played_ms: int


@dataclass(frozen=True)
class Frame:
    """One 20 ms frame of the playout: 320 bytes of 8 kHz slin, and what it is."""

    pcm: bytes
    kind: str  # "speech", "comfort" or "silence"
    item_id: str | None = None  # the output item a speech frame belongs to


_SILENCE = Frame(SILENCE_FRAME, "silence")


class ComfortSource(Protocol):
    """An endless source of comfort audio (``mikrovoice.call.comfort.ComfortAudio``)."""

    def next_frame(self) -> bytes:
        """The next 20 ms: SLIN8_FRAME_BYTES of slin."""
        ...

    def restart(self) -> None:
        """The frames that follow fade in."""
        ...

    def fade_out(self) -> list[bytes]:
        """A few frames that fade to nothing: a gentle stop."""
        ...


class Playout:
    def __init__(self, on_speaking_change: Callable[[bool], None] = lambda speaking: None) -> None:
        #: Whole frames to play: (item, 320 bytes of slin, mark). A frame's mark is set on the first
        #: frame of a model audio delta: (when the delta was read, when it was queued), for ADDED_OUT.
        self._frames: deque[tuple[str, bytes, Mark | None]] = deque()
        self._partial: tuple[str, bytearray] | None = None
        self._partial_mark: Mark | None = None
        #: The mark of the frame ``take()`` gave last (None: not the first frame of a delta).
        self.taken_mark: Mark | None = None
        self._played_ms: dict[str, int] = {}
        self._item_bytes: dict[str, int] = {}  # each item's real length: its last frame is padded
        self._current_item: str | None = None
        self._on_speaking_change = on_speaking_change
        self.speaking = False
        self.voice_frames_sent = 0
        self.late_frames = 0  # frames written more than 100 ms after their deadline (a stalled loop)
        self._silent = trio.Event()
        self._comfort: ComfortSource | None = None
        self.comfort_frames = 0  # comfort frames sent (fade-outs included)
        self._comfort_on = False
        self._comfort_playing = False  # the last frame sent was comfort audio
        self._comfort_tail: deque[bytes] = deque()  # a fade-out still to send
        #: Dead air: the session sets ``waiting`` while the caller waits for us (not their turn,
        #: not speaking); silence frames sent meanwhile, in a row, are dead air.
        self.waiting = False
        self._dead_air_run = 0
        self.dead_air_max_frames = 0

    @property
    def dead_air_max_s(self) -> float:
        """The longest silence the caller heard while waiting for us (seconds)."""
        return round(self.dead_air_max_frames * FRAME_SECONDS, 2)

    @property
    def comfort(self) -> ComfortSource | None:
        """The comfort bed (None: none); it sounds only while ``comfort_on`` and no speech is queued."""
        return self._comfort

    @comfort.setter
    def comfort(self, source: ComfortSource | None) -> None:
        self._comfort = source
        self._comfort_playing = False  # a new source fades in
        self._comfort_tail.clear()

    @property
    def comfort_on(self) -> bool:
        return self._comfort_on

    @comfort_on.setter
    def comfort_on(self, on: bool) -> None:
        """On: comfort audio instead of silence from the next tick (when no speech is queued).
        Off: a short fade-out if it is sounding (speech, when it comes, still cuts it)."""
        if on == self._comfort_on:
            return
        self._comfort_on = on
        if on:
            self._comfort_tail.clear()
        elif self._comfort_playing and self._comfort is not None:
            self._comfort_tail.extend(self._comfort.fade_out())
        self._comfort_playing = False

    @property
    def queued_s(self) -> float:
        return len(self._frames) * FRAME_SECONDS

    def enqueue(self, item_id: str, pcm: bytes, received_at: float | None = None) -> None:
        """Queue speech for one output item (any length); frames never mix two items.
        ``received_at``: when this audio was read off the model's socket (marks its first frame)."""
        if self._partial is not None and self._partial[0] != item_id:
            self._pad_partial()
        if self._partial is None:
            self._partial = (item_id, bytearray())
        if received_at is not None and self._partial_mark is None:
            self._partial_mark = (received_at, trio.current_time())
        buffer = self._partial[1]
        buffer += pcm
        self._item_bytes[item_id] = self._item_bytes.get(item_id, 0) + len(pcm)
        while len(buffer) >= SLIN8_FRAME_BYTES:
            self._frames.append((item_id, bytes(buffer[:SLIN8_FRAME_BYTES]), self._partial_mark))
            self._partial_mark = None
            del buffer[:SLIN8_FRAME_BYTES]

    def end_item(self, item_id: str) -> None:
        if self._partial is not None and self._partial[0] == item_id:
            self._pad_partial()

    def _pad_partial(self) -> None:
        assert self._partial is not None
        item_id, buffer = self._partial
        if buffer:
            self._frames.append((item_id, bytes(buffer) + bytes(SLIN8_FRAME_BYTES - len(buffer)), self._partial_mark))
        self._partial = None
        self._partial_mark = None

    def flush(self) -> list[Truncation]:
        """Barge-in: drop everything queued; say how much of each dropped item was heard.

        The item being played was heard up to ``played_ms``; items queued behind it (a report
        that arrived during the preamble) were not heard at all (0 ms): the model must be told
        of each, or it believes the caller heard an answer they never did."""
        dropped = [self._current_item] if self.speaking and self._current_item is not None else []
        for item_id, _, _ in self._frames:
            if item_id not in dropped:
                dropped.append(item_id)
        if self._partial is not None and self._partial[0] not in dropped:
            dropped.append(self._partial[0])
        self._frames.clear()
        self._partial = None
        self._partial_mark = None
        self._comfort_on = self._comfort_playing = False  # at once: no fade-out over the caller
        self._comfort_tail.clear()
        return [Truncation(item_id, self.played_ms(item_id)) for item_id in dropped]

    def played_ms(self, item_id: str) -> int:
        """How much of an item has been taken for playing, never past its real length (its
        last frame is padded): ``conversation.item.truncate`` refuses an end past the audio."""
        return min(self._played_ms.get(item_id, 0), self.item_ms(item_id))

    def item_ms(self, item_id: str) -> int:
        """The item's real length so far, in whole ms of 8 kHz slin."""
        return self._item_bytes.get(item_id, 0) // 16

    def flush_items(self, drop: Callable[[str], bool]) -> list[Truncation]:
        """Drop the queued audio of the items ``drop`` selects (a dead model session's unfinished
        speech), keep the rest in order; say how much of each dropped item was heard."""
        dropped: list[str] = []
        if self.speaking and self._current_item is not None and drop(self._current_item):
            dropped.append(self._current_item)
        kept: deque[tuple[str, bytes, Mark | None]] = deque()
        for queued in self._frames:
            item_id = queued[0]
            if drop(item_id):
                if item_id not in dropped:
                    dropped.append(item_id)
            else:
                kept.append(queued)
        self._frames = kept
        if self._partial is not None and drop(self._partial[0]):
            if self._partial[0] not in dropped:
                dropped.append(self._partial[0])
            self._partial = None
            self._partial_mark = None
        return [Truncation(item_id, self.played_ms(item_id)) for item_id in dropped]

    @property
    def has_sound(self) -> bool:
        """``take()`` would give speech or comfort audio, not silence."""
        return bool(self._frames) or (self._comfort_on and self._comfort is not None) or bool(self._comfort_tail)

    @property
    def has_speech(self) -> bool:
        """Speech is queued (whole frames or a partial one)."""
        return bool(self._frames) or self._partial is not None

    def take(self) -> Frame:
        """The next 20 ms: queued speech, else comfort audio (or its fade-out), else silence.
        Taking a speech frame counts it as played (``played_ms``): the transport sends it now."""
        if self._frames or not self.waiting or self.has_sound:
            self._dead_air_run = 0
        self.taken_mark = None
        if self._frames:
            item_id, frame, self.taken_mark = self._frames.popleft()
            self._current_item = item_id
            self._played_ms[item_id] = self._played_ms.get(item_id, 0) + int(FRAME_SECONDS * 1000)
            self._set_speaking(True)
            self.voice_frames_sent += 1
            self._comfort_playing = False
            self._comfort_tail.clear()
            return Frame(frame, "speech", item_id)
        self._set_speaking(False)
        if self._comfort_on and self._comfort is not None:
            if not self._comfort_playing:
                self._comfort.restart()
                self._comfort_playing = True
            self.comfort_frames += 1
            return Frame(self._comfort.next_frame(), "comfort")
        if self._comfort_tail:
            self.comfort_frames += 1
            return Frame(self._comfort_tail.popleft(), "comfort")
        if self.waiting:
            self._dead_air_run += 1
            self.dead_air_max_frames = max(self.dead_air_max_frames, self._dead_air_run)
        return _SILENCE

    def next_message(self) -> bytes:
        """``take()``, as the AudioSocket message that carries it."""
        frame = self.take()
        return _SILENCE_MESSAGE if frame is _SILENCE else encode(Audio(frame.pcm))

    def sent(self, deadline: float, now: float) -> None:
        """The frame ``next_message()`` gave was written at ``now``, due at ``deadline``: the timings."""
        late = now - deadline
        FRAME_LATENESS.observe(late)
        if late > _MAX_LAG:
            self.late_frames += 1
        mark = self.taken_mark
        if mark is not None:
            received_at, queued_at = mark
            ADDED_OUT.observe(now - max(deadline, queued_at) + (queued_at - received_at))

    def _set_speaking(self, speaking: bool) -> None:
        if speaking != self.speaking:
            self.speaking = speaking
            if not speaking:
                self._silent.set()
                self._silent = trio.Event()
            self._on_speaking_change(speaking)

    async def wait_played(self) -> None:
        """Return once everything queued so far has been played (a silence frame went out)."""
        while self._frames or self._partial is not None or self.speaking:
            await self._silent.wait()

    async def run(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        """Pace frames out forever (until cancelled), on a schedule of this playout's own (a stream
        the shared clock cannot write to without awaiting: ``telephony.clock``): a frame every 20 ms
        against a monotonic deadline. After a stall of more than ``_MAX_LAG`` the schedule
        restarts from now: frames are never burst to catch up."""
        deadline = trio.current_time()
        while True:
            await send(self.next_message())
            now = trio.current_time()
            self.sent(deadline, now)
            deadline += FRAME_SECONDS
            if now - deadline > _MAX_LAG:
                deadline = now
            await trio.sleep_until(deadline)


def set_nodelay(stream: trio.SocketStream) -> None:
    stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)


class AudioSocketStream:
    """Messages from Asterisk, parsed as they arrive (``Role.SERVER`` rules)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.codec = AudioSocketCodec(Role.SERVER)

    async def receive(self) -> Message:
        """The next message; ``Hangup()`` when Asterisk closes TCP. Raises AudioSocketProtocolError."""
        while True:
            message = self.codec.next_message()
            if message is not None:
                return message
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            self.codec.receive_data(data)

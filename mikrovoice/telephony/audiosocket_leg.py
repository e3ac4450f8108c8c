"""A call's leg over AudioSocket: Asterisk's ``AudioSocket()`` app or ``Dial(AudioSocket/...)``.

Inbound, each message becomes what the call needs (``telephony.leg``):
- slin at 8 kHz (kind 0x10) is companded to mu-law; slin at 12-192 kHz (0x11-0x18, the channel
  driver with ``c(slin16)`` and the like) is resampled to 8 kHz first (``telephony.resample``);
- G.711 mislabelled as slin (``Dial(AudioSocket/...)`` without ``c(slin)`` on a G.711 leg:
  raw mu-law or A-law bytes under kind 0x10) is recognised within a second (``telephony.sniff``)
  and decoded by its law, with one warning that tells the administrator to add ``c(slin)``.
  Until the sniffer decides, the caller's audio is held (at most a second), so the model never
  hears noise that would cut the greeting;
- DTMF: any byte; ``a``-``d`` are ``A``-``D``; an unknown one is logged and ignored;
- the peer's close is the caller's hang-up; a protocol error ends the leg at once (an unknown
  kind on its header alone); so does a message begun and not finished within
  ``partial_frame_timeout_s``. (A peer that sends nothing at all is the session's to judge:
  ``Settings.inactivity_timeout_s``, counted while the call is idle.)

Outbound it is the paced playout (``Playout.run``): one 20 ms frame every 20 ms; what the caller
heard of an item is what was written (``Playout.played_ms``), and a barge-in drops the queue at
once, so at most the frame in flight is heard after it. We hang up with 0x00; from Asterisk
20.14/21.9/22.4/23.0 the app then returns 0 and the dialplan goes on (``Hangup()`` after it).
"""

from __future__ import annotations

import logging
import uuid
from collections import deque

import trio

from mikrovoice.logs import event
from mikrovoice.net import RawPipe, raw_pipe
from mikrovoice.telephony import g711
from mikrovoice.telephony.audiosocket import (
    SAMPLE_RATES,
    Audio,
    AudioSocketCodec,
    AudioSocketProtocolError,
    CallId,
    Dtmf,
    ErrorMessage,
    Hangup,
    Kind,
    encode,
)
from mikrovoice.telephony.clock import FrameClock
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
from mikrovoice.telephony.server import AudioSocketStream, Playout, Truncation
from mikrovoice.telephony.sniff import SlinSniffer, Verdict
from mikrovoice.timings import WRITE_STALLS

log = logging.getLogger("mikrovoice.call")

UUID_TIMEOUT_S = 5.0
#: Caller audio held while the sniffer decides slin or mislabelled mu-law (then: slin).
SNIFF_HOLD_BYTES = 16000  # one second of 8 kHz slin


Inbound = Audio | Dtmf | Hangup | ErrorMessage | CallId | LegEnded


class _ClockPort:
    """A call's AudioSocket connection on the process's ``FrameClock``: each tick reads what arrived
    (parsed at once, so a digit or the end of the call is seen within the tick) and writes one frame.

    The call's reader task is woken when ``batch`` audio messages are waiting, or anything else, or
    at a tick that read nothing while audio waits (the caller paused: Asterisk sends no frames
    during silence suppression, and the end of a question must not wait for the next one).
    Caller audio goes to the model in chunks of ``batch`` frames anyway, so waking the reader per
    frame would only cost task switches. Its player task is woken when a frame could not be written
    whole (it finishes the write, awaiting; the tick skips this call meanwhile) or the peer is gone."""

    def __init__(self, pipe: RawPipe, codec: AudioSocketCodec, batch: int, partial_timeout_s: float) -> None:
        self.pipe = pipe
        self.codec = codec
        self.batch = max(1, batch)
        self.partial_timeout_s = partial_timeout_s
        self.inbox: deque[tuple[float, Inbound]] = deque()  # (when read, message)
        self._audio_waiting = 0  # audio messages queued since the reader last emptied the inbox
        self._reader = trio.lowlevel.ParkingLot()
        self._player = trio.lowlevel.ParkingLot()
        self._reading = True  # until the end of the stream, or a protocol error
        self._partial_since: float | None = None
        self.playout: Playout | None = None  # while ``play`` runs
        self.pending = b""  # the rest of a frame the socket did not take: the player writes it
        self.broken: BaseException | None = None  # the write side failed: the player returns
        self.started = False  # the UUID came: from now on the partial-message timeout applies

    def tick(self, deadline: float) -> None:
        now = trio.current_time()
        if self._reading:
            data = self.pipe.try_receive()
            if data is not None:
                self._arrived(data, now)
            else:
                if self._audio_waiting:  # the caller paused (silence suppression): no frame comes to
                    self._reader.unpark_all()  # complete the batch, so the last frames go now
                if self.codec.partial:
                    self._check_partial(now)
        playout = self.playout
        if playout is None or self.pending or self.broken is not None or not self._reading:
            return  # (not reading: the peer hung up or broke the protocol; the reader says which)
        message = playout.next_message()
        try:
            written = self.pipe.try_send(message)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.broken = exc
            self._player.unpark_all()
            return
        playout.sent(deadline, trio.current_time())
        if written < len(message):
            self.pending = message[written:]
            WRITE_STALLS.value += 1
            self._player.unpark_all()

    def peer_closed(self) -> None:
        if self._reading:
            data = self.pipe.try_receive()
            if data is not None:
                self._arrived(data, trio.current_time())

    def _arrived(self, data: bytes, now: float) -> None:
        codec = self.codec
        codec.receive_data(data)
        wake = False
        while True:
            try:
                message = codec.next_message()
            except AudioSocketProtocolError as exc:
                self._end(LegEnded(f"AudioSocket protocol error: {exc}", error=True), now)
                return
            if message is None:
                break
            self.inbox.append((now, message))
            if isinstance(message, Audio):
                self._audio_waiting += 1
            else:
                wake = True
                if isinstance(message, Hangup):
                    self._reading = False
                    break
        if not data:
            self._reading = False
        if codec.partial:
            self._check_partial(now)
        else:
            self._partial_since = None
        if wake or self._audio_waiting >= self.batch:
            self._reader.unpark_all()

    def _check_partial(self, now: float) -> None:
        """A message begun must be finished soon (Asterisk writes each in one write); before the
        UUID, the start's own timeout judges."""
        if not self.started:
            return
        if self._partial_since is None:
            self._partial_since = now
        elif now - self._partial_since > self.partial_timeout_s:
            self._end(LegEnded(f"an AudioSocket message was begun and not finished within "
                               f"{self.partial_timeout_s:g} s", error=True), now)

    def _end(self, ended: LegEnded, now: float) -> None:
        self.inbox.append((now, ended))
        self._reading = False
        self._reader.unpark_all()

    def failed(self, error: Exception) -> None:
        self.broken = error
        if self._reading:
            self._end(LegEnded(f"internal error in the playout clock: {error!r}", error=True), trio.current_time())
        self._player.unpark_all()

    async def next_inbound(self) -> tuple[float, Inbound]:
        while not self.inbox:
            self._audio_waiting = 0
            await self._reader.park()
        return self.inbox.popleft()

    async def wait_player(self) -> None:
        """Until the player has something to do: a write to finish, or a broken peer."""
        while not self.pending and self.broken is None:
            await self._player.park()


class AudioSocketLeg:
    transport = "audiosocket"

    def __init__(self, stream: trio.abc.Stream, *, partial_frame_timeout_s: float = 1.0,
                 caller_in_uuid: bool = False, clock: FrameClock | None = None, batch_frames: int = 1) -> None:
        self.reader = AudioSocketStream(stream)
        self.clock = clock
        pipe = raw_pipe(stream) if clock is not None else None
        self._port = (None if pipe is None
                      else _ClockPort(pipe, self.reader.codec, batch_frames, partial_frame_timeout_s))
        self.caller_in_uuid = caller_in_uuid
        self.stream = stream
        self.partial_frame_timeout_s = partial_frame_timeout_s
        self.sniffer = SlinSniffer()
        self.mislabelled: Verdict | None = None  # the 0x10 frames are G.711: ULAW or ALAW
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._carry = b""  # a trailing odd byte of slin
        self._resamplers: dict[Kind, Resampler] = {}
        self._frames_in = 0  # debug: caller audio messages received
        self._read_at = 0.0  # when the message being handled was read off the socket

    async def start(self) -> LegStart | None:
        """The UUID message starts the call (and, with ``caller_in_uuid``, tells the caller's number)."""
        if self._port is not None and self.clock is not None:
            self.clock.attach(self._port, getattr(self._port.pipe, "fd", None))
        with trio.move_on_after(UUID_TIMEOUT_S):
            message = await self._next_message(partial_timeout=False)
            if isinstance(message, LegEnded):
                event(log, "call.rejected", level=logging.WARNING, error=message.reason)
                return None
            if isinstance(message, CallId):
                if self._port is not None:
                    self._port.started = True
                return LegStart(str(message.value), caller_from_uuid(message.value) if self.caller_in_uuid else None)
            if isinstance(message, Hangup):
                event(log, "call.no_uuid", level=logging.WARNING,
                      error="connection closed before the UUID (is the channel answered before AudioSocket()?)")
                return None
            event(log, "call.rejected", level=logging.WARNING, error=f"expected the UUID first, got {message}")
            return None
        event(log, "call.no_uuid", level=logging.WARNING, error=f"no UUID within {UUID_TIMEOUT_S:g} s")
        return None

    async def _next_message(self, partial_timeout: bool = True) -> Inbound:
        """The next message, or LegEnded when the peer broke the protocol or went quiet."""
        if self._port is not None:
            self._read_at, inbound = await self._port.next_inbound()
            return inbound
        codec = self.reader.codec
        while True:
            try:
                message = codec.next_message()
            except AudioSocketProtocolError as exc:
                return LegEnded(f"AudioSocket protocol error: {exc}", error=True)
            if message is not None:
                return message
            data: bytes | bytearray | None = None
            # A message begun must be finished soon (Asterisk writes each in one write); between
            # messages a caller may be silent for long (silence suppression): the session's
            # inactivity watch decides about that.
            timeout = self.partial_frame_timeout_s if codec.partial and partial_timeout else float("inf")
            with trio.move_on_after(timeout):
                try:
                    data = await self.stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
            if data is None:
                return LegEnded(f"an AudioSocket message was begun and not finished within "
                                f"{self.partial_frame_timeout_s:g} s", error=True)
            self._read_at = trio.current_time()
            codec.receive_data(data)

    async def receive(self) -> LegEvent:
        while True:
            message = await self._next_message()
            if isinstance(message, LegEnded):
                return message
            if isinstance(message, Hangup):
                return LegEnded("caller hung up")
            if isinstance(message, Dtmf):
                digit = normalise_digit(message.digit)
                if digit is None:
                    event(log, "call.dtmf_unknown", level=logging.WARNING, digit=repr(message.digit))
                    continue
                # never the digit itself: it may be part of a PIN
                event(log, "call.leg_dtmf", level=logging.DEBUG, transport=self.transport)
                return Digit(digit)
            if isinstance(message, ErrorMessage):
                event(log, "call.asterisk_error", level=logging.WARNING, code=message.code.hex())
                continue
            if isinstance(message, CallId):
                continue  # the codec refuses a second UUID; not reached
            self._frames_in += 1
            if self._frames_in == 1:
                event(log, "call.leg_first_frame", level=logging.DEBUG, transport=self.transport,
                      kind=f"0x{int(message.kind):02x}", bytes=len(message.payload))
            if self._port is not None and message.kind == Kind.SLIN and self._settled:
                message = self._gathered(self._port, message)
            audio = self._caller_audio(message)
            if audio is not None:
                return audio

    @property
    def _settled(self) -> bool:
        """The sniffer has its final word: frames may be decoded together."""
        return self.sniffer.verdict is not Verdict.UNDECIDED and not self.sniffer.provisional

    def _gathered(self, port: _ClockPort, first: Audio) -> Audio:
        """``first`` and the slin frames queued right behind it, as one message: decoded, measured and
        handed to the call in one go (the clock hands them over a model chunk at a time)."""
        inbox = port.inbox
        if not inbox or not isinstance(inbox[0][1], Audio) or inbox[0][1].kind != Kind.SLIN:
            return first
        payloads = [first.payload]
        while inbox and isinstance(inbox[0][1], Audio) and inbox[0][1].kind == Kind.SLIN:
            self._read_at, more = inbox.popleft()
            payloads.append(more.payload)  # type: ignore[union-attr]  # (checked just above)
        self._frames_in += len(payloads) - 1
        return Audio(b"".join(payloads), first.kind)

    def _caller_audio(self, message: Audio) -> CallerAudio | None:
        if message.kind != Kind.SLIN:
            return self._resampled(message)
        if self.sniffer.provisional:  # mu-law so far; quieter audio may still show A-law
            if self.sniffer.feed(message.payload, trio.current_time()) is Verdict.ALAW:
                self._mislabelled_as(Verdict.ALAW)
        if self.sniffer.verdict is Verdict.UNDECIDED:
            verdict = self.sniffer.feed(message.payload, trio.current_time())
            if verdict is Verdict.UNDECIDED and self._held_bytes + len(message.payload) < SNIFF_HOLD_BYTES:
                self._held.append(message.payload)
                self._held_bytes += len(message.payload)
                return None
            payload = b"".join([*self._held, message.payload])
            if verdict is not Verdict.UNDECIDED:  # once: the sniffer's verdict never changes
                event(log, "call.audiosocket_format", level=logging.DEBUG, verdict=verdict.name.lower(),
                      reason=self.sniffer.reason or "-", held_ms=len(payload) // 16)
            self._held.clear()
            self._held_bytes = 0
            if verdict in (Verdict.ULAW, Verdict.ALAW):
                self._mislabelled_as(verdict)
            return self._decoded(payload)
        return self._decoded(message.payload)

    def _mislabelled_as(self, law: Verdict) -> None:
        self.mislabelled = law
        name = "mu-law" if law is Verdict.ULAW else "A-law"
        event(log, "call.audiosocket_mislabelled", level=logging.WARNING, reason=self.sniffer.reason,
              hint=f"Asterisk sends {name} under the slin kind: add /c(slin) to Dial(AudioSocket/...) "
                   f"(taken as {name} meanwhile)")

    def _decoded(self, payload: bytes) -> CallerAudio:
        if self.mislabelled is Verdict.ULAW:
            return CallerAudio(payload, loud_ms(g711.ulaw_to_slin(payload)), self._read_at)
        if self.mislabelled is Verdict.ALAW:
            slin = g711.alaw_to_slin(payload)
            return CallerAudio(g711.slin_to_ulaw(slin), loud_ms(slin), self._read_at)
        slin = self._carry + payload
        if len(slin) % 2:
            slin, self._carry = slin[:-1], slin[-1:]
        else:
            self._carry = b""
        return CallerAudio(g711.slin_to_ulaw(slin), loud_ms(slin), self._read_at)

    def _resampled(self, message: Audio) -> CallerAudio | None:
        kind = Kind(message.kind)
        resampler = self._resamplers.get(kind)
        if resampler is None:
            resampler = self._resamplers[kind] = Resampler(SAMPLE_RATES[kind], 8000)
            event(log, "call.audiosocket_rate", rate=SAMPLE_RATES[kind], note="resampled to 8000 Hz")
        slin = resampler.process(message.payload)
        if not slin:
            return None
        return CallerAudio(g711.slin_to_ulaw(slin), loud_ms(slin), self._read_at)

    async def play(self, playout: Playout) -> None:
        if self._port is not None:
            await self._play_on_clock(self._port, playout)
            return
        # One watchdog for the whole playout, its deadline pushed on by every frame that goes out
        # (a frame leaves every 20 ms: a cancel scope per frame costs the event loop too much).
        with trio.CancelScope(deadline=trio.current_time() + WRITE_STALL_S) as watchdog:

            async def send(frame: bytes) -> None:
                await self.stream.send_all(frame)
                now = trio.current_time()
                if watchdog.deadline < now + WRITE_STALL_S - 1.0:  # moved once a second, not per frame
                    watchdog.deadline = now + WRITE_STALL_S

            try:
                await playout.run(send)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return  # the caller's side is gone: receive() says so
        if watchdog.cancelled_caught:
            raise PeerStalled(f"Asterisk read none of our audio for {WRITE_STALL_S:g} s")

    async def _play_on_clock(self, port: _ClockPort, playout: Playout) -> None:
        """The clock writes the frames; this task finishes a write the socket could not take whole
        (a peer reading slowly), or returns when the peer is gone."""
        port.playout = playout
        try:
            while True:
                await port.wait_player()
                if port.broken is not None:
                    return  # the caller's side is gone: receive() says so
                with trio.move_on_after(WRITE_STALL_S):
                    try:
                        await self.stream.send_all(port.pending)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        return
                    port.pending = b""
                    continue
                raise PeerStalled(f"Asterisk read none of our audio for {WRITE_STALL_S:g} s")
        finally:
            port.playout = None

    def expect_audio(self, frames: int) -> None:
        """On the clock, the reader is woken when this many audio frames wait (the model's chunk
        then completes with the last of them, at the tick that read it: nothing waits for a batch)."""
        if self._port is not None:
            self._port.batch = max(1, frames)

    def barge_in(self, playout: Playout) -> list[Truncation]:
        # What was written was heard: Asterisk neither buffers nor re-times (asterisk-media.md 1.7).
        return playout.flush()

    async def hang_up(self) -> None:
        event(log, "call.leg_hang_up", level=logging.DEBUG, transport=self.transport)
        await self.stream.send_all(encode(Hangup()))

    def release(self) -> None:
        """Off the clock (before the stream closes: the clock must never touch a closed descriptor)."""
        if self._port is not None and self.clock is not None:
            self.clock.detach(self._port)

    async def aclose(self) -> None:
        self.release()
        await self.stream.aclose()


def caller_from_uuid(value: uuid.UUID) -> str | None:
    """The caller's number the dialplan wrote in the UUID's last group (12 decimal digits, zero-
    padded on the left), or None when that group is not all decimal digits (a plain UUID())."""
    last = str(value).rsplit("-", 1)[1]
    if not last.isdigit():
        return None
    return last.lstrip("0") or None

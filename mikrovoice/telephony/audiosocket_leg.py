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

import trio

from mikrovoice.logs import event
from mikrovoice.telephony import g711
from mikrovoice.telephony.audiosocket import (
    SAMPLE_RATES,
    Audio,
    AudioSocketProtocolError,
    CallId,
    Dtmf,
    ErrorMessage,
    Hangup,
    Kind,
    encode,
)
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

log = logging.getLogger("mikrovoice.call")

UUID_TIMEOUT_S = 5.0
#: Caller audio held while the sniffer decides slin or mislabelled mu-law (then: slin).
SNIFF_HOLD_BYTES = 16000  # one second of 8 kHz slin


class AudioSocketLeg:
    transport = "audiosocket"

    def __init__(self, stream: trio.abc.Stream, *, partial_frame_timeout_s: float = 1.0,
                 caller_in_uuid: bool = False) -> None:
        self.reader = AudioSocketStream(stream)
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

    async def start(self) -> LegStart | None:
        """The UUID message starts the call (and, with ``caller_in_uuid``, tells the caller's number)."""
        with trio.move_on_after(UUID_TIMEOUT_S):
            try:
                message = await self.reader.receive()
            except AudioSocketProtocolError as exc:
                event(log, "call.rejected", level=logging.WARNING, error=str(exc))
                return None
            if isinstance(message, CallId):
                return LegStart(str(message.value), caller_from_uuid(message.value) if self.caller_in_uuid else None)
            if isinstance(message, Hangup):
                event(log, "call.no_uuid", level=logging.WARNING,
                      error="connection closed before the UUID (is the channel answered before AudioSocket()?)")
                return None
            event(log, "call.rejected", level=logging.WARNING, error=f"expected the UUID first, got {message}")
            return None
        event(log, "call.no_uuid", level=logging.WARNING, error=f"no UUID within {UUID_TIMEOUT_S:g} s")
        return None

    async def _next_message(self) -> Audio | Dtmf | Hangup | ErrorMessage | CallId | LegEnded:
        """The next message, or LegEnded when the peer broke the protocol or went quiet."""
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
            with trio.move_on_after(self.partial_frame_timeout_s if codec.partial else float("inf")):
                try:
                    data = await self.stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
            if data is None:
                return LegEnded(f"an AudioSocket message was begun and not finished within "
                                f"{self.partial_frame_timeout_s:g} s", error=True)
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
            audio = self._caller_audio(message)
            if audio is not None:
                return audio

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
            return CallerAudio(payload, loud_ms(g711.ulaw_to_slin(payload)))
        if self.mislabelled is Verdict.ALAW:
            slin = g711.alaw_to_slin(payload)
            return CallerAudio(g711.slin_to_ulaw(slin), loud_ms(slin))
        slin = self._carry + payload
        if len(slin) % 2:
            slin, self._carry = slin[:-1], slin[-1:]
        else:
            self._carry = b""
        return CallerAudio(g711.slin_to_ulaw(slin), loud_ms(slin))

    def _resampled(self, message: Audio) -> CallerAudio | None:
        kind = Kind(message.kind)
        resampler = self._resamplers.get(kind)
        if resampler is None:
            resampler = self._resamplers[kind] = Resampler(SAMPLE_RATES[kind], 8000)
            event(log, "call.audiosocket_rate", rate=SAMPLE_RATES[kind], note="resampled to 8000 Hz")
        slin = resampler.process(message.payload)
        if not slin:
            return None
        return CallerAudio(g711.slin_to_ulaw(slin), loud_ms(slin))

    async def play(self, playout: Playout) -> None:
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

    def barge_in(self, playout: Playout) -> list[Truncation]:
        # What was written was heard: Asterisk neither buffers nor re-times (asterisk-media.md 1.7).
        return playout.flush()

    async def hang_up(self) -> None:
        event(log, "call.leg_hang_up", level=logging.DEBUG, transport=self.transport)
        await self.stream.send_all(encode(Hangup()))

    async def aclose(self) -> None:
        await self.stream.aclose()


def caller_from_uuid(value: uuid.UUID) -> str | None:
    """The caller's number the dialplan wrote in the UUID's last group (12 decimal digits, zero-
    padded on the left), or None when that group is not all decimal digits (a plain UUID())."""
    last = str(value).rsplit("-", 1)[1]
    if not last.isdigit():
        return None
    return last.lstrip("0") or None

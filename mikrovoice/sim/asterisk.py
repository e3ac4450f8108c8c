"""A simulated Asterisk caller: dials an AudioSocket server the way Asterisk's app does, and acts a script.

It connects, sends the UUID (``01 00 10`` + 16 bytes), then 320-byte slin frames every 20 ms against
a monotonic deadline while it speaks; while silent it sends line noise, digital silence, or — as a
real Asterisk does for a phone with silence suppression or a channel in ``Wait()`` — nothing at all
(``CallerScript.silence``). It reads the server like ``res_audiosocket.c`` does: only 0x00 and
0x10-0x18 are accepted, a message's payload must complete within 5 ms of its header, and 0x00 ends
the session; anything else is an error that ends the call. It hangs up by closing TCP without 0x00.

A ``CallerScript`` is what the caller does: wait for the greeting, ask its questions one after
another (each after the previous answer, or after its patience ran out), interject on cues (speak
over the assistant, a backchannel, a DTMF digit), and hang up at a set moment or after the last
answer; it can also hang up before its UUID is fully sent. What it hears is timed by arrival,
segmented by energy and decoded to words (``sim.voice``), so the ``CallReport`` says what the
caller actually heard, and when, beside what it said.

Two questions about each 20 ms frame it receives: is it *sound* (``is_sound``: anything at least
as loud as comfort audio, ``DEAD_AIR_DBFS``), and is it *speech* (``is_speech``: ToneVoice, loud
and tonal)? Dead air (``QuestionResult.max_dead_air_s``) is time without sound, so the comfort
texture the service plays during a query fills it; speech is only what the assistant says, so
that texture is never heard as words (its frames are blanked before decoding).
"""

from __future__ import annotations

import logging
import random
import re
import uuid
import wave
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, wrap_client_stream

from mikrovoice.call import comfort
from mikrovoice.logs import event
from mikrovoice.net import Dialer, open_tcp
from mikrovoice.sim import voice
from mikrovoice.telephony import chan_websocket as cw
from mikrovoice.telephony import g711
from mikrovoice.telephony.audiosocket import (
    FRAME_SECONDS,
    SAMPLE_RATES,
    SLIN8_FRAME_BYTES,
    Audio,
    AudioSocketCodec,
    AudioSocketProtocolError,
    CallId,
    Hangup,
    Kind,
    Role,
    encode,
)
from mikrovoice.telephony.resample import Resampler

log = logging.getLogger("mikrovoice.sim.caller")

PAYLOAD_WINDOW_S = 0.005  # res_audiosocket.c gives a payload 5 ms to complete
#: app_audiosocket.c: ``ast_waitfor_nandfds(..., 2000)``; neither side sent anything for this long
#: ends the app with "Reached timeout after 2000 ms of no activity" (the channel driver has no timer).
APP_INACTIVITY_S = 2.0
TRANSPORTS = ("audiosocket", "websocket")
MODES = ("app", "dial")
#: What the line's channel carries toward the service: slin at a rate (AudioSocket kinds 0x10-0x18,
#: chan_websocket c(slin...)), or "ulaw"/"alaw": Dial(AudioSocket/...) without c(slin) on a G.711
#: leg, raw G.711 under the slin kind (measured on Asterisk 23.4.1 with c(ulaw)); on chan_websocket,
#: c(ulaw)/c(alaw).
CODECS = ("slin", "slin12", "slin16", "slin24", "slin32", "slin44", "slin48", "slin96", "slin192", "ulaw", "alaw")
_HANGOVER_FRAMES = 10  # 200 ms of silence ends a heard utterance
SILENCE_MODES = ("noise", "silence", "no_frames")
_NOISE_FRAMES = 64  # distinct line-noise frames, cycled

#: Dead air starts below this level: a 20 ms frame quieter than the *default* comfort level
#: (comfort.DEFAULT_LEVEL_DBFS, -36 dBFS) minus 6 dB, i.e. below -42 dBFS (RMS ~261), is dead air.
#: The comfort texture never dips more than 5 dB under its level (so at its default level every
#: frame is sound, after its fade-in), while what a line carries when nobody plays anything,
#: digital silence or hiss of -50 dBFS and below (our own line noise: about -63 dBFS), stays
#: well under it. The threshold is fixed, not the configured level: an operator who turns the
#: comfort audio down below -42 dBFS gives the caller dead air again, and the measure says so.
DEAD_AIR_DBFS = comfort.DEAD_AIR_DBFS
SOUND_RMS = comfort.dbfs_to_rms(DEAD_AIR_DBFS)
#: A loud frame is speech only if one DFT bin holds at least this share of its energy. ToneVoice
#: symbols are pure tones on exact bins (share > 0.99, G.711 included); the comfort texture is
#: noise spread over 250-3000 Hz (share < 0.5 in every frame), so it is never taken for words,
#: whatever its level (energy alone cannot tell: at -24 dBFS it is louder than voice.SPEECH_RMS).
TONE_PURITY = 0.8
_SOUND_GAP_S = FRAME_SECONDS / 2  # frames closer than this (jitter) join one stretch of sound


def is_sound(payload: bytes) -> bool:
    """The frame is not dead air: at least ``DEAD_AIR_DBFS`` (comfort audio, speech, any sound)."""
    return voice.block_rms(payload) >= SOUND_RMS


def _purity(samples: np.ndarray) -> float:
    energy = float(samples.dot(samples))
    if energy <= 0.0:
        return 0.0
    spectrum = np.fft.rfft(samples)
    power = spectrum.real[1:] ** 2 + spectrum.imag[1:] ** 2
    return min(1.0, 2.0 * float(power.max()) / (samples.size * energy))


_HALF = SLIN8_FRAME_BYTES // 4  # samples in half a 20 ms frame at 8 kHz: 80
# The 80-point DFT of bins 1..40 (what ``np.fft.rfft`` gives, DC excluded) as one real matrix,
# cosine columns then sine columns: both halves of a frame are one (2, 80) @ (80, 80) product.
# The same powers as the FFT up to rounding (1e-12 relative); every frame of a call goes through
# this, and a small FFT costs numpy several microseconds of Python overhead per call.
_HALF_ANGLES = 2.0 * np.pi * np.outer(np.arange(_HALF), np.arange(1, _HALF // 2 + 1)) / _HALF
_HALF_DFT = np.ascontiguousarray(np.concatenate([np.cos(_HALF_ANGLES), np.sin(_HALF_ANGLES)], axis=1))


def tone_purity(payload: bytes) -> float:
    """The share of the energy in the strongest DFT bin (DC excluded) of the purer half of the
    frame: 1.0 for a pure tone. Halves, because audio that went through a real PBX (or a
    resampler) is off the 20 ms grid: a frame then holds two symbols, but one of its 10 ms halves
    lies within one symbol whatever the offset, and every ToneVoice frequency (500-2200 Hz, 100 Hz
    apart) is an exact bin of an 80-point DFT too. The comfort texture stays under 0.67."""
    samples = np.frombuffer(payload, "<i2", len(payload) // 2).astype(np.float64)
    if samples.size == 2 * _HALF:  # a 20 ms frame at 8 kHz: both halves at once
        halves = samples.reshape(2, _HALF)
        dft = halves @ _HALF_DFT
        dft *= dft
        powers = (dft[:, : _HALF // 2] + dft[:, _HALF // 2 :]).max(axis=1).tolist()
        first, second = np.einsum("ij,ij->i", halves, halves).tolist()
        return min(1.0, max(2.0 * powers[0] / (_HALF * first) if first > 0.0 else 0.0,
                            2.0 * powers[1] / (_HALF * second) if second > 0.0 else 0.0))
    if samples.size < 160:
        return _purity(samples)
    half = samples.size // 2
    return max(_purity(samples[:half]), _purity(samples[half : 2 * half]))


def is_speech(payload: bytes) -> bool:
    """The frame is the assistant speaking: loud enough for speech and a ToneVoice tone, not noise."""
    return voice.block_rms(payload) >= voice.SPEECH_RMS and tone_purity(payload) >= TONE_PURITY


#: After a stall longer than this, the channel's timer restarts from now instead of bursting.
_MAX_LAG_S = 0.1


async def _pace(next_frame: Callable[[], bytes | None], send: Callable[[bytes], Awaitable[None]],
                idle: Callable[[], Awaitable[None]]) -> None:
    """The channel's 20 ms timer: ``send(next_frame())`` against a monotonic deadline, forever.

    ``next_frame()`` returns None while the phone sends nothing (silence suppression): then
    ``idle()`` is awaited and the schedule restarts when it returns. After a stall of more than
    ``_MAX_LAG_S`` the schedule restarts from now: frames are never burst to catch up. (Asterisk's
    own timing, kept here rather than borrowed from the service's playout, which it stands apart from.)
    """
    deadline = trio.current_time()
    while True:
        frame = next_frame()
        if frame is None:
            await idle()
            deadline = trio.current_time()
            continue
        await send(frame)
        deadline += FRAME_SECONDS
        now = trio.current_time()
        if now - deadline > _MAX_LAG_S:
            deadline = now
        await trio.sleep_until(deadline)


#: A caller repeats a question at most this many times when the assistant asks.
MAX_REPEATS = 2


@dataclass(frozen=True)
class Question:
    text: str
    expect: str  # regex an answer (or an explanation of why there is none) matches, case-insensitive
    timeout_s: float = 120.0  # the caller's patience: after this, it moves on
    after_s: float = 0.0  # the caller thinks (silent) this long before asking


@dataclass(frozen=True)
class Say:
    text: str
    kind: str = "barge_in"  # "barge_in" (speaks over the assistant) or "backchannel" ("ajá")


@dataclass(frozen=True)
class PressDigit:
    digit: str


@dataclass(frozen=True)
class Interjection:
    """Something the caller does beside the conversation, on a cue."""

    after_question: int  # the cue: the caller finished asking this question (0-based)
    delay_s: float
    action: Say | PressDigit
    over_speech: bool = False  # count the delay from the first assistant speech heard after the cue


@dataclass(frozen=True)
class Line:
    """How the simulated Asterisk reaches the service, and what its channel is."""

    transport: str = "audiosocket"  # or "websocket" (chan_websocket, Asterisk dials the service)
    #: AudioSocket: "app" (the AudioSocket() dialplan app, with its 2 s rule) or "dial"
    #: (Dial(AudioSocket/...), the channel driver: no timer).
    mode: str = "app"
    codec: str = "slin"
    control: str = "plain-text"  # chan_websocket f(): "plain-text" or "json" (with channel variables)
    caller_id: str = "3001234567"
    #: AudioSocket: the dialplan writes caller_id in the UUID's last group, zero-padded to 12
    #: digits (``${CUT(UUID(),-,1-4)}-${CALLER12:-12}``, docs/asterisk.md).
    caller_in_uuid: bool = False
    #: chan_websocket: frames Asterisk sends before MEDIA_START (asterisk/asterisk#1712)
    early_frames: int = 0
    path: str = "/media"  # chan_websocket: the URI path of the websocket_client.conf entry

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, got {self.transport!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.codec not in CODECS:
            raise ValueError(f"codec must be one of {CODECS}, got {self.codec!r}")
        if self.transport == "websocket" and self.codec not in ("slin", "slin16", "slin24", "ulaw", "alaw"):
            raise ValueError(f"the simulated chan_websocket line carries slin, slin16, slin24, ulaw or alaw, "
                             f"not {self.codec!r}")

    @property
    def rate(self) -> int:
        return 8000 if self.codec in ("ulaw", "alaw") else SAMPLE_RATES[_CODEC_KINDS[self.codec]]


_CODEC_KINDS = {"slin": Kind.SLIN, "slin12": Kind.SLIN12, "slin16": Kind.SLIN16, "slin24": Kind.SLIN24,
                "slin32": Kind.SLIN32, "slin44": Kind.SLIN44, "slin48": Kind.SLIN48, "slin96": Kind.SLIN96,
                "slin192": Kind.SLIN192, "ulaw": Kind.SLIN, "alaw": Kind.SLIN}


@dataclass(frozen=True)
class CallerScript:
    questions: tuple[Question, ...] = ()
    interjections: tuple[Interjection, ...] = ()
    #: One of SILENCE_MODES: what the caller's line sends while the caller is silent. A real
    #: Asterisk sends nothing (a phone with silence suppression, a channel in Wait()) unless
    #: transmit_silence=yes: "no_frames" is the default, as measured.
    silence: str = "no_frames"
    hangup_at_s: float | None = None  # seconds after connecting; None: after the conversation
    hangup_after_s: float = 1.0  # after the last answer
    uuid_bytes: int | None = None  # hang up after sending only this many bytes (0-18) of the UUID message
    greeting_timeout_s: float = 30.0
    answer_silence_s: float = 1.5  # an answer is over after this long without new speech
    #: What the assistant says when it lost what we said (a regex); hearing it, we ask again.
    repeat_cue: str | None = None
    line: Line = Line()
    #: PINs the caller types, one after each prompt it hears before the greeting (the service's
    #: PIN request, then its "wrong PIN"), each followed by ``#``; () : the line asks for none.
    pins: tuple[str, ...] = ()
    #: Seconds between two key presses (a person: 0.2 to 0.5 s).
    digit_gap_s: float = 0.25

    def __post_init__(self) -> None:
        if self.silence not in SILENCE_MODES:
            raise ValueError(f"silence must be one of {SILENCE_MODES}, got {self.silence!r}")


@dataclass
class Heard:
    start: float
    end: float
    text: str


@dataclass
class Spoken:
    start: float
    end: float
    text: str
    kind: str  # "question", "barge_in", "backchannel"


@dataclass
class QuestionResult:
    text: str
    asked_at: float
    finished_asking_at: float = 0.0
    answered_at: float | None = None
    answer: str | None = None
    max_dead_air_s: float = 0.0  # longest dead air (no sound: see is_sound) from the question to the answer

    @property
    def answered(self) -> bool:
        return self.answered_at is not None


@dataclass
class CallReport:
    call_id: str
    connected_at: float = 0.0
    questions: list[QuestionResult] = field(default_factory=list)
    heard: list[Heard] = field(default_factory=list)
    sound: list[tuple[float, float]] = field(default_factory=list)  # stretches of sound heard (is_sound)
    spoken: list[Spoken] = field(default_factory=list)
    dtmf: list[tuple[float, str]] = field(default_factory=list)
    hung_up_at: float | None = None  # the caller hung up (closed TCP)
    server_hung_up_at: float | None = None  # the server sent 0x00 or closed the connection
    server_hung_up: bool = False  # it was a 0x00 hang-up message
    error: str | None = None
    frames_received: int = 0
    frames_sent: int = 0
    max_frame_gap_s: float = 0.0
    # chan_websocket: the longest the queue of the service's audio got, FLUSH_MEDIA received,
    # commands Asterisk ignored (why)
    max_queue_frames: int = 0
    flushes: int = 0
    ignored_commands: list[str] = field(default_factory=list)


@dataclass
class _Utterance:
    text: str
    kind: str
    pcm: bytearray
    done: trio.Event = field(default_factory=trio.Event)
    record: Spoken | None = None


class AsteriskCaller:
    def __init__(self, script: CallerScript, *, call_id: uuid.UUID | None = None, seed: int = 1,
                 record_wav: str | Path | None = None) -> None:
        self.script = script
        self.record_wav = Path(record_wav) if record_wav is not None else None
        self._recording = bytearray()  # what the caller heard, 8 kHz slin, silence where nothing came
        self._upsampler: Resampler | None = None
        self._last_activity = 0.0
        self.call_id = call_id or uuid.UUID(int=random.Random(seed).getrandbits(128), version=4)
        if script.line.caller_in_uuid:  # what the documented dialplan sends
            digits = "".join(c for c in script.line.caller_id if c.isdigit())[-12:].rjust(12, "0")
            self.call_id = uuid.UUID(str(self.call_id).rsplit("-", 1)[0] + "-" + digits)
        self.report = CallReport(str(self.call_id))
        # Line noise: uniform in [-40, 40] (about -63 dBFS), drawn at once for all frames.
        noise = np.random.default_rng(seed).integers(-40, 41, size=(_NOISE_FRAMES, SLIN8_FRAME_BYTES // 2))
        self._noise: list[bytes] = [frame.tobytes() for frame in noise.astype("<i2")]
        self._noise_index = 0
        self._utterances: deque[_Utterance] = deque()
        self._digits: list[str] = []
        self._wake_sender = trio.Event()
        self._heard_changed = trio.Event()
        self._onset = trio.Event()
        self._asked = [trio.Event() for _ in script.questions]
        self._repeat_cue = re.compile(script.repeat_cue, re.IGNORECASE) if script.repeat_cue else None
        self._current: list[bytes] | None = None
        self._previous: bytes | None = None  # the last frame heard (an utterance's start may be in it)
        self._quiet_frames = 0
        self._utterance_start = 0.0
        self._hearing_from: float | None = None

    # ------------------------------------------------------------------ the call

    async def call(self, host: str, port: int, dial: Dialer = open_tcp) -> CallReport:
        """Dial the service (AudioSocket or chan_websocket, as the script's line says) and run
        the script to its end."""
        try:
            stream = await dial(host, port)
        except OSError as exc:
            self.report.error = f"cannot connect to {host}:{port}: {exc.strerror or exc}"
            return self.report
        try:
            if self.script.line.transport == "websocket":
                return await self.run_websocket(stream, host)
            return await self.run(stream)
        finally:
            self._write_recording()

    def _write_recording(self) -> None:
        if self.record_wav is None:
            return
        with wave.open(str(self.record_wav), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(bytes(self._recording))

    def _record(self, slin: bytes, now: float) -> None:
        """Keep what the caller heard, on the call's clock (silence for the gaps)."""
        if self.record_wav is None:
            return
        start = round((now - FRAME_SECONDS - self.report.connected_at) * 8000) * 2
        if start > len(self._recording):
            self._recording += bytes(start - len(self._recording))
        self._recording += slin[: len(slin) // 2 * 2]

    async def run(self, stream: trio.abc.Stream) -> CallReport:
        """Run the script over an already connected stream; always closes it."""
        self.report.connected_at = trio.current_time()
        try:
            first = encode(CallId(self.call_id))
            if self.script.uuid_bytes is not None:
                await stream.send_all(first[: self.script.uuid_bytes])
                return self.report
            await stream.send_all(first)
            self._last_activity = trio.current_time()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._send_frames, stream)
                nursery.start_soon(self._receive, stream, nursery.cancel_scope)
                if self.script.line.mode == "app":
                    nursery.start_soon(self._app_timer, nursery.cancel_scope)
                await self._act(nursery)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            if self.report.server_hung_up_at is None:
                self.report.server_hung_up_at = trio.current_time()
        finally:
            self._flush_heard(trio.current_time())
            if self.report.server_hung_up_at is None:
                self.report.hung_up_at = trio.current_time()
            await trio.aclose_forcefully(stream)  # hang up: TCP close, no 0x00, as Asterisk does
            event(log, "caller.hung_up", call=str(self.call_id), by_caller=self.report.hung_up_at is not None)
        return self.report

    async def run_websocket(self, stream: trio.abc.Stream, host: str = "127.0.0.1") -> CallReport:
        """chan_websocket: Asterisk dials the service as a WebSocket client (subprotocol ``media``),
        sends MEDIA_START, then one BINARY message per 20 ms of the caller, DTMF as DTMF_END; it
        queues the service's audio (``MediaQueue``: frames, marks, XOFF/XON, flush) and plays one
        frame per 20 ms tick; the caller's hang-up closes the WebSocket (1000)."""
        line = self.script.line
        self.report.connected_at = trio.current_time()
        channel_id = f"{1764000000 + self.call_id.int % 100000}.{self.call_id.int % 997}"
        self._ws_queue = cw.MediaQueue(line.codec, channel_id=channel_id)
        self._ws_lock = trio.Lock()
        self._downsampler: Resampler | None = None
        ws: WebSocketConnection | None = None
        try:
            async with trio.open_nursery() as outer:
                try:
                    ws = await wrap_client_stream(outer, stream, host, line.path,  # type: ignore[arg-type]
                                                  subprotocols=[cw.SUBPROTOCOL],
                                                  max_message_size=cw.MAX_MESSAGE_BYTES)
                except (HandshakeError, ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    self.report.error = f"WebSocket handshake failed: {exc!r}"
                    event(log, "caller.protocol_error", level=logging.ERROR, error=self.report.error)
                    return self.report
                if ws.subprotocol not in (None, cw.SUBPROTOCOL):
                    self.report.error = f"the server chose subprotocol {ws.subprotocol!r}, not offered"
                    return self.report
                for _ in range(line.early_frames):  # asterisk/asterisk#1712
                    await self._ws_send(ws, self._channel_audio(bytes(SLIN8_FRAME_BYTES)))
                variables = {"MIKROVOICE_CALLER": line.caller_id, "MEDIA_WEBSOCKET_CONNECTION_ID": "mikrovoice",
                             "MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE": str(self._ws_queue.frame_size)}
                start = cw.MediaStart("mikrovoice", f"WebSocket/mikrovoice-{self.call_id.hex[:8]}", channel_id,
                                      line.codec, self._ws_queue.frame_size, self._ws_queue.ptime,
                                      variables if line.control == "json" else {})
                await self._ws_send(ws, cw.encode_event(start, line.control))  # type: ignore[arg-type]
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._ws_send_frames, ws)
                    nursery.start_soon(self._ws_receive, ws, nursery.cancel_scope)
                    nursery.start_soon(self._ws_play, ws)
                    await self._act(nursery)
                outer.cancel_scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionClosed):
            if self.report.server_hung_up_at is None:
                self.report.server_hung_up_at = trio.current_time()
        finally:
            self._flush_heard(trio.current_time())
            if self.report.server_hung_up_at is None:
                self.report.hung_up_at = trio.current_time()
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                if ws is not None:
                    await ws.aclose(1000)  # a hang-up either way: Asterisk closes with 1000 (CW L1765-1785)
                await trio.aclose_forcefully(stream)
            event(log, "caller.hung_up", call=str(self.call_id), by_caller=self.report.hung_up_at is not None)
        return self.report

    async def _ws_send(self, ws: WebSocketConnection, message: str | bytes) -> None:
        async with self._ws_lock:
            await ws.send_message(message)

    async def _ws_send_frames(self, ws: WebSocketConnection) -> None:
        line = self.script.line

        def next_frame() -> bytes | None:
            slin = self._next_payload()
            if slin is None and not self._digits:
                return None
            return b"" if slin is None else self._channel_audio(slin)

        async def send(frame: bytes) -> None:
            for digit in self._digits:
                text = cw.encode_event(cw.DtmfEnd(digit, self._ws_queue.channel_id), line.control)  # type: ignore[arg-type]
                await self._ws_send(ws, text)
            self._digits.clear()
            if frame:
                self.report.frames_sent += 1
                await self._ws_send(ws, frame)

        try:
            await _pace(next_frame, send, idle=self._idle)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionClosed):
            return

    async def _ws_receive(self, ws: WebSocketConnection, call_scope: trio.CancelScope) -> None:
        queue = self._ws_queue
        try:
            while True:
                message = await ws.get_message()
                if isinstance(message, bytes):
                    events = queue.write(message)
                else:
                    command = cw.parse_command(message, self.script.line.control)  # type: ignore[arg-type]
                    if isinstance(command, cw.Hangup):
                        self.report.server_hung_up = True
                        self.report.server_hung_up_at = trio.current_time()
                        event(log, "caller.server_hangup", by="HANGUP")
                        call_scope.cancel()
                        return
                    if isinstance(command, cw.IgnoredCommand):
                        self.report.ignored_commands.append(command.reason)
                    if isinstance(command, cw.FlushMedia):
                        self.report.flushes += 1
                    events = queue.command(command)
                for reply in events:
                    await self._ws_send(ws, cw.encode_event(reply, self.script.line.control))  # type: ignore[arg-type]
                self.report.max_queue_frames = max(self.report.max_queue_frames, queue.length)
        except ConnectionClosed:
            self.report.server_hung_up_at = trio.current_time()
            call_scope.cancel()

    async def _ws_play(self, ws: WebSocketConnection) -> None:
        """The channel timer: one frame off the queue every ptime, at real-time rate."""
        queue = self._ws_queue
        deadline = trio.current_time()
        while True:
            deadline += queue.ptime / 1000
            await trio.sleep_until(deadline)
            frame, events = queue.tick()
            for reply in events:
                await self._ws_send(ws, cw.encode_event(reply, self.script.line.control))  # type: ignore[arg-type]
            now = trio.current_time()
            if frame is None:
                if self._current is not None:
                    self._listen(bytes(SLIN8_FRAME_BYTES), now)  # nothing played: the caller hears silence
                continue
            slin = self._heard_slin(frame)
            self.report.frames_received += 1
            self._record(slin, now)
            self._listen(slin, now)

    def _heard_slin(self, frame: bytes) -> bytes:
        codec = self.script.line.codec
        if codec == "ulaw":
            return g711.ulaw_to_slin(frame)
        if codec == "alaw":
            return g711.alaw_to_slin(frame)
        if codec == "slin":
            return frame
        if self._downsampler is None:
            self._downsampler = Resampler(self.script.line.rate, 8000)
        return self._downsampler.process(frame)

    async def _hang_up_at(self, when: float, call_scope: trio.CancelScope) -> None:
        await trio.sleep_until(when)
        call_scope.cancel()

    # ------------------------------------------------------------------ speaking

    def _next_payload(self) -> bytes | None:
        """The caller's next 20 ms as 8 kHz slin: speech, or what the line sends while the caller
        is silent (noise, digital silence), or None (no frames: the default, as measured)."""
        while self._utterances:
            utterance = self._utterances[0]
            if not utterance.pcm:
                self._utterances.popleft()
                continue
            now = trio.current_time()
            if utterance.record is None:
                utterance.record = Spoken(now, now, utterance.text, utterance.kind)
                self.report.spoken.append(utterance.record)
                event(log, "caller.says", text=utterance.text, kind=utterance.kind)
            frame = bytes(utterance.pcm[:SLIN8_FRAME_BYTES]).ljust(SLIN8_FRAME_BYTES, b"\x00")
            del utterance.pcm[:SLIN8_FRAME_BYTES]
            utterance.record.end = now + FRAME_SECONDS
            if not utterance.pcm:
                self._utterances.popleft()
                utterance.done.set()
            return frame
        if self.script.silence == "no_frames":
            return None
        if self.script.silence == "silence":
            return bytes(SLIN8_FRAME_BYTES)
        self._noise_index = (self._noise_index + 1) % _NOISE_FRAMES
        return self._noise[self._noise_index]

    def _channel_audio(self, slin: bytes) -> bytes:
        """A frame as the line's channel carries it: slin at its rate, or mu-law."""
        codec = self.script.line.codec
        if codec == "slin":
            return slin
        if codec == "ulaw":
            return g711.slin_to_ulaw(slin)
        if codec == "alaw":
            return g711.slin_to_alaw(slin)
        if self._upsampler is None:
            self._upsampler = Resampler(8000, self.script.line.rate)
        return self._upsampler.process(slin)

    def _next_frame(self) -> bytes | None:
        """AudioSocket: the next audio message (and DTMF messages), as Asterisk writes them."""
        digits = b""
        if self._digits:
            digits = b"".join(bytes((Kind.DTMF, 0, 1)) + d.encode("latin-1") for d in self._digits)
            self._digits.clear()
        slin = self._next_payload()
        if slin is None:
            return digits or None
        self.report.frames_sent += 1
        self._last_activity = trio.current_time()
        payload = self._channel_audio(slin)
        kind = _CODEC_KINDS[self.script.line.codec]
        return (bytes((kind,)) + len(payload).to_bytes(2, "big") + payload if payload else b"") + digits

    async def _idle(self) -> None:
        """No frames while silent: sleep until there is something to say or a digit to send."""
        while not self._utterances and not self._digits:
            await self._wake_sender.wait()
            self._wake_sender = trio.Event()

    async def _send_frames(self, stream: trio.abc.Stream) -> None:
        async def send(data: bytes) -> None:
            if data:
                await stream.send_all(data)

        try:
            await _pace(self._next_frame, send, idle=self._idle)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return

    async def _app_timer(self, call_scope: trio.CancelScope) -> None:
        """app_audiosocket.c: 2 s with nothing from either side ends the app (-1: hang up)."""
        while True:
            due = self._last_activity + APP_INACTIVITY_S
            if trio.current_time() >= due:
                self.report.error = "Reached timeout after 2000 ms of no activity"
                event(log, "caller.app_timeout", level=logging.ERROR, error=self.report.error)
                call_scope.cancel()
                return
            await trio.sleep_until(due)

    def _queue(self, text: str, kind: str) -> _Utterance:
        utterance = _Utterance(text, kind, bytearray(voice.speak(text)))
        self._utterances.append(utterance)
        self._wake_sender.set()
        return utterance

    # ------------------------------------------------------------------ listening

    async def _receive(self, stream: trio.abc.Stream, call_scope: trio.CancelScope) -> None:
        codec = AudioSocketCodec(Role.ASTERISK)
        last_frame_at: float | None = None
        try:
            while True:
                message = codec.next_message()
                if message is None:
                    if codec.partial:
                        with trio.move_on_after(PAYLOAD_WINDOW_S) as window:
                            data = await stream.receive_some(65536)
                        if window.cancelled_caught:
                            raise AudioSocketProtocolError("Poll timed out while waiting for data (payload incomplete after 5 ms)")
                    else:
                        data = await stream.receive_some(65536)
                    codec.receive_data(data)
                    continue
                if isinstance(message, Hangup):
                    self.report.server_hung_up = not codec.peer_closed
                    self.report.server_hung_up_at = trio.current_time()
                    event(log, "caller.server_hangup", by_0x00=self.report.server_hung_up)
                    call_scope.cancel()
                    return
                assert isinstance(message, Audio)
                now = trio.current_time()
                self._last_activity = now
                if last_frame_at is not None:
                    self.report.max_frame_gap_s = max(self.report.max_frame_gap_s, now - last_frame_at)
                last_frame_at = now
                self.report.frames_received += 1
                payload = message.payload[: len(message.payload) // 2 * 2]  # samples = len/2 (RA L421)
                self._record(payload, now)
                self._listen(payload, now)
        except AudioSocketProtocolError as exc:
            self.report.error = str(exc)
            event(log, "caller.protocol_error", level=logging.ERROR, error=str(exc))
            call_scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.report.server_hung_up_at = trio.current_time()
            call_scope.cancel()

    def _listen(self, payload: bytes, now: float) -> None:
        rms = voice.block_rms(payload)
        if rms >= SOUND_RMS:
            self._sound(now - FRAME_SECONDS, now)
        loud = rms >= voice.SPEECH_RMS and tone_purity(payload) >= TONE_PURITY  # is_speech, rms computed once
        previous, self._previous = self._previous, payload
        if self._current is None:
            if loud:
                # Off the grid by more than half a frame, the frame before ends with the start
                # tone's beginning (less than 10 ms of it, too little to make that frame speech):
                # keep its last half, so the decoder finds the utterance's own start.
                head = None
                if previous is not None and len(previous) == len(payload):
                    before, tail = previous[: len(previous) // 2], previous[len(previous) // 2 :]
                    # quiet, then loud: an onset (not a bed of comfort audio under it)
                    if voice.block_rms(before) < voice.SPEECH_RMS / 2 <= voice.block_rms(tail):
                        head = bytes(len(before)) + tail
                self._current = [head, payload] if head is not None else [payload]
                self._utterance_start = self._hearing_from = now - FRAME_SECONDS * len(self._current)
                self._quiet_frames = 0
                self._onset.set()
                self._onset = trio.Event()
            return
        # Comfort audio or noise between words is kept as silence: timing stays, it is never decoded.
        self._current.append(payload if loud else bytes(len(payload)))
        self._quiet_frames = 0 if loud else self._quiet_frames + 1
        if self._quiet_frames >= _HANGOVER_FRAMES:
            self._flush_heard(now - _HANGOVER_FRAMES * FRAME_SECONDS)

    def _sound(self, start: float, end: float) -> None:
        sound = self.report.sound
        if sound and start <= sound[-1][1] + _SOUND_GAP_S:
            sound[-1] = (sound[-1][0], max(end, sound[-1][1]))
        else:
            sound.append((start, end))

    def _flush_heard(self, end: float) -> None:
        """Decode the utterance being heard (also when the call ends in the middle of it)."""
        if self._current is None:
            return
        audio = b"".join(self._current)
        self._current = None
        utterances = [(start_s, end_s, text or "(ininteligible)") for start_s, end_s, text in voice.hear_lenient(audio)]
        for index, (start_s, end_s, text) in enumerate(utterances):
            following = utterances[index + 1 :]
            self._hearing_from = self._utterance_start + following[0][0] if following else None
            self.report.heard.append(Heard(self._utterance_start + start_s, self._utterance_start + end_s, text))
            event(log, "caller.heard", text=text, at=round(self._utterance_start + start_s, 3))
        self._hearing_from = None
        self._heard_changed.set()
        self._heard_changed = trio.Event()

    @property
    def hearing_since(self) -> float | None:
        """When the speech the caller is hearing, and has not yet reported, began (None: none)."""
        return self._hearing_from

    # ------------------------------------------------------------------ the script

    async def _act(self, nursery: trio.Nursery) -> None:
        """The script, on either transport: interjections and the hang-up timer beside the questions;
        when the questions are done, the call's tasks end."""
        for interjection in self.script.interjections:
            nursery.start_soon(self._interject, interjection)
        if self.script.hangup_at_s is not None:
            nursery.start_soon(self._hang_up_at, self.report.connected_at + self.script.hangup_at_s,
                               nursery.cancel_scope)
        await self._conversation()
        nursery.cancel_scope.cancel()

    async def _conversation(self) -> None:
        for pin in self.script.pins:  # each prompt heard, then the PIN typed
            await self._wait_prompt(self.script.greeting_timeout_s)
            await self.press(pin + "#")
        await self._wait_answer(None, re.compile(r"."), self.script.greeting_timeout_s)  # the greeting
        for index, question in enumerate(self.script.questions):
            await trio.sleep(question.after_s)
            result = QuestionResult(question.text, trio.current_time())
            self.report.questions.append(result)
            await self._queue(question.text, "question").done.wait()
            result.finished_asking_at = trio.current_time()
            self._asked[index].set()
            expect = re.compile(question.expect, re.IGNORECASE)
            deadline = trio.current_time() + question.timeout_s
            repeats = 0
            # max(0, ...): repeating the question may itself use up the caller's patience
            while await self._wait_answer(result, expect, max(0.0, deadline - trio.current_time()),
                                          repeat=self._repeat_cue if repeats < MAX_REPEATS else None):
                repeats += 1  # asked to repeat (the line was cut): say it again, as a person would
                await self._queue(question.text, "question").done.wait()
                result.finished_asking_at = trio.current_time()
        await trio.sleep(self.script.hangup_after_s)

    async def _wait_prompt(self, timeout_s: float, quiet_s: float = 0.8) -> None:
        """Wait for a recording to be played to us whole: sound, then ``quiet_s`` without any.
        (A recorded prompt is a human-like voice, not the simulators' tone speech: it is heard
        as sound, not decoded.)"""
        since = trio.current_time()
        with trio.move_on_after(timeout_s):
            while True:
                await trio.sleep(0.1)
                sound = self.report.sound
                if sound and sound[-1][1] > since and sound[-1][1] <= trio.current_time() - quiet_s:
                    return

    async def _interject(self, interjection: Interjection) -> None:
        if not 0 <= interjection.after_question < len(self._asked):
            return
        await self._asked[interjection.after_question].wait()
        if interjection.over_speech:
            await self._onset.wait()
        await trio.sleep(interjection.delay_s)
        action = interjection.action
        if isinstance(action, Say):
            self._queue(action.text, action.kind)
        else:
            await self.press(action.digit)

    async def press(self, keys: str) -> None:
        """Press these keys, ``digit_gap_s`` apart (each goes out as the line's DTMF message)."""
        for index, key in enumerate(keys):
            if index:
                await trio.sleep(self.script.digit_gap_s)
            self._digits.append(key)
            self.report.dtmf.append((trio.current_time(), key))
            self._wake_sender.set()

    async def _wait_answer(self, result: QuestionResult | None, expect: re.Pattern[str], timeout_s: float,
                           repeat: re.Pattern[str] | None = None) -> bool:
        """Wait for an utterance matching ``expect``, then for the answer to finish. True: the
        assistant asked us to repeat (``repeat`` matched first)."""
        seen = len(self.report.heard)
        with trio.move_on_after(timeout_s):
            while True:
                await self._heard_changed.wait()
                for heard in self.report.heard[seen:]:
                    if repeat is not None and repeat.search(heard.text) and not expect.search(heard.text):
                        with trio.move_on_after(self.script.answer_silence_s):
                            await self._heard_changed.wait()
                        return True
                    if expect.search(heard.text):
                        if result is not None:
                            result.answered_at, result.answer = heard.start, heard.text
                            result.max_dead_air_s = self._dead_air(result)
                        with trio.move_on_after(self.script.answer_silence_s):
                            await self._heard_changed.wait()
                        return False
                seen = len(self.report.heard)
        if result is not None:
            result.max_dead_air_s = self._dead_air(result, until=trio.current_time())
        return False

    def _dead_air(self, result: QuestionResult, until: float | None = None) -> float:
        """Longest dead air the caller heard from the end of the question to the answer: time
        without a frame of sound (``is_sound``), be it silence frames, quiet hiss or no frames."""
        end = result.answered_at if until is None else until
        assert end is not None
        mark, longest = result.finished_asking_at, 0.0
        for start, stop in self.report.sound:
            if stop <= mark:
                continue
            if start >= end:
                break
            longest = max(longest, start - mark)
            mark = stop
        return round(max(longest, end - mark), 2)

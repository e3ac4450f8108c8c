"""A simulated Asterisk caller: dials an AudioSocket server the way Asterisk's app does.

It connects, sends the UUID (``01 00 10`` + 16 bytes), then one 320-byte slin frame every
20 ms against a monotonic deadline for as long as the call lasts: line noise, or a scripted
utterance (``sim.voice``). It reads the server like ``res_audiosocket.c`` does: only 0x00 and
0x10-0x18 are accepted, a message's payload must complete within 5 ms of its header, and 0x00
ends the session; anything else is an error that ends the call. It hangs up by closing TCP
without 0x00. What it hears is timed by arrival, segmented by energy and decoded to words, so
it can report what the caller actually heard and the longest silence they sat through.
"""

from __future__ import annotations

import logging
import random
import re
import uuid
from array import array
from dataclasses import dataclass, field

import trio

from mikrovoice.logs import event
from mikrovoice.sim import voice
from mikrovoice.telephony.audiosocket import (
    FRAME_SECONDS,
    SLIN8_FRAME_BYTES,
    Audio,
    AudioSocketCodec,
    AudioSocketProtocolError,
    CallId,
    Hangup,
    Role,
    encode,
)
from mikrovoice.telephony.server import pace_frames

log = logging.getLogger("mikrovoice.sim.caller")

PAYLOAD_WINDOW_S = 0.005  # res_audiosocket.c gives a payload 5 ms to complete
_HANGOVER_FRAMES = 10  # 200 ms of silence ends a heard utterance


@dataclass(frozen=True)
class Question:
    text: str
    expect: str  # regex the answer must match (case-insensitive)
    timeout_s: float = 120.0


@dataclass
class Heard:
    start: float
    end: float
    text: str


@dataclass
class QuestionResult:
    text: str
    asked_at: float
    finished_asking_at: float = 0.0
    answered_at: float | None = None
    answer: str | None = None
    max_dead_air_s: float = 0.0  # longest silence heard between finishing the question and the answer

    @property
    def answered(self) -> bool:
        return self.answered_at is not None


@dataclass
class CallReport:
    call_id: str
    questions: list[QuestionResult] = field(default_factory=list)
    heard: list[Heard] = field(default_factory=list)
    server_hung_up: bool = False
    error: str | None = None
    frames_received: int = 0
    max_frame_gap_s: float = 0.0


class AsteriskCaller:
    def __init__(self, questions: list[Question], *, call_id: uuid.UUID | None = None, seed: int = 1,
                 answer_silence_s: float = 1.5, hangup_after_s: float = 1.0) -> None:
        self.questions = questions
        self.call_id = call_id or uuid.UUID(int=random.Random(seed).getrandbits(128), version=4)
        self.report = CallReport(str(self.call_id))
        self._rng = random.Random(seed)
        self._say: bytearray = bytearray()
        self._said = trio.Event()
        self._heard_changed = trio.Event()
        self._current: list[bytes] | None = None
        self._quiet_frames = 0
        self._utterance_start = 0.0
        self.answer_silence_s = answer_silence_s
        self.hangup_after_s = hangup_after_s

    def _noise_frame(self) -> bytes:
        samples = array("h", (self._rng.randint(-40, 40) for _ in range(SLIN8_FRAME_BYTES // 2)))
        return samples.tobytes()

    async def call(self, host: str, port: int) -> CallReport:
        stream = await trio.open_tcp_stream(host, port)
        try:
            await stream.send_all(encode(CallId(self.call_id)))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._send_frames, stream)
                nursery.start_soon(self._receive, stream, nursery.cancel_scope)
                await self._script()
                nursery.cancel_scope.cancel()
        finally:
            await stream.aclose()  # hang up: TCP close, no 0x00, as Asterisk does
            event(log, "caller.hung_up", call=str(self.call_id))
        return self.report

    def _next_frame(self) -> bytes:
        if not self._say:
            return encode(Audio(self._noise_frame()))
        frame = bytes(self._say[:SLIN8_FRAME_BYTES]).ljust(SLIN8_FRAME_BYTES, b"\x00")
        del self._say[:SLIN8_FRAME_BYTES]
        if not self._say:
            self._said.set()
        return encode(Audio(frame))

    async def _send_frames(self, stream: trio.SocketStream) -> None:
        try:
            await pace_frames(self._next_frame, stream.send_all)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return

    async def _receive(self, stream: trio.SocketStream, call_scope: trio.CancelScope) -> None:
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
                    event(log, "caller.server_hangup", by_0x00=self.report.server_hung_up)
                    call_scope.cancel()
                    return
                assert isinstance(message, Audio)
                now = trio.current_time()
                if last_frame_at is not None:
                    self.report.max_frame_gap_s = max(self.report.max_frame_gap_s, now - last_frame_at)
                last_frame_at = now
                self.report.frames_received += 1
                self._listen(message.payload, now)
        except AudioSocketProtocolError as exc:
            self.report.error = str(exc)
            event(log, "caller.protocol_error", level=logging.ERROR, error=str(exc))
            call_scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            call_scope.cancel()

    def _listen(self, payload: bytes, now: float) -> None:
        loud = voice.block_rms(payload) >= voice.SPEECH_RMS
        if self._current is None:
            if loud:
                self._current = [payload]
                self._utterance_start = now - FRAME_SECONDS
                self._quiet_frames = 0
            return
        self._current.append(payload)
        self._quiet_frames = 0 if loud else self._quiet_frames + 1
        if self._quiet_frames >= _HANGOVER_FRAMES:
            audio = b"".join(self._current)
            self._current = None
            try:
                utterances = voice.hear_all(audio)
            except voice.UnintelligibleSpeech:
                end = now - _HANGOVER_FRAMES * FRAME_SECONDS
                utterances = [(0.0, end - self._utterance_start, "(ininteligible)")]
            for start_s, end_s, text in utterances:
                self.report.heard.append(Heard(self._utterance_start + start_s, self._utterance_start + end_s, text))
                event(log, "caller.heard", text=text)
            self._heard_changed.set()
            self._heard_changed = trio.Event()

    async def _script(self) -> None:
        await self._wait_answer(None, re.compile(r"."), 30.0)  # the greeting
        for question in self.questions:
            result = QuestionResult(question.text, trio.current_time())
            self.report.questions.append(result)
            event(log, "caller.says", text=question.text)
            self._said = trio.Event()
            self._say += voice.speak(question.text)
            await self._said.wait()
            result.finished_asking_at = trio.current_time()
            await self._wait_answer(result, re.compile(question.expect, re.IGNORECASE), question.timeout_s)
        await trio.sleep(self.hangup_after_s)

    async def _wait_answer(self, result: QuestionResult | None, expect: re.Pattern[str], timeout_s: float) -> None:
        """Wait for an utterance matching ``expect``, then for the answer to finish."""
        seen = len(self.report.heard)
        with trio.move_on_after(timeout_s):
            while True:
                await self._heard_changed.wait()
                for heard in self.report.heard[seen:]:
                    if expect.search(heard.text):
                        if result is not None:
                            result.answered_at, result.answer = heard.start, heard.text
                            result.max_dead_air_s = self._dead_air(result)
                        with trio.move_on_after(self.answer_silence_s):
                            await self._heard_changed.wait()
                        return
                seen = len(self.report.heard)
        if result is not None:
            result.max_dead_air_s = self._dead_air(result, until=trio.current_time())

    def _dead_air(self, result: QuestionResult, until: float | None = None) -> float:
        """Longest silence the caller heard from the end of the question to the answer."""
        end = result.answered_at if until is None else until
        assert end is not None
        mark, longest = result.finished_asking_at, 0.0
        for heard in self.report.heard:
            if heard.end <= mark or heard.start >= end:
                continue
            longest = max(longest, heard.start - mark)
            mark = heard.end
        return round(max(longest, end - mark), 2)

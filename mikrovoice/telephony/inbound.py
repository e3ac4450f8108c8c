"""The caller's audio toward the model: gathered into chunks, on our own clock, with silence in the gaps.

Two jobs, one clock. (1) Fewer, larger messages: the model gets ``chunk_s`` of audio per
``input_audio_buffer.append`` (the Realtime API takes 20-100 ms per event; 100 ms is 5x fewer
messages than one per Asterisk frame, for at most ``chunk_s`` - 20 ms of added delay before the
model hears the caller). (2) No gaps: Asterisk sends no frames while the caller is silent (a phone
with silence suppression, a channel in ``Wait()``: ../shared/asterisk/README.md), but the model's
server VAD ends a turn only when it *hears* silence; when the caller's audio falls more than
``slack_s`` behind the call's clock, mu-law silence fills the gap. ``ModelFeed`` is pure: audio and
times in, chunks to send out; the session owns the timer (``next_due``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mikrovoice.telephony import g711

ULAW_RATE = 8000  # bytes (samples) per second of mu-law
_SILENCE = bytes([g711.ULAW_SILENCE])


@dataclass
class ModelFeed:
    started_at: float
    chunk_s: float = 0.1
    slack_s: float = 0.06
    sent_s: float = 0.0  # audio handed to the model so far, the caller's and our silence
    silence_s: float = 0.0  # of which silence we made up
    _buffer: bytearray = field(default_factory=bytearray)
    _buffered_since: float | None = None

    @property
    def _chunk_bytes(self) -> int:
        return max(1, round(self.chunk_s * ULAW_RATE))

    def caller_audio(self, ulaw: bytes, now: float) -> list[bytes]:
        """Mu-law from Asterisk; returns what to send to the model now (a full chunk, or nothing)."""
        if not self._buffer:
            self._buffered_since = now
        self._buffer += ulaw
        if len(self._buffer) >= self._chunk_bytes:
            return [self._take()]
        return []

    def tick(self, now: float) -> list[bytes]:
        """What the clock says must go now: a chunk that waited long enough, silence for a gap."""
        if self._buffered_since is not None and now - self._buffered_since >= self.chunk_s - 1e-9:
            return [self._take()]
        behind = now - self.started_at - self.sent_s - len(self._buffer) / ULAW_RATE - self.slack_s
        if behind >= self.chunk_s - 1e-9:
            frames = int(behind / 0.02 + 1e-9)  # whole 20 ms frames of silence up to now - slack
            self.silence_s += frames * 0.02
            if not self._buffer:
                self._buffered_since = now
            self._buffer += _SILENCE * (frames * 160)
            return [self._take()]
        return []

    def frames_to_chunk(self) -> int:
        """How many more 20 ms frames of the caller's audio complete the next chunk."""
        return -(-(self._chunk_bytes - len(self._buffer)) // 160)

    def next_due(self) -> float:
        """The next moment ``tick`` may have something to send."""
        if self._buffered_since is not None:
            return self._buffered_since + self.chunk_s
        return self.started_at + self.sent_s + self.slack_s + self.chunk_s

    def _take(self) -> bytes:
        chunk = bytes(self._buffer)
        self._buffer.clear()
        self._buffered_since = None
        self.sent_s += len(chunk) / ULAW_RATE
        return chunk

"""The caller's audio toward the model, kept on our own clock: silence fills the gaps Asterisk leaves.

Asterisk sends no frames while the caller is silent (a phone with silence suppression, a channel in
``Wait()``: ../shared/asterisk/README.md), but the model's server VAD ends a turn only when it
*hears* silence. ``SilenceFill`` keeps count of the audio sent toward the model against the call's
own clock and says how many 20 ms frames of silence are due when the caller's audio falls behind
by more than ``slack_s`` (ordinary network jitter never triggers it). Pure: times in, counts out.
"""

from __future__ import annotations

from dataclasses import dataclass

from mikrovoice.telephony.audiosocket import FRAME_SECONDS


@dataclass
class SilenceFill:
    started_at: float
    slack_s: float = 0.06
    sent_s: float = 0.0  # audio handed to the model so far, caller's and ours

    def on_audio(self, seconds: float) -> None:
        self.sent_s += seconds

    def frames_due(self, now: float) -> int:
        behind = now - self.started_at - self.sent_s - self.slack_s
        return int(behind / FRAME_SECONDS + 1e-9) if behind > 0 else 0

    def next_check(self) -> float:
        """The earliest moment a frame of silence can be due, given what was sent so far."""
        return self.started_at + self.sent_s + self.slack_s + FRAME_SECONDS

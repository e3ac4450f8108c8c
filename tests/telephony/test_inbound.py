"""SilenceFill: the model's audio clock keeps running when Asterisk sends nothing."""

import pytest

from mikrovoice.telephony.inbound import SilenceFill


def test_audio_that_keeps_pace_needs_no_fill() -> None:
    fill = SilenceFill(started_at=100.0)
    for frame in range(500):  # 10 s of 20 ms frames, each arriving on time or up to 50 ms late
        now = 100.0 + 0.02 * (frame + 1) + (0.05 if frame % 7 == 0 else 0.0)
        assert fill.frames_due(now) == 0
        fill.on_audio(0.02)


def test_a_silent_caller_is_filled_frame_by_frame_after_the_slack() -> None:
    fill = SilenceFill(started_at=0.0, slack_s=0.06)
    fill.on_audio(1.0)  # one second of speech, then the phone goes quiet
    assert fill.next_check() == pytest.approx(1.08)
    assert fill.frames_due(1.07) == 0
    assert fill.frames_due(1.08) == 1
    fill.on_audio(0.02)
    assert fill.frames_due(2.08) == 50  # a second later: a second of silence is due
    fill.on_audio(1.0)
    assert fill.frames_due(2.09) == 0 and fill.next_check() == pytest.approx(2.10)

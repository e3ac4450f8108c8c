"""ModelFeed: the caller's audio reaches the model in chunks, and silence fills the gaps Asterisk leaves."""

import pytest

from mikrovoice.telephony.inbound import ModelFeed

FRAME = b"\x55" * 160  # 20 ms of mu-law from Asterisk


def test_frames_that_keep_pace_go_out_in_100_ms_chunks_and_nothing_is_invented() -> None:
    feed = ModelFeed(started_at=100.0, chunk_s=0.1)
    sent = []
    for frame in range(500):  # 10 s of frames, each on time or up to 50 ms late
        now = 100.0 + 0.02 * (frame + 1) + (0.05 if frame % 7 == 0 else 0.0)
        sent += feed.tick(now)
        sent += feed.caller_audio(FRAME, now)
    # A late frame may close a chunk early (its first frame waited 100 ms), never make one larger.
    assert all(len(chunk) <= 800 for chunk in sent) and 100 <= len(sent) <= 130
    assert feed.silence_s == 0.0 and b"".join(sent) == FRAME * 500


def test_a_partial_chunk_waits_at_most_one_chunk_time() -> None:
    feed = ModelFeed(started_at=0.0, chunk_s=0.1)
    assert feed.caller_audio(FRAME, 0.02) == [] and feed.caller_audio(FRAME, 0.04) == []
    assert feed.next_due() == pytest.approx(0.12)
    assert feed.tick(0.11) == []
    assert feed.tick(0.12) == [FRAME * 2]


def test_a_silent_phone_is_filled_with_silence_once_it_falls_behind() -> None:
    feed = ModelFeed(started_at=0.0, chunk_s=0.1, slack_s=0.06)
    for frame in range(50):  # one second of speech, then the phone sends nothing
        feed.caller_audio(FRAME, 0.02 * (frame + 1))
    assert feed.sent_s == pytest.approx(1.0) and feed.next_due() == pytest.approx(1.16)
    assert feed.tick(1.15) == []
    (silence,) = feed.tick(1.16)
    assert silence == b"\xff" * 800 and feed.silence_s == pytest.approx(0.1)
    (more,) = feed.tick(2.16)  # a second later: a second of silence, in one message
    assert len(more) == 8000 and feed.sent_s == pytest.approx(2.1)
    assert feed.caller_audio(FRAME * 5, 2.2) == [FRAME * 5]  # the caller speaks again: at once

"""Playout pacing on the virtual clock: one frame every 20 ms from t=0, silence (or comfort) when idle, no bursts."""

import pytest
import trio
import trio.testing

from mikrovoice.call import comfort
from mikrovoice.call.comfort import ComfortAudio
from mikrovoice.telephony.audiosocket import Audio, AudioSocketCodec, Role
from mikrovoice.telephony.server import SILENCE_FRAME, Playout


async def record(playout: Playout, seconds: float) -> list[tuple[float, bytes]]:
    sent: list[tuple[float, bytes]] = []

    async def send(data: bytes) -> None:
        sent.append((trio.current_time(), data))

    with trio.move_on_after(seconds):
        await playout.run(send)
    return sent


async def test_frames_are_paced_every_20_ms_from_the_first_moment(autojump_clock: trio.testing.MockClock) -> None:
    start = trio.current_time()
    playout = Playout()
    playout.enqueue("item1", b"\x01\x00" * 400)  # 800 bytes: 2.5 frames
    playout.end_item("item1")
    sent = await record(playout, 0.19)  # not 0.2: equal deadlines run in random order
    assert [round(t - start, 3) for t, _ in sent] == [round(0.02 * i, 3) for i in range(10)]
    codec = AudioSocketCodec(Role.ASTERISK)
    for _, data in sent:
        codec.receive_data(data)
    frames = [codec.next_message() for _ in sent]
    assert all(isinstance(f, Audio) and len(f.payload) == 320 for f in frames)
    assert frames[2].payload == b"\x01\x00" * 80 + bytes(160)  # type: ignore[union-attr]  # padded third frame
    assert [f.payload for f in frames[3:]] == [SILENCE_FRAME] * 7  # type: ignore[union-attr]
    assert playout.voice_frames_sent == 3


async def test_a_stall_does_not_cause_a_burst(autojump_clock: trio.testing.MockClock) -> None:
    playout = Playout()
    times: list[float] = []

    async def slow_send(data: bytes) -> None:
        times.append(trio.current_time())
        if len(times) == 3:
            await trio.sleep(0.5)  # the socket stalls for half a second once

    with trio.move_on_after(0.7):
        await playout.run(slow_send)
    gaps = [round(b - a, 3) for a, b in zip(times, times[1:], strict=False)]
    assert gaps[2] == 0.5 and min(gaps) >= 0.02 and playout.late_frames == 1


async def test_flush_reports_what_the_caller_heard(autojump_clock: trio.testing.MockClock) -> None:
    speaking: list[bool] = []
    playout = Playout(on_speaking_change=speaking.append)
    playout.enqueue("a", bytes(320 * 10))
    await record(playout, 0.07)  # frames at 0, 20, 40, 60 ms
    playout.enqueue("b", bytes(320 * 10))  # the report arrived while "a" (the preamble) played
    playout.enqueue("c", bytes(100))  # and the start of a third item, not yet a whole frame
    truncations = playout.flush()
    assert [(t.item_id, t.played_ms) for t in truncations] == [("a", 80), ("b", 0), ("c", 0)]
    assert playout.queued_s == 0 and speaking == [True]
    await record(playout, 0.01)  # the next frame is silence: nothing is left to drop
    assert playout.flush() == [] and speaking == [True, False]


# --- the comfort bed ---------------------------------------------------------------------------------


class FakeComfort:
    """Numbered comfort frames (every sample = the frame's number), and a log of fades."""

    def __init__(self) -> None:
        self.count = 0
        self.log: list[str] = []

    def next_frame(self) -> bytes:
        self.count += 1
        return self.count.to_bytes(2, "little") * 160

    def restart(self) -> None:
        self.log.append(f"restart@{self.count}")

    def fade_out(self) -> list[bytes]:
        self.log.append(f"fade_out@{self.count}")
        return [b"\xff\x7f" * 160, b"\x01\x00" * 160]


def payloads(sent: list[tuple[float, bytes]]) -> list[bytes]:
    codec = AudioSocketCodec(Role.ASTERISK)
    out = []
    for _, data in sent:
        codec.receive_data(data)
        message = codec.next_message()
        assert isinstance(message, Audio) and codec.next_message() is None
        out.append(message.payload)
    return out


def comfort_number(payload: bytes) -> int | None:
    values = set(memoryview(payload).cast("h"))
    return values.pop() if len(values) == 1 and payload != SILENCE_FRAME else None


async def test_comfort_fills_the_silence_paced_and_is_not_speaking(autojump_clock: trio.testing.MockClock) -> None:
    speaking: list[bool] = []
    playout = Playout(on_speaking_change=speaking.append)
    fake = FakeComfort()
    playout.comfort = fake
    sent = await record(playout, 0.05)
    assert payloads(sent) == [SILENCE_FRAME] * 3  # a bed, but not on: silence
    start = trio.current_time()
    playout.comfort_on = True
    sent = await record(playout, 0.19)
    assert [round(t - start, 3) for t, _ in sent] == [round(0.02 * i, 3) for i in range(10)]  # pacing unchanged
    assert [comfort_number(p) for p in payloads(sent)] == list(range(1, 11))
    assert fake.log == ["restart@0"]  # it fades in as it starts
    assert playout.comfort_frames == 10 and playout.voice_frames_sent == 0
    assert speaking == [] and not playout.speaking  # comfort is not speech
    with trio.fail_after(0.001):
        await playout.wait_played()  # nothing to wait for: comfort is not queued speech


async def test_speech_replaces_comfort_and_comfort_resumes_with_a_fade_in(autojump_clock: trio.testing.MockClock) -> None:
    speaking: list[bool] = []
    playout = Playout(on_speaking_change=speaking.append)
    fake = FakeComfort()
    playout.comfort = fake
    playout.comfort_on = True
    await record(playout, 0.05)  # comfort frames 1, 2, 3
    speech = bytes(range(256)) + bytes(range(64))  # one frame no comfort frame could be
    playout.enqueue("answer", speech * 2)
    playout.end_item("answer")
    sent = payloads(await record(playout, 0.09))
    assert sent[:2] == [speech, speech]  # exactly the speech: never summed with comfort
    assert [comfort_number(p) for p in sent[2:]] == [4, 5, 6]  # then the bed again, where it was
    assert fake.log == ["restart@0", "restart@3"]  # ... fading in again
    assert speaking == [True, False] and playout.voice_frames_sent == 2 and playout.comfort_frames == 6


async def test_a_partial_frame_of_speech_does_not_stop_comfort_yet(autojump_clock: trio.testing.MockClock) -> None:
    playout = Playout()
    playout.comfort = FakeComfort()
    playout.comfort_on = True
    playout.enqueue("answer", b"\x05\x00" * 100)  # 200 of 320 bytes: nothing to play yet
    sent = payloads(await record(playout, 0.03))
    assert [comfort_number(p) for p in sent] == [1, 2]
    playout.end_item("answer")  # now a (padded) frame of speech
    sent = payloads(await record(playout, 0.01))
    assert sent == [b"\x05\x00" * 100 + bytes(120)]


async def test_barge_in_stops_comfort_at_once(autojump_clock: trio.testing.MockClock) -> None:
    playout = Playout()
    fake = FakeComfort()
    playout.comfort = fake
    playout.comfort_on = True
    await record(playout, 0.05)
    assert playout.flush() == []
    assert not playout.comfort_on
    sent = payloads(await record(playout, 0.05))
    assert sent == [SILENCE_FRAME] * 3  # no fade-out over the caller's voice
    assert "fade_out@3" not in fake.log
    playout.comfort_on = True  # the session turns it back on later
    sent = payloads(await record(playout, 0.01))
    assert comfort_number(sent[0]) == 4 and fake.log[-1] == "restart@3"


async def test_turning_comfort_off_fades_it_out(autojump_clock: trio.testing.MockClock) -> None:
    playout = Playout()
    fake = FakeComfort()
    playout.comfort = fake
    playout.comfort_on = True
    await record(playout, 0.05)
    playout.comfort_on = False
    sent = payloads(await record(playout, 0.07))
    assert sent == [b"\xff\x7f" * 160, b"\x01\x00" * 160, SILENCE_FRAME, SILENCE_FRAME]
    assert fake.log == ["restart@0", "fade_out@3"] and playout.comfort_frames == 5
    playout.comfort_on = True
    playout.comfort_on = False  # on and off between two ticks: nothing was sounding, nothing to fade
    assert payloads(await record(playout, 0.01)) == [SILENCE_FRAME]


async def test_speech_cuts_a_fade_out(autojump_clock: trio.testing.MockClock) -> None:
    playout = Playout()
    playout.comfort = FakeComfort()
    playout.comfort_on = True
    await record(playout, 0.01)
    playout.comfort_on = False
    playout.enqueue("answer", b"\x07\x00" * 160)
    sent = payloads(await record(playout, 0.05))
    assert sent == [b"\x07\x00" * 160, SILENCE_FRAME, SILENCE_FRAME]


async def test_comfort_without_a_source_is_silence(autojump_clock: trio.testing.MockClock) -> None:
    playout = Playout()
    playout.comfort_on = True
    assert payloads(await record(playout, 0.05)) == [SILENCE_FRAME] * 3 and playout.comfort_frames == 0


async def test_the_real_comfort_audio_through_the_playout(autojump_clock: trio.testing.MockClock) -> None:
    playout = Playout()
    source = ComfortAudio.thinking()
    playout.comfort = source
    playout.comfort_on = True
    sent = payloads(await record(playout, 1.99))
    reference = ComfortAudio.thinking()
    assert sent == [reference.next_frame() for _ in range(100)]
    assert comfort.rms_dbfs(b"".join(sent[10:])) == pytest.approx(comfort.DEFAULT_LEVEL_DBFS, abs=3.0)

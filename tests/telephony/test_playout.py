"""Playout pacing on the virtual clock: one frame every 20 ms from t=0, silence when idle, no bursts."""

import trio
import trio.testing

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

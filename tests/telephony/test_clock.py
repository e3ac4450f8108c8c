"""The shared playout clock (``telephony.clock``) with AudioSocket legs, on Trio's virtual clock.

Many calls, one clock task: every call still gets one frame every 20 ms, caller audio reaches
the call in batches (and the end of an utterance is not held back), a digit or a hang-up is seen
within the tick, a socket that cannot take a frame hands the write to the call's own task (and a
peer that never reads still ends the call), and one call's failure is that call's alone.
"""

from __future__ import annotations

import math
import uuid

import pytest
import trio
import trio.testing

from mikrovoice.net import raw_pipe
from mikrovoice.simulation.network import SimSocket, socket_pair
from mikrovoice.telephony.audiosocket import (
    SLIN8_FRAME_BYTES,
    Audio,
    AudioSocketCodec,
    CallId,
    Dtmf,
    Role,
    encode,
)
from mikrovoice.telephony.audiosocket_leg import AudioSocketLeg
from mikrovoice.telephony.clock import FrameClock
from mikrovoice.telephony.leg import WRITE_STALL_S, CallerAudio, Digit, LegEnded, PeerStalled
from mikrovoice.telephony.server import Playout
from mikrovoice.timings import FRAME_LATENESS

FRAME = encode(Audio(bytes(SLIN8_FRAME_BYTES)))


def frames_in(data: bytes) -> list[Audio]:
    codec = AudioSocketCodec(Role.ASTERISK)
    codec.receive_data(data)
    out = []
    while (message := codec.next_message()) is not None:
        assert isinstance(message, Audio)
        out.append(message)
    return out


#: 20 ms of a 400 Hz tone at a speaking level: slin as Asterisk sends it (the leg's sniffer knows it at once).
TONE = encode(Audio(b"".join(int(8000 * math.sin(2 * math.pi * 400 * n / 8000)).to_bytes(2, "little", signed=True)
                             for n in range(160))))


async def test_many_calls_share_one_clock_and_each_gets_a_frame_every_20_ms(
        autojump_clock: trio.testing.MockClock) -> None:
    clock = FrameClock()
    calls = 10
    arrivals: list[list[float]] = [[] for _ in range(calls)]

    async def asterisk(i: int, end: SimSocket) -> None:
        await end.send_all(encode(CallId(uuid.uuid4())))
        while data := await end.receive_some():
            arrivals[i].extend([trio.current_time()] * len(frames_in(data)))

    async with trio.open_nursery() as nursery:
        legs = []
        for i in range(calls):
            ours, theirs = socket_pair(f"asterisk{i}", f"mikrovoice{i}")
            nursery.start_soon(asterisk, i, ours)
            leg = AudioSocketLeg(theirs, clock=clock)
            assert await leg.start() is not None
            legs.append(leg)
            nursery.start_soon(leg.play, Playout())
            await trio.sleep(0.003)  # calls start at odd moments
        assert clock.ports == calls
        tasks = len(trio.lowlevel.current_root_task().child_nurseries[0].child_tasks)
        await trio.sleep(1.0)
        for leg in legs:
            await leg.aclose()
        nursery.cancel_scope.cancel()
    assert clock.ports == 0 and tasks == 1  # the test's own task: the clock is a system task
    for times in arrivals:
        steady = times[5:]
        gaps = {round(b - a, 6) for a, b in zip(steady, steady[1:], strict=False)}
        assert gaps == {0.02} and 48 <= len(times) <= 56


async def test_caller_audio_comes_in_batches_and_the_end_of_an_utterance_is_not_held(
        autojump_clock: trio.testing.MockClock) -> None:
    clock = FrameClock()
    ours, theirs = socket_pair("asterisk", "mikrovoice")
    leg = AudioSocketLeg(theirs, clock=clock, batch_frames=5)
    await ours.send_all(encode(CallId(uuid.uuid4())))
    assert await leg.start() is not None
    received: list[tuple[float, float | None, int]] = []

    async def reader() -> None:
        while True:
            got = await leg.receive()
            assert isinstance(got, CallerAudio)
            received.append((trio.current_time(), got.read_at, len(got.ulaw)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        for _ in range(25):  # the leg's sniffer needs ~18 frames to know slin from mislabelled G.711
            await ours.send_all(TONE)
            await trio.sleep(0.02)
        await trio.sleep(0.2)
        assert sum(n for _, _, n in received) == 25 * 160  # (the sniffer's hold comes out as one piece)
        received.clear()
        start = trio.current_time()
        for _ in range(7):  # 140 ms of speech, then the phone goes quiet (no frames at all)
            await ours.send_all(TONE)
            await trio.sleep(0.02)
        await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    await leg.aclose()
    # Five frames, one wake-up of the reader, one piece of audio (decoded and measured together),
    # handed over at the tick that read the fifth; then the last two, without waiting for a sixth.
    assert [n for _, _, n in received] == [5 * 160, 2 * 160]
    (woke, read_at, _), (woke_tail, _, _) = received
    assert read_at is not None and woke - read_at < 0.005
    assert 0.08 <= woke - start <= 0.1 + 0.02
    assert woke_tail - start <= 0.14 + 0.02 + 0.02


async def test_a_digit_and_the_hang_up_are_seen_within_the_tick(autojump_clock: trio.testing.MockClock) -> None:
    clock = FrameClock()
    ours, theirs = socket_pair("asterisk", "mikrovoice")
    leg = AudioSocketLeg(theirs, clock=clock, batch_frames=5)
    await ours.send_all(encode(CallId(uuid.uuid4())))
    assert await leg.start() is not None
    sent = trio.current_time()
    await ours.send_all(encode(Dtmf("5")))
    assert await leg.receive() == Digit("5")
    assert trio.current_time() - sent <= 0.02
    sent = trio.current_time()
    await ours.aclose()  # Asterisk closes the connection: the caller hung up
    ended = await leg.receive()
    assert isinstance(ended, LegEnded) and not ended.error and trio.current_time() - sent <= 0.02
    await leg.aclose()
    assert clock.ports == 0


class StuckPipe(trio.abc.Stream):
    """A peer whose receive window closed after ``accept`` bytes: writes without waiting take what
    fits, then nothing; a waiting write never completes."""

    def __init__(self, accept: int) -> None:
        self.room = accept
        self.written = 0

    def try_send(self, data: bytes) -> int:
        n = min(self.room, len(data))
        self.room -= n
        self.written += n
        return n

    def try_receive(self) -> bytes | None:
        return None

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.sleep_forever()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.sleep_forever()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.sleep_forever()
        raise AssertionError

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def test_a_peer_that_stops_reading_gets_the_call_task_and_then_the_stall_error(
        autojump_clock: trio.testing.MockClock) -> None:
    clock = FrameClock()
    pipe = StuckPipe(accept=len(FRAME) * 3 + 100)
    assert raw_pipe(pipe) is pipe
    leg = AudioSocketLeg(pipe, clock=clock)
    clock.attach(leg._port)  # type: ignore[arg-type]  # (start() attaches; this peer sends no UUID)
    began = trio.current_time()
    with pytest.raises(PeerStalled):
        await leg.play(Playout())
    assert pipe.written == len(FRAME) * 3 + 100  # three frames and a part: then the window closed
    assert trio.current_time() - began == pytest.approx(0.06 + WRITE_STALL_S, abs=0.021)
    await leg.aclose()


async def test_a_tick_that_fails_ends_that_call_only(autojump_clock: trio.testing.MockClock) -> None:
    clock = FrameClock()

    class Broken(Playout):
        def next_message(self) -> bytes:
            raise RuntimeError("a bug in one call")

    legs, peers = [], []
    for i in range(2):
        ours, theirs = socket_pair(f"asterisk{i}", f"mikrovoice{i}")
        await ours.send_all(encode(CallId(uuid.uuid4())))
        leg = AudioSocketLeg(theirs, clock=clock)
        assert await leg.start() is not None
        legs.append(leg)
        peers.append(ours)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(legs[0].play, Broken())
        nursery.start_soon(legs[1].play, Playout())
        ended = await legs[0].receive()
        assert isinstance(ended, LegEnded) and ended.error and "a bug in one call" in ended.reason
        await trio.sleep(0.2)
        healthy = frames_in(await peers[1].receive_some())
        assert len(healthy) >= 9 and clock.ports == 1
        nursery.cancel_scope.cancel()
    for leg in legs:
        await leg.aclose()


async def test_lateness_is_measured_per_frame_and_the_clock_stops_with_the_last_call(
        autojump_clock: trio.testing.MockClock) -> None:
    clock = FrameClock()
    ours, theirs = socket_pair("asterisk", "mikrovoice")
    await ours.send_all(encode(CallId(uuid.uuid4())))
    leg = AudioSocketLeg(theirs, clock=clock)
    assert await leg.start() is not None
    before = FRAME_LATENESS.count
    async with trio.open_nursery() as nursery:
        nursery.start_soon(leg.play, Playout())
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    assert 49 <= FRAME_LATENESS.count - before <= 51
    await leg.aclose()
    await trio.sleep(0.1)
    assert clock.ports == 0 and not clock._running


async def test_a_hang_up_on_a_real_socket_is_seen_at_once_not_at_the_next_tick() -> None:
    # The clock reads each call once per 20 ms; the peer's FIN wakes it between ticks (EPOLLRDHUP).
    clock = FrameClock()
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    asterisk = await trio.open_tcp_stream("127.0.0.1", port)
    ours = await listeners[0].accept()
    await asterisk.send_all(encode(CallId(uuid.uuid4())))
    leg = AudioSocketLeg(ours, clock=clock, batch_frames=5)
    assert await leg.start() is not None
    waits = []
    for _ in range(5):
        await trio.sleep(0.0123)  # anywhere between two ticks
        began = trio.current_time()
        await asterisk.send_all(encode(Dtmf("1")))
        assert await leg.receive() == Digit("1")
        waits.append(trio.current_time() - began)
    assert max(waits) < 0.03  # a digit waits for its tick (<= 20 ms; a loaded machine's margin)
    await trio.sleep(0.002)  # just after this call's tick (the digit came at one): the next is 18 ms away
    began = trio.current_time()
    await asterisk.aclose()
    ended = await leg.receive()
    took = trio.current_time() - began
    assert isinstance(ended, LegEnded) and not ended.error and ended.reason == "caller hung up"
    assert took < 0.01
    await leg.aclose()
    await listeners[0].aclose()

"""The AudioSocket leg: what reaches the call from every kind of message Asterisk may send, and
how a broken peer ends it (on trio's virtual clock, over an in-memory stream)."""

import logging
import uuid

import pytest
import trio
import trio.testing

from mikrovoice.sim import voice
from mikrovoice.telephony import g711
from mikrovoice.telephony.audiosocket import Audio, CallId, Kind, encode
from mikrovoice.telephony.audiosocket_leg import AudioSocketLeg
from mikrovoice.telephony.leg import CallerAudio, Digit, LegEnded, LegStart
from mikrovoice.telephony.sniff import Verdict

CALL = uuid.UUID("40325ec2-5efd-4bd3-805f-53576e581d13")


async def leg_with(data: bytes, *, close: bool = True) -> tuple[AudioSocketLeg, trio.testing.MemorySendStream]:
    ours, theirs = trio.testing.memory_stream_pair()
    await theirs.send_all(encode(CallId(CALL)) + data)
    if close:
        await theirs.aclose()
    leg = AudioSocketLeg(ours, partial_frame_timeout_s=1.0)
    assert await leg.start() == LegStart(str(CALL))
    return leg, theirs  # type: ignore[return-value]


async def events(leg: AudioSocketLeg) -> list[object]:
    out: list[object] = []
    while True:
        event = await leg.receive()
        out.append(event)
        if isinstance(event, LegEnded):
            return out


async def test_digits_as_asterisk_forwards_them(caplog: pytest.LogCaptureFixture) -> None:
    data = b"".join(bytes((0x03, 0, 1, ord(d))) for d in "5#a dX") + bytes((0x03, 0, 1, 0xFF))
    leg, _ = await leg_with(data)
    with caplog.at_level(logging.WARNING):
        got = await events(leg)
    assert got == [Digit("5"), Digit("#"), Digit("A"), Digit("D"), Digit("X"), LegEnded("caller hung up")]
    unknown = [r.getMessage() for r in caplog.records if "call.dtmf_unknown" in r.getMessage()]
    assert len(unknown) == 2  # " " and 0xff: logged, never fatal


@pytest.mark.parametrize("kind", [Kind.SLIN16, Kind.SLIN24, Kind.SLIN44, Kind.SLIN48, Kind.SLIN192])
async def test_every_slin_rate_reaches_the_model_at_8_khz(kind: Kind) -> None:
    from mikrovoice.telephony.audiosocket import SAMPLE_RATES
    from mikrovoice.telephony.resample import Resampler

    speech = voice.speak("Dame el tráfico SFP") + bytes(320)  # a frame of silence carries the filters' delay out
    wide = Resampler(8000, SAMPLE_RATES[kind]).process(speech)
    frame = SAMPLE_RATES[kind] // 50 * 2  # 20 ms
    leg, _ = await leg_with(b"".join(encode(Audio(wide[i : i + frame], kind)) for i in range(0, len(wide), frame)))
    got = await events(leg)
    ulaw = b"".join(e.ulaw for e in got if isinstance(e, CallerAudio))
    assert abs(len(ulaw) - len(speech) // 2) <= 1
    assert voice.hear(g711.ulaw_to_slin(ulaw)) == "Dame el tráfico SFP"


async def test_mulaw_labelled_as_slin_is_found_held_and_taken_as_mulaw(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    ulaw = g711.slin_to_ulaw(voice.speak("Hola, buenas tardes, necesito ayuda"))
    ours, theirs = trio.testing.memory_stream_pair()
    leg = AudioSocketLeg(ours)
    got: list[object] = []

    async def asterisk() -> None:  # Dial(AudioSocket/...) without c(slin) on a G.711 leg
        await theirs.send_all(encode(CallId(CALL)))
        for i in range(0, len(ulaw), 160):
            await theirs.send_all(bytes((0x10,)) + (160).to_bytes(2, "big") + ulaw[i : i + 160].ljust(160, b"\xff"))
            await trio.sleep(0.02)
        await theirs.aclose()

    with caplog.at_level(logging.WARNING):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(asterisk)
            await leg.start()
            got = await events(leg)
    assert leg.mislabelled is Verdict.ULAW
    heard = b"".join(e.ulaw for e in got if isinstance(e, CallerAudio))
    assert heard.startswith(ulaw)  # byte for byte: nothing was taken as slin, nothing lost
    (warning,) = [r.getMessage() for r in caplog.records if "call.audiosocket_mislabelled" in r.getMessage()]
    assert "c(slin)" in warning


async def test_an_unknown_kind_ends_the_leg_on_its_header(autojump_clock: trio.testing.MockClock) -> None:
    leg, theirs = await leg_with(bytes((0x07, 0xFF, 0xFF)), close=False)  # 65535 bytes announced, none sent
    with trio.fail_after(0.001):
        (ended,) = await events(leg)
    assert isinstance(ended, LegEnded) and ended.error and "unknown AudioSocket kind 0x07" in ended.reason


async def test_a_message_cut_short_ends_the_leg_after_the_partial_frame_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    leg, theirs = await leg_with(encode(Audio(bytes(320)))[:100], close=False)
    start = trio.current_time()
    got = await events(leg)
    assert got[-1] == LegEnded("an AudioSocket message was begun and not finished within 1 s", error=True)
    assert trio.current_time() - start == pytest.approx(1.0)


async def test_a_silent_peer_is_not_the_legs_to_judge(autojump_clock: trio.testing.MockClock) -> None:
    # Nothing after the UUID: a silent phone or a dead peer; the session's inactivity watch decides.
    leg, theirs = await leg_with(b"", close=False)
    with trio.move_on_after(600) as waited:
        await leg.receive()
    assert waited.cancelled_caught


async def test_a_law_labelled_as_slin_is_decoded_by_its_law(autojump_clock: trio.testing.MockClock) -> None:
    # An A-law leg (the PSTN's law in Colombia) behind Dial(AudioSocket/...) without c(slin).
    speech = voice.speak("Hola, buenas tardes, necesito ayuda")
    alaw = g711.slin_to_alaw(speech + bytes(640))
    ours, theirs = trio.testing.memory_stream_pair()
    leg = AudioSocketLeg(ours)

    async def asterisk() -> None:
        await theirs.send_all(encode(CallId(CALL)))
        for i in range(0, len(alaw), 160):
            await theirs.send_all(bytes((0x10,)) + (160).to_bytes(2, "big") + alaw[i : i + 160].ljust(160, b"\xd5"))
            await trio.sleep(0.02)
        await theirs.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(asterisk)
        await leg.start()
        got = await events(leg)
    assert leg.mislabelled is Verdict.ALAW
    heard = g711.ulaw_to_slin(b"".join(e.ulaw for e in got if isinstance(e, CallerAudio)))
    assert voice.hear(heard) == "Hola, buenas tardes, necesito ayuda"

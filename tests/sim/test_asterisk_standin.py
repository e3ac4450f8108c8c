"""The Asterisk stand-in behaves as the measured Asterisk: the dialplan app's 2 s rule as
app_audiosocket.c has it (neither side sent anything), none for the channel driver, any payload
length, DTMF bytes as Asterisk forwards them, and a WAV recording of what the caller heard."""

import wave
from pathlib import Path

import pytest
import trio
import trio.testing

from mikrovoice.sim import voice
from mikrovoice.sim.asterisk import AsteriskCaller, CallerScript, Interjection, Line, PressDigit, Question
from mikrovoice.telephony.audiosocket import Audio, AudioSocketCodec, CallId, Dtmf, Role, encode


async def serve(handler: object, caller: AsteriskCaller) -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, handler, 0)
        port = listeners[0].socket.getsockname()[1]
        await caller.call("127.0.0.1", port)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("mode", ["app", "dial"])
async def test_the_apps_2_s_rule_is_about_both_sides(mode: str, autojump_clock: trio.testing.MockClock) -> None:
    # A server that reads and never writes; a silent caller that sends no frames: after the UUID
    # neither side sends anything. The app gives up after 2 s; the channel driver never does.
    async def mute(stream: trio.SocketStream) -> None:
        while await stream.receive_some(65536):
            pass

    caller = AsteriskCaller(CallerScript(line=Line(mode=mode), hangup_at_s=10.0, greeting_timeout_s=60.0))
    await serve(mute, caller)
    if mode == "app":
        assert caller.report.error == "Reached timeout after 2000 ms of no activity"
        assert caller.report.hung_up_at == pytest.approx(2.0, abs=0.05)
    else:
        assert caller.report.error is None and caller.report.hung_up_at == pytest.approx(10.0, abs=0.05)


async def test_odd_lengths_dtmf_bytes_and_the_recording(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    greeting = voice.speak("Hola, soy el asistente.")
    received: list[object] = []

    async def server(stream: trio.SocketStream) -> None:
        # Speak once in messages of odd sizes: Asterisk takes len/2 samples of each and drops the
        # odd byte (RA L421); then silence.
        data = greeting + bytes(3200)
        for start in range(0, len(data), 320):
            payload = data[start : start + 320] + b"\x7f"
            await stream.send_all(bytes((0x10,)) + len(payload).to_bytes(2, "big") + payload)
            await trio.sleep(0.02)
        codec = AudioSocketCodec(Role.SERVER)
        while chunk := await stream.receive_some(65536):
            codec.receive_data(chunk)
            while (message := codec.next_message()) is not None:
                received.append(message)

    wav = tmp_path / "heard.wav"
    script = CallerScript((Question("hola", ".", 5.0),), (Interjection(0, 0.1, PressDigit("a")),
                                                         Interjection(0, 0.2, PressDigit("X"))),
                          hangup_after_s=0.5)
    caller = AsteriskCaller(script, record_wav=wav)
    await serve(server, caller)
    assert [Dtmf("a"), Dtmf("X")] == [m for m in received if isinstance(m, Dtmf)]
    assert isinstance(received[0], CallId) and any(isinstance(m, Audio) for m in received)
    with wave.open(str(wav)) as recording:
        assert (recording.getframerate(), recording.getsampwidth(), recording.getnchannels()) == (8000, 2, 1)
        heard = recording.readframes(recording.getnframes())
    assert [text for _, _, text in voice.hear_lenient(heard)][:1] == ["Hola, soy el asistente."]
    assert encode(Audio(bytes(2)))  # the codec still builds what the server sends

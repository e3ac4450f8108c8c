"""What the simulated caller hears: comfort audio is sound (not dead air) but never speech.

Frame by frame (``is_sound``, ``is_speech``), through the caller's listening (utterances around
comfort audio still decode to the right words), and over a whole call against a small AudioSocket
service built on the real ``Playout``: its dead air during a 5 s wait is filled by comfort audio,
and only by comfort audio loud enough to be heard.
"""

import math

import numpy as np
import pytest
import trio
import trio.testing

from mikrovoice.call import comfort
from mikrovoice.call.comfort import ComfortAudio
from mikrovoice.sim import asterisk, voice
from mikrovoice.sim.asterisk import AsteriskCaller, CallerScript, CallReport, Question, is_sound, is_speech
from mikrovoice.telephony import g711
from mikrovoice.telephony.audiosocket import FRAME_SECONDS, Audio, Hangup
from mikrovoice.telephony.server import AudioSocketStream, ComfortSource, Playout

GREETING = "Hola, soy el asistente del NOC."
QUESTION = "¿Cuántos dispositivos hay?"
ANSWER = "Respuesta: el router tiene 12 dispositivos activos."
SILENCE = bytes(320)


def frames(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + 320] for i in range(0, len(pcm), 320)]


def noise_frames(level_dbfs: float, count: int, seed: int = 5) -> list[bytes]:
    """White noise, every 20 ms frame of it at ``level_dbfs`` RMS."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((count, 160))
    x *= comfort.dbfs_to_rms(level_dbfs) / np.sqrt(np.mean(x * x, axis=1, keepdims=True))
    return frames(np.round(x).astype("<i2").tobytes())


def texture(level_dbfs: float, count: int) -> list[bytes]:
    """``count`` frames of the thinking texture as the playout sends it (after its fade-in)."""
    source = ComfortAudio.thinking(level_dbfs)
    fade = math.ceil(comfort.FADE_IN_S / FRAME_SECONDS)
    return [source.next_frame() for _ in range(fade + count)][fade:]


# --- frame by frame ---------------------------------------------------------------------------------


def test_the_dead_air_line_is_the_default_comfort_level_minus_6_db() -> None:
    assert asterisk.DEAD_AIR_DBFS == comfort.DEFAULT_LEVEL_DBFS - 6.0 == -42.0
    assert asterisk.SOUND_RMS == pytest.approx(261.0, abs=1.0)
    assert all(is_sound(f) for f in noise_frames(-41.5, 50))
    assert not any(is_sound(f) for f in noise_frames(-42.5, 50))


@pytest.mark.parametrize("level", [-36.0, -30.0, -24.0])
def test_the_whole_comfort_loop_is_sound_and_never_speech(level: float) -> None:
    loop = ComfortAudio.thinking(level).loop
    every_frame = frames(loop)
    assert len(every_frame) == comfort.LOOP_S / FRAME_SECONDS
    assert all(is_sound(f) for f in every_frame)  # (a) comfort audio is not dead air ...
    assert not any(is_speech(f) for f in every_frame)  # ... and not speech
    # Judged on the purer 10 ms half (so that audio off the grid is still speech): under 0.67.
    assert max(asterisk.tone_purity(f) for f in every_frame) < asterisk.TONE_PURITY - 0.1
    if level == -24.0:  # energy alone would take it for speech: the purity test is what tells
        assert sum(voice.block_rms(f) >= voice.SPEECH_RMS for f in every_frame) == len(every_frame)


@pytest.mark.parametrize("companded", [False, True])
def test_tone_voice_is_speech(companded: bool) -> None:
    pcm = voice.speak("Sigo consultando: 3 de 12 routers ya respondieron.")
    if companded:
        pcm = g711.ulaw_to_slin(g711.slin_to_ulaw(pcm))
    assert all(is_speech(f) and is_sound(f) for f in frames(pcm))
    assert min(asterisk.tone_purity(f) for f in frames(pcm)) > 0.99


@pytest.mark.parametrize("offset", [1, 22, 40, 79, 80, 81, 120, 159])
def test_tone_voice_off_the_20_ms_grid_is_speech(offset: int) -> None:
    # A real PBX (format_wav drops 44 bytes), a resampler or a MixMonitor recording shifts the
    # symbols off the frame grid: every frame but the one where the utterance begins is speech.
    pcm = g711.ulaw_to_slin(g711.slin_to_ulaw(bytes(2 * offset) + voice.speak("Sigo consultando: 3 de 12.")))
    loud = [f for f in frames(pcm[: len(pcm) // 320 * 320]) if voice.block_rms(f) >= voice.SPEECH_RMS]
    assert sum(not is_speech(f) for f in loud) <= 1


def test_silence_and_quiet_noise_are_dead_air() -> None:
    # (c) digital silence, -50 dBFS hiss and the simulator's own line noise are all dead air.
    assert not is_sound(SILENCE) and not is_speech(SILENCE)
    assert not any(is_sound(f) or is_speech(f) for f in noise_frames(-50.0, 200))
    caller = AsteriskCaller(CallerScript())
    line_noise = list(caller._noise)  # 8 kHz slin frames
    assert len(line_noise[0]) == 320 and any(line_noise[0])
    assert not any(is_sound(f) for f in line_noise)
    # ... and so is the comfort texture turned down below the line.
    assert not any(is_sound(f) for f in texture(-50.0, 200))
    # The first frames of a fade-in are quiet too: a restart costs well under 0.1 s of dead air.
    source = ComfortAudio.thinking()
    assert [is_sound(source.next_frame()) for _ in range(8)].index(True) <= 4


def fft_purity(frame: bytes) -> float:
    """tone_purity's definition: the strongest non-DC bin's share of each 10 ms half's energy, by FFT."""
    samples = np.frombuffer(frame, "<i2").astype(np.float64)
    shares = []
    for half in (samples[:80], samples[80:]):
        energy = float(half @ half)
        spectrum = np.fft.rfft(half)
        power = spectrum.real[1:] ** 2 + spectrum.imag[1:] ** 2
        shares.append(0.0 if energy <= 0.0 else min(1.0, 2.0 * float(power.max()) / (80 * energy)))
    return max(shares)


def test_the_purity_of_a_frame_is_its_fft_definition() -> None:
    # 20 ms frames take a matrix product instead of two FFTs: the same shares up to rounding,
    # on and off the grid, companded, for noise, comfort audio, a lone click and silence.
    speech = voice.speak("Sigo consultando: 3 de 12.")
    shifted = g711.ulaw_to_slin(g711.slin_to_ulaw(bytes(2 * 37) + speech))
    every = (frames(speech) + frames(shifted[: len(shifted) // 320 * 320]) + noise_frames(-20.0, 50)
             + texture(-36.0, 50) + [SILENCE, b"\x01\x00" + bytes(318)])
    assert all(len(f) == 320 for f in every)
    assert max(abs(asterisk.tone_purity(f) - fft_purity(f)) for f in every) < 1e-9
    assert asterisk.tone_purity(SILENCE) == 0.0


# --- the caller's listening ---------------------------------------------------------------------------


def listen(caller: AsteriskCaller, audio: list[bytes], start: float = 0.0) -> None:
    for index, frame in enumerate(audio):
        caller._listen(frame, start + (index + 1) * FRAME_SECONDS)
    caller._flush_heard(start + (len(audio) + 1) * FRAME_SECONDS)


@pytest.mark.parametrize("level", [-36.0, -24.0])
def test_utterances_around_comfort_audio_decode_to_their_words(level: float) -> None:
    # (b) an utterance, 3 s of comfort audio, another utterance, and comfort again.
    first, second = "Un momento, estoy consultando.", "Sigo consultando: 3 de 12 routers ya respondieron."
    bed = texture(level, 300)
    audio = frames(voice.speak(first)) + bed[:150] + frames(voice.speak(second)) + bed[150:]
    caller = AsteriskCaller(CallerScript())
    listen(caller, audio)
    assert [h.text for h in caller.report.heard] == [first, second]
    first_end = caller.report.heard[0].end
    assert first_end == pytest.approx(voice.duration_s(first), abs=1e-9)
    assert caller.report.heard[1].start == pytest.approx(first_end + 3.0, abs=1e-9)
    # All of it was sound: one stretch, no dead air at all.
    assert caller.report.sound == [(0.0, pytest.approx(len(audio) * FRAME_SECONDS))]


def test_without_the_purity_test_comfort_audio_would_be_heard_as_noise() -> None:
    """The control: the decoder alone, on the same audio, hears something unintelligible."""
    first, second = "Un momento.", "Sigo consultando."
    bed = texture(-24.0, 150)
    audio = b"".join(frames(voice.speak(first)) + bed + frames(voice.speak(second)))
    heard = voice.hear_lenient(audio)
    assert None in [text for _, _, text in heard]
    assert [text for _, _, text in heard if text] == [first, second]


def test_dead_air_between_stretches_of_sound() -> None:
    caller = AsteriskCaller(CallerScript())
    audio = texture(-36.0, 50) + [SILENCE] * 100 + noise_frames(-50.0, 50) + texture(-36.0, 50)
    listen(caller, audio)
    assert caller.report.sound == [(0.0, pytest.approx(1.0)), (pytest.approx(4.0), pytest.approx(5.0))]
    assert caller.report.heard == []  # sound, but no words


# --- a whole call -------------------------------------------------------------------------------------


async def service(stream: trio.abc.Stream, comfort_source: ComfortSource | None, wait_s: float) -> None:
    """Greets, waits for the question to end, plays comfort audio for ``wait_s``, answers, stays."""
    playout = Playout()
    playout.comfort = comfort_source
    inbound = AudioSocketStream(stream)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(playout.run, stream.send_all)
            playout.enqueue("greeting", voice.speak(GREETING))
            playout.end_item("greeting")
            heard_question = False
            while True:
                message = await inbound.receive()
                if isinstance(message, Hangup):
                    return
                if isinstance(message, Audio):
                    if voice.block_rms(message.payload) >= voice.SPEECH_RMS:
                        heard_question = True
                    elif heard_question:
                        break  # the question is over
            playout.comfort_on = True  # the query runs
            await trio.sleep(wait_s)
            playout.enqueue("answer", voice.speak(ANSWER))
            playout.end_item("answer")
            await trio.sleep_forever()  # comfort stays on after the answer: it must not be heard as words
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return


async def call(comfort_source: ComfortSource | None, wait_s: float = 5.0) -> CallReport:
    script = CallerScript((Question(QUESTION, "Respuesta", 30.0),), silence="silence", hangup_after_s=2.0)
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(service, server, comfort_source, wait_s)
        report = await AsteriskCaller(script).run(client)
        nursery.cancel_scope.cancel()
    return report


@pytest.mark.parametrize("level", [-36.0, -24.0])
async def test_comfort_audio_fills_the_dead_air_of_a_query(autojump_clock: trio.testing.MockClock, level: float) -> None:
    report = await call(ComfortAudio.thinking(level))
    assert report.error is None
    assert [h.text for h in report.heard] == [GREETING, ANSWER]  # comfort before and after: no extra words
    (question,) = report.questions
    assert question.answer == ANSWER
    assert question.answered_at - question.finished_asking_at == pytest.approx(5.0, abs=0.1)  # type: ignore[operator]
    assert question.max_dead_air_s <= 0.15  # the reaction and the fade-in, no more


@pytest.mark.parametrize("bed", ["none", "too quiet"])
async def test_without_audible_comfort_the_wait_is_dead_air(autojump_clock: trio.testing.MockClock, bed: str) -> None:
    report = await call(None if bed == "none" else ComfortAudio.thinking(-50.0))
    assert [h.text for h in report.heard] == [GREETING, ANSWER]
    assert report.questions[0].max_dead_air_s == pytest.approx(5.0, abs=0.1)

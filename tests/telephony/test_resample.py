"""The slin resampler: passband, stopband, exact chunking invariance, exact length, the tone voice."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from mikrovoice.sim.voice import hear, speak
from mikrovoice.telephony.resample import Resampler

RATES = (12000, 16000, 24000, 32000, 44100, 48000, 96000, 192000)
PAIRS = [(rate, 8000) for rate in RATES] + [(8000, rate) for rate in RATES]
AMPLITUDE = 16000.0


def tone(freq: float, rate: int, seconds: float, amplitude: float = AMPLITUDE) -> bytes:
    n = np.arange(round(rate * seconds))
    return np.rint(amplitude * np.sin(2 * np.pi * freq * n / rate + 0.3)).astype("<i2").tobytes()


def resample(rate_in: int, rate_out: int, pcm: bytes) -> bytes:
    resampler = Resampler(rate_in, rate_out)
    return resampler.process(pcm) + resampler.flush()


def samples(pcm: bytes) -> NDArray[np.float64]:
    return np.frombuffer(pcm, "<i2").astype(np.float64)


def level_db(pcm: bytes, rate: int) -> float:
    """RMS level relative to a sine of AMPLITUDE, leaving out 50 ms at each end (filter edges)."""
    x = samples(pcm)[rate // 20 : -rate // 20]
    return 10 * math.log10(max(float(np.mean(x * x)), 1e-12) / (AMPLITUDE**2 / 2))


def test_equal_rates_pass_through_keeping_a_trailing_odd_byte() -> None:
    resampler = Resampler(8000, 8000)
    assert resampler.delay == 0
    assert resampler.process(b"\x01\x02\x03") == b"\x01\x02"
    assert resampler.process(b"\x04\x05") == b"\x03\x04"
    assert resampler.flush() == b""


@pytest.mark.parametrize(("rate_in", "rate_out"), PAIRS)
def test_a_1_khz_tone_passes_within_half_a_db(rate_in: int, rate_out: int) -> None:
    assert abs(level_db(resample(rate_in, rate_out, tone(1000, rate_in, 0.5)), rate_out)) < 0.5


@pytest.mark.parametrize("rate_in", RATES)
def test_tones_above_4_2_khz_are_attenuated_40_db_going_to_8_khz(rate_in: int) -> None:
    for freq in (4200.0, 6000.0, 0.9 * rate_in / 2):
        if freq < rate_in / 2:
            assert level_db(resample(rate_in, 8000, tone(freq, rate_in, 0.5)), 8000) < -40, freq


@pytest.mark.parametrize("rate_out", RATES)
def test_upsampling_leaves_no_image_above_4_2_khz(rate_out: int) -> None:
    out = samples(resample(8000, rate_out, tone(3000, 8000, 0.5)))[rate_out // 20 : -rate_out // 20]
    power = np.abs(np.fft.rfft(out * np.hanning(out.size))) ** 2
    freqs = np.fft.rfftfreq(out.size, 1 / rate_out)
    assert 10 * math.log10(power[freqs > 4200].sum() / power.sum()) < -40


@pytest.mark.parametrize(("rate_in", "rate_out"), PAIRS)
def test_silence_in_silence_out_and_a_constant_passes_exactly(rate_in: int, rate_out: int) -> None:
    silence = resample(rate_in, rate_out, bytes(2 * rate_in // 10))
    assert silence == bytes(len(silence)) and len(silence) > 0
    constant = samples(resample(rate_in, rate_out, np.full(rate_in // 10, -1234, "<i2").tobytes()))
    delay = Resampler(rate_in, rate_out).delay
    assert np.all(constant[2 * delay : -2 * delay] == -1234)


@pytest.mark.parametrize(("rate_in", "rate_out"), [(16000, 8000), (8000, 48000), (44100, 8000)])
def test_loud_audio_is_clipped_not_wrapped(rate_in: int, rate_out: int) -> None:
    # A full-scale square wave overshoots at its edges (Gibbs): the overshoot must saturate.
    square = np.where(np.sin(2 * np.pi * 500 * np.arange(rate_in // 10) / rate_in) >= 0, 32767, -32768)
    out = samples(resample(rate_in, rate_out, square.astype("<i2").tobytes()))
    assert out.max() == 32767 and out.min() == -32768
    delay = Resampler(rate_in, rate_out).delay
    # Away from the edges the output follows the square wave's sign: nothing wrapped around.
    expected = np.sign(np.sin(2 * np.pi * 500 * (np.arange(out.size) - delay) / rate_out))
    steady = np.abs(np.sin(2 * np.pi * 500 * (np.arange(out.size) - delay) / rate_out)) > 0.5
    steady[: 2 * delay] = steady[-2 * delay :] = False  # before the input starts, after it ends
    assert np.all(np.sign(out[steady]) == expected[steady])


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(PAIRS),
    st.binary(min_size=0, max_size=3000),
    st.lists(st.integers(min_value=0, max_value=3000), max_size=12),
)
def test_output_is_identical_however_the_input_is_chunked(pair: tuple[int, int], pcm: bytes, cuts: list[int]) -> None:
    rate_in, rate_out = pair
    whole = Resampler(rate_in, rate_out)
    expected = whole.process(pcm) + whole.flush()
    chunked = Resampler(rate_in, rate_out)
    out, start = [], 0
    for cut in sorted(min(cut, len(pcm)) for cut in cuts) + [len(pcm)]:
        out.append(chunked.process(pcm[start:cut]))
        start = cut
    out.append(chunked.flush())
    assert b"".join(out) == expected


@pytest.mark.parametrize(("rate_in", "rate_out"), [(192000, 8000), (8000, 192000), (44100, 8000)])
def test_a_long_chunk_in_one_call_equals_20_ms_frames(rate_in: int, rate_out: int) -> None:
    """Seconds of audio in one call (computed a bounded number of blocks at a time) = framed."""
    noise = np.random.default_rng(7).integers(-32768, 32768, 3 * rate_in).astype("<i2").tobytes()
    whole = Resampler(rate_in, rate_out)
    framed = Resampler(rate_in, rate_out)
    frame = 2 * rate_in // 50
    pieces = [framed.process(noise[i : i + frame]) for i in range(0, len(noise), frame)]
    assert whole.process(noise) + whole.flush() == b"".join(pieces) + framed.flush()


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(PAIRS), st.lists(st.integers(min_value=0, max_value=2000), min_size=1, max_size=20))
def test_total_output_is_exactly_floor_n_times_out_over_in(pair: tuple[int, int], chunks: list[int]) -> None:
    rate_in, rate_out = pair
    resampler = Resampler(rate_in, rate_out)
    total_in = total_out = 0
    for size in chunks:
        total_out += len(resampler.process(bytes(size))) // 2
        total_in += size
        assert total_out == (total_in // 2) * rate_out // rate_in
    tail = len(resampler.flush()) // 2
    assert tail == (resampler.delay if total_in >= 2 else 0)


def test_flush_resets_for_a_new_stream() -> None:
    pcm = tone(1000, 44100, 0.1)
    resampler = Resampler(44100, 8000)
    first = resampler.process(pcm) + resampler.flush()
    assert resampler.process(pcm) + resampler.flush() == first
    assert resampler.flush() == b""


def test_twenty_ms_frames_give_twenty_ms_frames_in_the_long_run() -> None:
    resampler = Resampler(44100, 8000)
    out = [resampler.process(tone(1000, 44100, 0.02)) for _ in range(50)]
    assert {len(frame) for frame in out} == {320}  # the delay is inside the output, not a missing head


@pytest.mark.parametrize("rate", [16000, 24000, 44100, 48000])
def test_the_tone_voice_survives_a_round_trip(rate: int) -> None:
    up, down = Resampler(8000, rate), Resampler(rate, 8000)
    back = down.process(up.process(speak("hola router 26.1")) + up.flush()) + down.flush()
    lag = round(up.delay * 8000 / rate) + down.delay  # the two filter delays, in 8 kHz samples
    assert hear(back[2 * lag :]) == "hola router 26.1"


def test_rates_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Resampler(0, 8000)

"""ToneVoice: the numpy implementation against a verbatim copy of the original pure-Python one.

The reference functions below (``ref_*``) are the module as it was before it was vectorised;
the new code must give the same bytes, the same decodes and the same errors on any input.
"""

from __future__ import annotations

import math
import random
import sys
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from operator import mul
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from mikrovoice.sim import voice
from mikrovoice.telephony import g711

# --- reference: the original pure-Python ToneVoice, unchanged apart from names ----------------

RATE = 8000
BLOCK = 160
_START, _END = 16, 17
_BIG_ENDIAN = sys.byteorder == "big"
_BINS = tuple(10 + 2 * i for i in range(18))
AMPLITUDE = 6000
SPEECH_RMS = 600.0

_TONES = tuple(
    array("h", (round(AMPLITUDE * math.sin(2 * math.pi * k * n / BLOCK)) for n in range(BLOCK)))
    for k in _BINS
)
_COS = tuple(tuple(math.cos(2 * math.pi * k * n / BLOCK) for n in range(BLOCK)) for k in _BINS)
_SIN = tuple(tuple(math.sin(2 * math.pi * k * n / BLOCK) for n in range(BLOCK)) for k in _BINS)


class RefUnintelligibleSpeech(ValueError):
    pass


def ref_speak(text: str) -> bytes:
    symbols = [_START]
    for byte in text.encode("utf-8"):
        symbols += [byte >> 4, byte & 0x0F]
    symbols.append(_END)
    pcm = array("h")
    for symbol in symbols:
        pcm.extend(_TONES[symbol])
    return _ref_little_endian(pcm)


def ref_block_rms(pcm_block: bytes) -> float:
    return _ref_rms(_ref_samples(pcm_block))


def ref_symbol(block: array[int] | list[int]) -> int:
    best, best_power = -1, 0.0
    for i in range(len(_BINS)):
        re = sum(map(mul, block, _COS[i]))
        im = sum(map(mul, block, _SIN[i]))
        power = re * re + im * im
        if power > best_power:
            best, best_power = i, power
    return best


def ref_hear(pcm: bytes) -> str:
    utterances = ref_hear_all(pcm)
    if not utterances:
        raise RefUnintelligibleSpeech("no framed utterance in the audio")
    return " ".join(text for _, _, text in utterances)


def ref_hear_all(pcm: bytes) -> list[tuple[float, float, str]]:
    samples = _ref_samples(pcm)
    found: list[tuple[float, float, str]] = []
    body: list[int] | None = None
    start = 0
    for index in range(len(samples) // BLOCK):
        block = samples[index * BLOCK : (index + 1) * BLOCK]
        if _ref_rms(block) < SPEECH_RMS:
            continue
        symbol = ref_symbol(block)
        if body is None:
            if symbol != _START:
                raise RefUnintelligibleSpeech(f"speech without a start tone at {index * BLOCK / RATE:.2f} s")
            body, start = [], index
        elif symbol == _END:
            found.append((start * BLOCK / RATE, (index + 1) * BLOCK / RATE, _ref_text(body)))
            body = None
        else:
            body.append(symbol)
    if body is not None:
        raise RefUnintelligibleSpeech("utterance without its end tone")
    return found


def _ref_text(body: list[int]) -> str:
    if len(body) % 2 or any(s > 15 for s in body):
        raise RefUnintelligibleSpeech("utterance has a broken symbol sequence")
    data = bytes((body[i] << 4) | body[i + 1] for i in range(0, len(body), 2))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RefUnintelligibleSpeech("utterance is not UTF-8") from exc


def _ref_rms(samples: array[int]) -> float:
    return math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0


def _ref_samples(pcm: bytes) -> array[int]:
    samples = array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if _BIG_ENDIAN:
        samples.byteswap()
    return samples


def _ref_little_endian(samples: array[int]) -> bytes:
    if _BIG_ENDIAN:
        samples = array("h", samples)
        samples.byteswap()
    return samples.tobytes()


# --- helpers -----------------------------------------------------------------------------------


def outcome(function: Callable[[bytes], Any], pcm: bytes) -> tuple[str, Any]:
    """The result, or the error's class name, message and cause, so both versions compare."""
    try:
        return ("ok", function(pcm))
    except ValueError as exc:  # UnintelligibleSpeech and its reference twin are ValueErrors
        name = (
            "UnintelligibleSpeech"
            if isinstance(exc, voice.UnintelligibleSpeech | RefUnintelligibleSpeech)
            else type(exc).__name__
        )
        return (name, (str(exc), type(exc.__cause__).__name__))


def assert_same_decode(pcm: bytes) -> None:
    new, ref = outcome(voice.hear_all, pcm), outcome(ref_hear_all, pcm)
    assert new == ref
    if new[0] == "ok":
        assert all(type(a) is float and type(b) is float and type(t) is str for a, b, t in new[1])
    else:
        with pytest.raises(ValueError) as raised:
            voice.hear_all(pcm)
        assert (new[0] == "UnintelligibleSpeech") == isinstance(raised.value, voice.UnintelligibleSpeech)
    assert outcome(voice.hear, pcm) == outcome(ref_hear, pcm)


def samples_to_pcm(samples: list[int]) -> bytes:
    return _ref_little_endian(array("h", (max(-32768, min(32767, s)) for s in samples)))


def noise(blocks: int, amplitude: int, seed: int) -> bytes:
    rng = random.Random(seed)
    return samples_to_pcm([round(rng.gauss(0, amplitude)) for _ in range(blocks * BLOCK)])


def tone(k: int, amplitude: float, phase: float = 0.0) -> list[int]:
    """One block of a sinusoid at ``k`` cycles per block (not necessarily a ToneVoice bin)."""
    return [round(amplitude * math.sin(2 * math.pi * k * n / BLOCK + phase)) for n in range(BLOCK)]


def mix(*blocks: list[int]) -> list[int]:
    return [max(-32768, min(32767, sum(parts))) for parts in zip(*blocks, strict=True)]


def fast_symbols(blocks: list[list[int]]) -> list[int]:
    """The new decoder's symbols for whole blocks, loud or not."""
    samples: NDArray[np.float64] = np.array(blocks, dtype=np.int16).astype(np.float64)
    return voice._symbols(samples, np.sqrt((samples * samples).sum(axis=1) / BLOCK))


@dataclass(frozen=True)
class Utterance:
    text: str
    keep_blocks: int | None  # truncate the utterance to this many blocks (None: whole)

    def pcm(self) -> bytes:
        audio = voice.speak(self.text)
        return audio if self.keep_blocks is None else audio[: self.keep_blocks * 2 * BLOCK]


@dataclass(frozen=True)
class Gap:
    blocks: int
    amplitude: int  # 0: digital silence; ~30: line noise; >= 600: loud enough to count as speech
    seed: int

    def pcm(self) -> bytes:
        return (
            bytes(2 * BLOCK * self.blocks)
            if self.amplitude == 0
            else noise(self.blocks, self.amplitude, self.seed)
        )


texts = st.text(max_size=10)
utterances = st.builds(Utterance, texts, st.none() | st.none() | st.integers(0, 20))
gaps = st.builds(
    Gap, st.integers(1, 6), st.sampled_from([0, 0, 0, 30, 30, 200, 700, 3000, 12000]), st.integers(0, 2**32)
)
audio_settings = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])


def compose(
    parts: list[Utterance | Gap], leading_blocks: int, offset: int, tail_cut: int, companded: bool
) -> bytes:
    pcm = bytes(2 * BLOCK * leading_blocks + 2 * offset) + b"".join(part.pcm() for part in parts)
    if companded:
        pcm = g711.ulaw_to_slin(g711.slin_to_ulaw(pcm))
    return pcm[: len(pcm) - tail_cut] if tail_cut else pcm


# --- speak, duration_s, block_rms --------------------------------------------------------------


@given(st.text())
@example("")
@example("Ist der Uplink auf Router 7 oben? \u00fc\u20ac\U0001f4de")
def test_speak_matches_reference(text: str) -> None:
    assert voice.speak(text) == ref_speak(text)
    assert type(voice.speak(text)) is bytes
    assert len(voice.speak(text)) == round(voice.duration_s(text) * RATE) * 2


def test_speak_rejects_what_the_reference_rejects() -> None:
    with pytest.raises(UnicodeEncodeError):
        ref_speak("\ud800")
    with pytest.raises(UnicodeEncodeError):
        voice.speak("\ud800")


@given(st.binary(max_size=700))
@example(b"")
@example(b"\x01")
@example(b"\x00\x80" * 160)  # every sample -32768
@example(b"\xff\x7f" * 160)  # every sample 32767
def test_block_rms_matches_reference(pcm: bytes) -> None:
    expected = ref_block_rms(pcm)
    for view in (pcm, bytearray(pcm), memoryview(pcm)):
        got = voice.block_rms(view)
        assert type(got) is float
        assert got == expected  # exact: the sum of squares is an exact integer in both versions
        assert math.isclose(got, expected, rel_tol=1e-9, abs_tol=0.0)


def test_block_rms_of_a_tone_and_of_silence() -> None:
    assert voice.block_rms(bytes(320)) == 0.0
    assert voice.block_rms(voice.speak("a")[:320]) == pytest.approx(AMPLITUDE / math.sqrt(2), rel=1e-3)


# --- hear_all / hear ---------------------------------------------------------------------------


@audio_settings
@given(st.lists(texts, min_size=1, max_size=3), st.booleans())
def test_hear_all_decodes_speech_like_the_reference(said: list[str], companded: bool) -> None:
    pcm = compose([Utterance(t, None) for t in said], 0, 0, 0, companded)
    assert_same_decode(pcm)
    assert [text for _, _, text in voice.hear_all(pcm)] == said


@audio_settings
@given(
    st.lists(utterances | gaps, max_size=5),
    st.integers(0, 5),
    st.sampled_from([0, 0, 0, 1, 2, 161, 319]),
    st.booleans(),
)
def test_hear_all_matches_reference_on_mixed_audio(
    parts: list[Utterance | Gap], leading_blocks: int, tail_cut: int, companded: bool
) -> None:
    """Utterances (whole or truncated), silence and noise between them at block boundaries,
    leading silence, cut tails, with and without G.711. All of it on the 20 ms grid: off the grid
    the decoder finds each utterance's own start, where the original one misread or gave up
    (tests/sim/test_voice_offsets.py)."""
    assert_same_decode(compose(parts, leading_blocks, 0, tail_cut, companded))


@audio_settings
@given(st.binary(max_size=4 * 2 * BLOCK))
def test_hear_all_matches_reference_on_arbitrary_bytes(pcm: bytes) -> None:
    assert_same_decode(pcm)


@pytest.mark.parametrize(
    ("pcm", "message"),
    [
        (b"", "no framed utterance"),
        (noise(3, 3000, 1), "speech without a start tone at 0.00 s"),
        (bytes(640) + voice.speak("x")[320:], "speech without a start tone at 0.04 s"),
        (voice.speak("hello")[:-320], "utterance without its end tone"),
        (
            voice.speak("hello")[:320] + voice.speak("h")[320:640] + voice.speak("x")[-320:],
            "broken symbol sequence",
        ),
        (voice.speak("\u00fc")[: 320 * 3] + voice.speak("x")[-320:], "not UTF-8"),
    ],
)
def test_errors_match_reference(pcm: bytes, message: str) -> None:
    assert_same_decode(pcm)
    with pytest.raises(voice.UnintelligibleSpeech, match=message):
        voice.hear(pcm)


def test_times_and_input_types() -> None:
    pcm = bytes(2 * BLOCK * 3) + voice.speak("hi") + noise(2, 30, 7) + voice.speak("there")
    expected = [(0.06, 0.18, "hi"), (0.22, 0.46, "there")]
    assert ref_hear_all(pcm) == expected
    for view in (pcm, bytearray(pcm), memoryview(pcm), memoryview(b"\x00" + pcm)[1:]):
        assert voice.hear_all(view) == expected
        assert voice.hear(view) == "hi there"


# --- the symbol decision: ties and near-ties ----------------------------------------------------


def flat_blocks() -> list[list[int]]:
    """Blocks whose 18 powers are all (nearly) equal or (nearly) zero: only exact float sums decide."""
    blocks: list[list[int]] = [
        [0] * BLOCK,
        [1000] * BLOCK,
        [-32768] * BLOCK,
        [3000 * (-1) ** n for n in range(BLOCK)],
    ]
    for n in (0, 1, 40, 79, 80, 159):  # impulses: every bin has the same power in exact arithmetic
        blocks.append([20000 if i == n else 0 for i in range(BLOCK)])
    return blocks


def orbit_block(multiplier: int, seed: int, amplitude: int) -> list[int]:
    """Random samples constant on the orbits of n -> multiplier * n (mod 160).

    Such a block's DFT has |X[k]| == |X[multiplier * k]| exactly, so bins tie in exact arithmetic
    and only the rounding of the sums separates them.
    """
    rng = random.Random(seed)
    values: dict[int, int] = {}
    block = []
    for n in range(BLOCK):
        orbit, m = set(), n
        while m not in orbit:
            orbit.add(m)
            m = m * multiplier % BLOCK
        block.append(values.setdefault(min(orbit), rng.randint(-amplitude, amplitude)))
    return block


UNITS = [m for m in range(3, BLOCK, 2) if m % 5]  # the multipliers invertible mod 160


def test_symbols_match_reference_on_ties_and_degenerate_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    exact = voice._exact_symbol

    def counting(block: list[int]) -> int:
        nonlocal calls
        calls += 1
        return exact(block)

    monkeypatch.setattr(voice, "_exact_symbol", counting)
    flat = flat_blocks()
    got = fast_symbols(flat)
    assert got == [ref_symbol(block) for block in flat]
    assert got[0] == -1  # every power 0: no symbol
    assert got[4] == 0  # an impulse at n=0 ties every bin exactly: the first one wins
    assert calls == len(flat)  # every one of them went through the exact decoder

    calls = 0
    ties = [orbit_block(m, seed, 20000) for m in UNITS for seed in range(4)]
    pairs = [  # two bins at equal strength (up to the rounding of the samples)
        mix(tone(_BINS[i], 3000, phase), tone(_BINS[j], 3000, 2 * phase))
        for i in range(len(_BINS))
        for j in range(i + 1, len(_BINS))
        for phase in (0.0, 0.5)
    ]
    blocks = ties + pairs + [tone(k, 6000) for k in (9, 11, 31, 45, 47)]  # and tones between the bins
    assert fast_symbols(blocks) == [ref_symbol(block) for block in blocks]
    assert calls >= 20  # some orbit blocks tie at the top


@settings(deadline=None, max_examples=200)
@given(st.sampled_from(UNITS), st.integers(0, 2**32), st.sampled_from([700, 3000, 32767]))
def test_symbols_match_reference_on_tied_bins(multiplier: int, seed: int, amplitude: int) -> None:
    block = orbit_block(multiplier, seed, amplitude)
    assert fast_symbols([block]) == [ref_symbol(block)]
    pcm = ref_speak("ok")[: 2 * BLOCK * 3] + samples_to_pcm(block) + ref_speak("")[-2 * BLOCK :]
    assert_same_decode(pcm)


@settings(deadline=None, max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 80), st.sampled_from([1, 50, 3000, 3000, 6000, 20000]), st.floats(0, 2 * math.pi)
        ),
        min_size=1,
        max_size=3,
    )
)
def test_symbols_match_reference_on_tone_mixtures(components: list[tuple[int, int, float]]) -> None:
    block = mix(*(tone(k, amplitude, phase) for k, amplitude, phase in components))
    assert fast_symbols([block]) == [ref_symbol(block)]


def test_clean_and_companded_speech_never_needs_the_exact_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    def unexpected(block: list[int]) -> int:
        raise AssertionError("a clear symbol went to the slow path")

    pcm = voice.speak("".join(chr(c) for c in range(32, 127)) + "\u00fc\u20ac\U0001f4de")
    monkeypatch.setattr(voice, "_exact_symbol", unexpected)
    for audio in (pcm, g711.ulaw_to_slin(g711.slin_to_ulaw(pcm))):
        assert voice.hear(audio) == ref_hear(audio)


def test_a_lenient_listener_hears_the_words_around_a_cut() -> None:
    whole = voice.speak("Respondieron 12 de 12 routers.")
    cut = whole[: len(whole) // 2]  # an answer cut off mid-word, e.g. by a barge-in flush
    farewell = voice.speak("Lo siento, el asistente no está disponible.")
    gap = bytes(320 * 5)
    heard = voice.hear_lenient(cut + farewell + gap + whole)
    assert [text for _, _, text in heard] == [None, "Lo siento, el asistente no está disponible.",
                                              "Respondieron 12 de 12 routers."]
    assert heard[0][0] == 0.0 and heard[1][0] == len(cut) / 16000
    with pytest.raises(voice.UnintelligibleSpeech):
        voice.hear_all(cut + farewell)  # the strict decoder gives up on the whole stretch
    # On clean speech both decoders agree; noise before speech is reported, not fatal.
    clean = whole + gap + farewell
    assert voice.hear_lenient(clean) == voice.hear_all(clean)
    loud_noise = voice.speak("x")[320 * 2 : 320 * 3]  # a lone symbol block: speech without a start tone
    assert voice.hear_lenient(loud_noise + gap + whole)[0][2] is None

"""ToneVoice off the 20 ms grid: each utterance is decoded from its own start, found to the sample.

A real Asterisk moves audio off the grid of a buffer: ``format_wav`` drops the last 44 bytes (22
samples) of every file it plays, MixMonitor recordings start anywhere, jitter and mixing shift
things. These properties put utterances at any sample offset, each its own, with and without
G.711, with line noise or comfort noise around them, with their last 22 samples missing, and
check the words and the times (``start_s`` to the sample; ``end_s`` is where the end tone's 20 ms
block ends, also when its last samples are missing). Noise and comfort audio never become words
off the grid. Aligned audio keeps the grid decoder (tests/sim/test_voice.py holds it to the
original one), without ever taking the slow path.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from mikrovoice.call.comfort import ComfortAudio, dbfs_to_rms
from mikrovoice.sim import voice
from mikrovoice.telephony import g711
from tests.sim.test_voice import Gap, Utterance, assert_same_decode, compose, utterances

RATE, BLOCK = 8000, 160
FORMAT_WAV_LOSS = 22  # samples: the 44 bytes format_wav drops at the end of every file it plays
LINE_RMS = 30.0  # our line noise
COMFORT_RMS = dbfs_to_rms(-36.0)  # comfort noise at -36 dBFS: RMS ~519, under voice.SPEECH_RMS

offset_settings = settings(deadline=None, max_examples=120, suppress_health_check=[HealthCheck.too_slow])
texts = st.text(max_size=12)
backgrounds = st.sampled_from(["silence", "line", "comfort"])


def tones(text: str) -> NDArray[np.float64]:
    return np.frombuffer(voice.speak(text), "<i2").astype(np.float64)


def background(kind: str, samples: int, seed: int) -> NDArray[np.float64]:
    """Digital silence, line noise, or comfort noise: white noise whose every 20 ms block on the
    buffer's grid has the level's RMS (so that no block of it alone is loud enough for speech)."""
    if kind == "silence":
        return np.zeros(samples)
    blocks = np.random.default_rng(seed).standard_normal((-(-samples // BLOCK), BLOCK))
    blocks *= (LINE_RMS if kind == "line" else COMFORT_RMS) / np.sqrt(
        np.mean(blocks * blocks, axis=1, keepdims=True)
    )
    return blocks.reshape(-1)[:samples]


def pcm_of(samples: NDArray[np.float64], companded: bool) -> bytes:
    pcm = np.clip(np.round(samples), -32768, 32767).astype("<i2").tobytes()
    return g711.ulaw_to_slin(g711.slin_to_ulaw(pcm)) if companded else pcm


@dataclass(frozen=True)
class Said:
    text: str
    gap: int  # samples of background before it (after the previous one): any offset, 0 = touching
    clipped: bool  # its last 22 samples are missing (format_wav)


def lay_out(
    said: list[Said], kind: str, trail: int, seed: int, companded: bool
) -> tuple[bytes, list[tuple[float, float, str]]]:
    """The utterances over a background, and what a decoder must hear: (start_s, end_s, text)."""
    pieces, expected, at = [], [], 0
    for item in said:
        at += item.gap
        audio = tones(item.text)
        expected.append((at / RATE, (at + audio.size) / RATE, item.text))
        if item.clipped:
            audio = audio[:-FORMAT_WAV_LOSS]
        pieces.append((at, audio))
        at += audio.size
    samples = background(kind, at + trail, seed)
    for start, audio in pieces:
        samples[start : start + audio.size] = audio
    return pcm_of(samples, companded), expected


def heard(pcm: bytes) -> list[tuple[float, float, str | None]]:
    return voice.hear_lenient(pcm)


# --- one utterance, anywhere ------------------------------------------------------------------


@offset_settings
@given(
    texts,
    st.integers(0, BLOCK - 1),
    st.integers(0, 3),
    st.booleans(),
    backgrounds,
    st.booleans(),
    st.integers(FORMAT_WAV_LOSS, 3 * BLOCK) | st.integers(0, FORMAT_WAV_LOSS),
    st.integers(0, 2**32 - 1),
)
@example("Hola.", 1, 0, False, "silence", False, FORMAT_WAV_LOSS, 0)
@example("¿Cuántos dispositivos hay?", 80, 1, True, "comfort", True, FORMAT_WAV_LOSS, 1)
@example("", 159, 0, True, "line", True, 0, 2)
@example("Adiós.", 0, 2, True, "silence", False, 0, 3)
def test_an_utterance_decodes_at_any_offset(
    text: str, offset: int, lead_blocks: int, clipped: bool, kind: str, companded: bool, trail: int, seed: int
) -> None:
    """One utterance, anywhere, followed by ``trail`` samples of background. If it lost its last 22
    samples and the audio ends before where they would end, it still decodes off the grid; on the
    grid its 20 ms blocks must all be there, as the original decoder required."""
    pcm, expected = lay_out([Said(text, lead_blocks * BLOCK + offset, clipped)], kind, trail, seed, companded)
    if clipped and trail < FORMAT_WAV_LOSS and offset == 0:
        with pytest.raises(voice.UnintelligibleSpeech, match="utterance without its end tone"):
            voice.hear_all(pcm)
        start = lead_blocks * BLOCK
        assert heard(pcm) == [(start / RATE, (start + tones(text).size - BLOCK) / RATE, None)]
        return
    assert voice.hear_all(pcm) == expected
    assert voice.hear(pcm) == text
    assert heard(pcm) == expected
    assert voice.hear_all(memoryview(b"\x00" + pcm)[1:]) == voice.hear_all(bytearray(pcm)) == expected


@offset_settings
@given(
    st.lists(
        st.builds(
            Said,
            texts,
            st.sampled_from([0, 0, 1, 22, 80, 159, 160, 161, 480]) | st.integers(0, 1000),
            st.booleans(),
        ),
        min_size=1,
        max_size=4,
    ),
    backgrounds,
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_utterances_each_at_its_own_offset(said: list[Said], kind: str, companded: bool, seed: int) -> None:
    """Several utterances, each at its own offset: apart, touching, overlapping by the 22 samples
    format_wav drops (the next one starts where the clipped one stops)."""
    pcm, expected = lay_out(said, kind, BLOCK, seed, companded)
    assert voice.hear_all(pcm) == expected
    assert heard(pcm) == expected


@offset_settings
@given(
    st.lists(st.tuples(texts, st.integers(0, 3)), min_size=1, max_size=5),
    st.integers(0, BLOCK - 1),
    st.booleans(),
)
def test_files_played_one_after_another_by_format_wav(
    files: list[tuple[str, int]], recording_offset: int, companded: bool
) -> None:
    """Asterisk plays .wav files one after another, each missing its last 44 bytes, with whole
    20 ms frames of silence between them or none; a recording starts anywhere. Every file after the
    first is 22 samples further off the grid than the one before."""
    stream, expected, at = bytes(2 * recording_offset), [], recording_offset
    for text, pause_frames in files:
        wav = voice.speak(text)
        stream += wav[: -2 * FORMAT_WAV_LOSS] + bytes(2 * BLOCK * pause_frames)
        expected.append((at / RATE, (at + len(wav) // 2) / RATE, text))
        at += len(wav) // 2 - FORMAT_WAV_LOSS + BLOCK * pause_frames
    pcm = stream + bytes(2 * BLOCK)  # the line goes on after the last file
    if companded:
        pcm = g711.ulaw_to_slin(g711.slin_to_ulaw(pcm))
    assert voice.hear_all(pcm) == expected
    assert heard(pcm) == expected


def in_order(heard_texts: list[str], said: list[str]) -> bool:
    rest = iter(said)
    return all(any(text == candidate for candidate in rest) for text in heard_texts)


@offset_settings
@given(
    st.lists(
        utterances | st.builds(Gap, st.integers(1, 6), st.sampled_from([0, 30, 200]), st.integers(0, 2**32)),
        max_size=5,
    ),
    st.integers(0, 5),
    st.integers(0, BLOCK - 1),
    st.sampled_from([0, 0, 0, 1, 2, 161, 319]),
    st.booleans(),
)
def test_mixed_audio_off_the_grid(
    parts: list[Utterance | Gap], leading_blocks: int, offset: int, tail_cut: int, companded: bool
) -> None:
    """test_voice's mixed audio (utterances whole or truncated, silence and quiet noise between
    them, cut tails) shifted off the grid: the whole utterances are heard, in order, and nothing
    else; truncated ones are unintelligible."""
    pcm = compose(parts, leading_blocks, offset, tail_cut, companded)
    whole = [isinstance(part, Utterance) and part.pcm() == voice.speak(part.text) for part in parts]
    said = [
        part.text
        for part, is_whole in zip(parts, whole, strict=True)
        if isinstance(part, Utterance) and is_whole
    ]
    words = [text for _, _, text in heard(pcm) if text is not None]
    assert in_order(words, said)
    try:
        strict = [text for _, _, text in voice.hear_all(pcm)]
    except voice.UnintelligibleSpeech:
        strict = None
    if (
        all(isinstance(part, Gap) or is_whole for part, is_whole in zip(parts, whole, strict=True))
        and not tail_cut
    ):
        assert words == said == strict
    else:
        assert strict is None or in_order(strict, said)


# --- what cannot be decoded ---------------------------------------------------------------------


@offset_settings
@given(
    texts, texts, st.integers(BLOCK, 10_000), st.integers(0, BLOCK - 1), st.integers(0, 400), st.booleans()
)
def test_a_cut_utterance_is_unintelligible_and_the_next_one_heard(
    first: str, second: str, keep: int, offset: int, gap: int, companded: bool
) -> None:
    """An answer cut anywhere (a barge-in flush), then another one at its own offset, touching it or
    not: a lenient listener hears the cut as unintelligible and the next one whole."""
    cut = tones(first + "0123456789")  # long enough to be cut before its end tone
    cut = cut[: min(keep, cut.size - BLOCK)]
    audio = tones(second)
    start = offset + cut.size + gap
    samples = np.zeros(start + audio.size + BLOCK)
    samples[offset : offset + cut.size] = cut
    samples[start : start + audio.size] = audio
    pcm = pcm_of(samples, companded)
    got = heard(pcm)
    assert [text for _, _, text in got] == [None, second]
    assert got[0][0] == offset / RATE
    assert got[1] == (start / RATE, (start + audio.size) / RATE, second)
    with pytest.raises(voice.UnintelligibleSpeech):
        voice.hear_all(pcm)


@offset_settings
@given(st.integers(0, BLOCK - 1), st.sampled_from(["\u00fc", "ab", "\u20ac"]), st.booleans())
def test_a_broken_utterance_off_the_grid_is_unintelligible(offset: int, text: str, companded: bool) -> None:
    """A symbol sequence that is not UTF-8 (or has a symbol too many), anywhere: None, not words."""
    whole = tones(text)
    broken = np.concatenate([whole[: 2 * BLOCK], whole[3 * BLOCK :]])  # one symbol dropped
    samples = np.zeros(offset + broken.size + BLOCK)
    samples[offset : offset + broken.size] = broken
    pcm = pcm_of(samples, companded)
    assert [text for _, _, text in heard(pcm)] == [None]
    with pytest.raises(voice.UnintelligibleSpeech):
        voice.hear_all(pcm)


@functools.cache
def comfort_loop(level_dbfs: float) -> NDArray[np.float64]:
    return np.frombuffer(ComfortAudio.thinking(level_dbfs).loop, "<i2").astype(np.float64)


@offset_settings
@given(
    st.sampled_from([-42.0, -36.0, -30.0, -24.0, -18.0, -12.0]),
    st.integers(0, 16 * RATE - 1),
    st.integers(0, 5 * RATE),
    st.booleans(),
)
def test_comfort_audio_is_never_words(level: float, start: int, samples: int, companded: bool) -> None:
    """The thinking texture, from any sample of its loop, at any level (loud ones included)."""
    loop = comfort_loop(level)
    pcm = pcm_of(np.roll(loop, -start)[:samples], companded)
    assert all(text is None for _, _, text in heard(pcm))
    try:
        assert voice.hear_all(pcm) == []
    except voice.UnintelligibleSpeech:
        pass


@offset_settings
@given(
    st.sampled_from([30.0, 300.0, 519.0]), st.integers(0, 5 * RATE), st.integers(0, 2**32 - 1), st.booleans()
)
def test_quiet_noise_is_silence(rms: float, samples: int, seed: int, companded: bool) -> None:
    """White noise under the speech level in every 20 ms block, line noise to comfort noise."""
    noise = np.random.default_rng(seed).standard_normal((-(-samples // BLOCK), BLOCK))
    noise *= rms / np.sqrt(np.mean(noise * noise, axis=1, keepdims=True))
    pcm = pcm_of(noise.reshape(-1)[:samples], companded)
    assert voice.hear_all(pcm) == [] == heard(pcm)


@offset_settings
@given(
    st.sampled_from([700.0, 3000.0, 12000.0, 30000.0]), st.integers(0, 2 * RATE), st.integers(0, 2**32 - 1)
)
def test_loud_noise_is_never_read_off_the_grid(rms: float, samples: int, seed: int) -> None:
    """Loud white noise: the decoders give exactly what the grid decoder gives (the original: now and
    then it reads a block of loud noise as a symbol, as it always has); the search for shifted
    utterances finds none in it."""
    pcm = pcm_of(np.random.default_rng(seed).normal(0.0, rms, samples), False)
    assert_same_decode(pcm)
    for start, _, text in heard(pcm):
        assert text is None or round(start * RATE) % BLOCK == 0


@offset_settings
@given(
    st.lists(st.tuples(texts, st.integers(0, 2000)), min_size=1, max_size=3),
    st.sampled_from([-42.0, -36.0, -30.0, -24.0]),
    st.integers(0, 16 * RATE - 1),
    st.booleans(),
)
def test_a_lenient_listener_hears_the_words_between_comfort_audio(
    said: list[tuple[str, int]], level: float, phase: int, companded: bool
) -> None:
    """Utterances at any offsets with the thinking texture between them (as the playout sends it:
    speech replaces it, never mixes with it). Where it is loud enough for speech it is heard as
    unintelligible, and the words all the same, at their places."""
    at, expected, samples = 0, [], np.roll(comfort_loop(level), -phase)
    for text, gap in said:
        at += gap
        audio = tones(text)
        samples[at : at + audio.size] = audio
        expected.append((at / RATE, (at + audio.size) / RATE, text))
        at += audio.size
    pcm = pcm_of(samples[: at + BLOCK], companded)
    assert [item for item in heard(pcm) if item[2] is not None] == expected


# --- aligned audio: the grid decoder, fast ------------------------------------------------------


@offset_settings
@given(
    st.lists(st.tuples(texts, st.integers(0, 4)), min_size=1, max_size=4),
    st.sampled_from(["silence", "line"]),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_aligned_audio_never_takes_the_slow_path(
    said: list[tuple[str, int]], kind: str, companded: bool, seed: int
) -> None:
    """Utterances on the 20 ms grid (touching or whole blocks apart) are decoded on the grid alone;
    and reading them at sample resolution would give the same (the rule finds their starts exactly
    at their grid blocks)."""
    pcm, expected = lay_out(
        [Said(text, blocks * BLOCK, False) for text, blocks in said], kind, BLOCK, seed, companded
    )
    grid = voice._Grid(pcm)
    assert grid.shifted() == grid.strict()

    def slow_path(self: voice._Grid) -> list[tuple[int, int, str | None]]:
        raise AssertionError("aligned audio went the slow path")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(voice._Grid, "shifted", slow_path)
        assert voice.hear_all(pcm) == expected
        assert heard(pcm) == expected

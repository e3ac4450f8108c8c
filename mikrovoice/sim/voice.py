"""ToneVoice: a modem that stands in for speech, so simulated words cross the real audio path.

Text is sent as UTF-8, one 4-bit symbol per 20 ms block (160 samples at 8 kHz), each symbol a
pure tone on an exact bin of a 160-point DFT, framed by a start and an end tone. It has speech
energy (so energy VAD hears it), takes about as long as speech (40 ms per byte) and survives
G.711 companding, so the simulated model can "transcribe" what the simulated caller said and the
caller can "hear" the model's words. Decoding needs symbols aligned to 20 ms blocks, which the
AudioSocket framing and the playout padding preserve. Pure code: samples in, text out.

Speed matters because whole calls are simulated far faster than real time. ``speak`` joins
precomputed tone bytes (one 40 ms piece per UTF-8 byte). ``block_rms`` and ``hear_all`` use
numpy: ``hear_all`` views the audio as a (blocks, 160) matrix, finds the loud blocks by their
(exact) energy, and takes the 18 DFT bins of all of them with one matrix product. The result is
the same as summing each bin sample by sample in Python (the original definition, kept as
``_exact_symbol``): a block's symbol is taken from the matrix product only when the strongest
bin beats every other bin by more than any rounding difference between the two summation orders
could bridge (a bound from the block's RMS); ties, near-ties, and blocks with no energy in any
bin (symbol -1) are decided by ``_exact_symbol`` itself.
"""

from __future__ import annotations

import math
from operator import mul
from typing import Final

import numpy as np
from numpy.typing import NDArray

RATE = 8000
BLOCK = 160  # samples per symbol: 20 ms
_START, _END = 16, 17
_BINS = tuple(10 + 2 * i for i in range(18))  # 500 Hz .. 2200 Hz, 100 Hz apart
AMPLITUDE = 6000
#: Per-sample RMS above which a block counts as speech (tones are ~4200, line noise ~30).
SPEECH_RMS = 600.0

_PCM: Final = np.dtype("<i2")  # slin: signed 16-bit little-endian, whatever the host order

# One 20 ms block of each symbol's tone, as little-endian PCM bytes.
_TONES = tuple(
    np.array(
        [round(AMPLITUDE * math.sin(2 * math.pi * k * n / BLOCK)) for n in range(BLOCK)], dtype=_PCM
    ).tobytes()
    for k in _BINS
)
# The two symbols of every possible UTF-8 byte, high nibble first: 40 ms of audio each.
_BYTE_TONES = tuple(_TONES[byte >> 4] + _TONES[byte & 0x0F] for byte in range(256))

# The DFT basis, computed exactly as the original pure-Python decoder did (math.cos/math.sin).
_COS = tuple(tuple(math.cos(2 * math.pi * k * n / BLOCK) for n in range(BLOCK)) for k in _BINS)
_SIN = tuple(tuple(math.sin(2 * math.pi * k * n / BLOCK) for n in range(BLOCK)) for k in _BINS)
# (160, 36): the cosine columns of the 18 bins, then their sine columns.
_BASIS: NDArray[np.float64] = np.array(_COS + _SIN, dtype=np.float64).T.copy()
# How far apart two float evaluations of one bin's re (or im) can be, per unit of the block's RMS.
# Any summation order of the 160 products x[n] * c[n] with |c[n]| <= 1 (Python's left-to-right
# sum, its compensated sum since 3.12, BLAS with or without FMA) is within 160 * 2**-53 / (1 -
# 160 * 2**-53) * sum|x| of the exact value, and sum|x| <= 160 * RMS (Cauchy-Schwarz), so two
# evaluations differ by at most about 5.7e-12 * RMS; 1e-10 leaves a margin of more than 15.
_ROUNDING = 1e-10
# Relative slack for the rounding of the squares, the sum and the square root of a bin's power.
_RELATIVE_SLACK = 1e-12


class UnintelligibleSpeech(ValueError):
    """The audio does not carry a well-formed ToneVoice utterance."""


def speak(text: str) -> bytes:
    """Text to signed 16-bit little-endian PCM at 8 kHz, a whole number of 20 ms blocks."""
    return b"".join([_TONES[_START], *map(_BYTE_TONES.__getitem__, text.encode("utf-8")), _TONES[_END]])


def duration_s(text: str) -> float:
    return (2 * len(text.encode("utf-8")) + 2) * BLOCK / RATE


def block_rms(pcm_block: bytes | bytearray | memoryview) -> float:
    """RMS of signed 16-bit little-endian samples (a trailing odd byte is ignored); 0.0 if none."""
    # Inlined _samples: this runs for every 20 ms frame of a simulated call.
    count = (pcm_block.nbytes if isinstance(pcm_block, memoryview) else len(pcm_block)) // 2
    if not count:
        return 0.0
    wide = np.frombuffer(pcm_block, _PCM, count).astype(np.int64)
    # The sum of squares is an exact integer, so this is the correctly rounded RMS, as before.
    return math.sqrt(int(wide.dot(wide)) / count)


def _exact_symbol(block: list[int]) -> int:
    """The defining decoder: strongest bin by sequential float sums; -1 if every power is 0."""
    best, best_power = -1, 0.0
    for i in range(len(_BINS)):
        re = sum(map(mul, block, _COS[i]))
        im = sum(map(mul, block, _SIN[i]))
        power = re * re + im * im
        if power > best_power:
            best, best_power = i, power
    return best


def _symbols(blocks: NDArray[np.float64], rms: NDArray[np.float64]) -> list[int]:
    """``_exact_symbol`` of each row of ``blocks`` (n x BLOCK integer samples; ``rms``: their RMS).

    One matrix product gives every bin's re and im. The sequential sums of ``_exact_symbol`` may
    differ from them by up to 5.7e-12 * RMS in re and in im, so by sqrt(2) times that in a bin's
    magnitude sqrt(power). Where the strongest bin's magnitude beats the runner-up's by more than
    3 * _ROUNDING * RMS (over 30 times the most that two magnitudes can move towards each other)
    plus a relative slack for rounding, the sequential sums also rank that bin strictly first, with
    a positive power: it is the symbol. Ties, near-ties and blocks with no energy in any bin (all
    powers 0: symbol -1) go to ``_exact_symbol`` itself, so argmax tie-breaks never matter.
    """
    if not blocks.shape[0]:
        return []
    dft = blocks @ _BASIS
    re, im = dft[:, : len(_BINS)], dft[:, len(_BINS) :]
    power = re * re + im * im
    best = power.argmax(axis=1)
    top_two = np.sqrt(np.partition(power, -2, axis=1)[:, -2:])
    first, second = top_two[:, 1], top_two[:, 0]
    clear = first - second > 3.0 * _ROUNDING * rms + _RELATIVE_SLACK * first
    symbols: list[int] = best.tolist()
    for row in np.flatnonzero(~clear).tolist():
        symbols[row] = _exact_symbol(blocks[row].astype(np.int64).tolist())
    return symbols


def hear(pcm: bytes | bytearray | memoryview) -> str:
    """Decode exactly one utterance; raises ``UnintelligibleSpeech`` if there is none."""
    utterances = hear_all(pcm)
    if not utterances:
        raise UnintelligibleSpeech("no framed utterance in the audio")
    return " ".join(text for _, _, text in utterances)


def _loud_symbols(pcm: bytes | bytearray | memoryview) -> list[tuple[int, int]]:
    """(block index, symbol) of every block loud enough to be speech, in order."""
    samples = _samples(pcm)
    count = samples.size // BLOCK
    blocks = samples[: count * BLOCK].reshape(count, BLOCK).astype(np.float64)
    # Sums of integer squares below 2**53 are exact in float64 whatever the order, and / and
    # sqrt round correctly, so this is bit for bit the RMS that block_rms (and the original) gives.
    rms = np.sqrt(np.einsum("ij,ij->i", blocks, blocks) / BLOCK)
    loud = np.flatnonzero(~(rms < SPEECH_RMS))
    return list(zip(loud.tolist(), _symbols(blocks[loud], rms[loud]), strict=True))


def hear_all(pcm: bytes | bytearray | memoryview) -> list[tuple[float, float, str]]:
    """Decode every utterance in PCM whose blocks are aligned to 20 ms from its first sample.

    Returns ``(start_s, end_s, text)`` per utterance, times relative to the start of ``pcm``.
    Silent blocks are skipped; a utterance with broken framing or UTF-8 raises.
    """
    found: list[tuple[float, float, str]] = []
    body: list[int] | None = None
    start = 0
    for index, symbol in _loud_symbols(pcm):
        if body is None:
            if symbol != _START:
                raise UnintelligibleSpeech(f"speech without a start tone at {index * BLOCK / RATE:.2f} s")
            body, start = [], index
        elif symbol == _END:
            found.append((start * BLOCK / RATE, (index + 1) * BLOCK / RATE, _text(body)))
            body = None
        else:
            body.append(symbol)
    if body is not None:
        raise UnintelligibleSpeech("utterance without its end tone")
    return found


def hear_lenient(pcm: bytes | bytearray | memoryview) -> list[tuple[float, float, str | None]]:
    """Like ``hear_all``, but what cannot be decoded becomes ``(start_s, end_s, None)`` and decoding
    goes on: an utterance cut short (a new start tone before its end tone), speech without a start
    tone, a broken symbol sequence. A listener hears the words around a cut, as a person would."""
    found: list[tuple[float, float, str | None]] = []
    body: list[int] | None = None
    start = noise = last = -1
    for index, symbol in _loud_symbols(pcm):
        if symbol == _START:
            if body is not None or noise >= 0:
                found.append(((start if body is not None else noise) * BLOCK / RATE, (last + 1) * BLOCK / RATE, None))
            body, start, noise = [], index, -1
        elif body is None:
            noise = index if noise < 0 else noise
        elif symbol == _END:
            try:
                text: str | None = _text(body)
            except UnintelligibleSpeech:
                text = None
            found.append((start * BLOCK / RATE, (index + 1) * BLOCK / RATE, text))
            body = None
        else:
            body.append(symbol)
        last = index
    if body is not None or noise >= 0:
        found.append(((start if body is not None else noise) * BLOCK / RATE, (last + 1) * BLOCK / RATE, None))
    return found


def _text(body: list[int]) -> str:
    if len(body) % 2 or any(s > 15 for s in body):
        raise UnintelligibleSpeech("utterance has a broken symbol sequence")
    data = bytes((body[i] << 4) | body[i + 1] for i in range(0, len(body), 2))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnintelligibleSpeech("utterance is not UTF-8") from exc


def _samples(pcm: bytes | bytearray | memoryview) -> NDArray[np.int16]:
    """A read-only view of the whole 16-bit samples in ``pcm`` (a trailing odd byte is ignored)."""
    size = pcm.nbytes if isinstance(pcm, memoryview) else len(pcm)
    return np.frombuffer(pcm, _PCM, size // 2)

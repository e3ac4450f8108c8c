"""ToneVoice: a modem that stands in for speech, so simulated words cross the real audio path.

Text is sent as UTF-8, one 4-bit symbol per 20 ms block (160 samples at 8 kHz), each symbol a
pure tone on an exact bin of a 160-point DFT, framed by a start and an end tone. It has speech
energy (so energy VAD hears it), takes about as long as speech (40 ms per byte) and survives
G.711 companding, so the simulated model can "transcribe" what the simulated caller said and the
caller can "hear" the model's words. Pure code: samples in, text out.

Decoding does not need the audio aligned to 20 ms: every decoder finds each utterance's own start
at sample resolution, because a real Asterisk moves audio off the 20 ms grid of a buffer
(``format_wav`` drops the last 44 bytes, 22 samples, of every file it plays, so all audio after a
Playback is shifted; MixMonitor recordings start anywhere; jitter and mixing shift things too).
The rule: an utterance starts where a start tone begins, at the sample that maximises the
correlation with the start tone's waveform (phase included: the energy of the start bin alone
cannot place a start tone that follows an end tone, the next bin, to within a few samples); it is
read in 20 ms blocks from there, each of them a tone (its strongest bin holding at least half of
its energy) or quiet (skipped), up to the end tone. So utterances decode at any offset, each at
its own, apart, touching or overlapping by the 22 samples format_wav drops, after G.711, with line
or comfort noise around them, and with the last 22 samples of their end tone missing (then
``end_s`` is still where that tone's 20 ms block ends). Loud audio outside every utterance is
noise: unintelligible.

Audio on the grid (every utterance starting at a multiple of 160 samples from the buffer's start,
as AudioSocket framing and the playout padding give it) is decoded as before, block by block on
the buffer's grid, with the same results, times and errors as the original decoder: the fast
path. An utterance counts as on the grid when the rule above finds its start tone at the block
where the grid read it. Only if that fails for some utterance, or the grid cannot decode the
audio, is it read again at sample resolution, utterance by utterance; that reading is taken when
it decodes everything (``hear_all``), or more utterances, or as many but off the grid
(``hear_lenient``); otherwise the grid's reading or error stands. Two consequences: noise the
original decoder read as words (now and then a loud white-noise block is a start tone by argmax)
it still reads so, while the search at sample resolution, which needs real tones, never finds
words in noise or comfort audio; and on the grid an utterance's last block must be in the buffer
whole, as before, while off the grid the audio may end up to 22 samples short of it.

Speed matters because whole calls are simulated far faster than real time. ``speak`` joins
precomputed tone bytes (one 40 ms piece per UTF-8 byte). ``block_rms`` and the decoders use
numpy: the grid pass views the audio as a (blocks, 160) matrix, finds the loud blocks by their
(exact) energy, and takes the 18 DFT bins of all of them with one matrix product; placing a start
tone (also to confirm an utterance on the grid) is one correlation over a few hundred samples,
and reading an utterance off the grid one matrix product over its blocks. The grid's symbols are
the same as summing each bin sample by sample in Python (the original definition, kept as
``_exact_symbol``): a block's symbol is taken from the matrix product only when the strongest bin
beats every other bin by more than any rounding difference between the two summation orders could
bridge (a bound from the block's RMS); ties, near-ties, and blocks with no energy in any bin
(symbol -1) are decided by ``_exact_symbol`` itself.
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

#: Off the grid, a block is a symbol only if its strongest bin holds at least this share of its
#: energy (1.0 for a tone, (1 - d/160)**2 or more when d of its samples belong to a neighbour,
#: about 0.01 for noise); above one half no two bins can qualify.
_TONE_SHARE = 0.5
#: A loud grid block whose start-tone bin holds this share of its energy may hold a third or more
#: of a start tone (a grid block holding half of one gives 0.25): where to look for one.
_START_HINT = 0.1
#: How far (samples) from such a block's first sample the start tone may begin.
_REACH = 112
#: Asterisk's ``format_wav`` drops the last 44 bytes (22 samples) of every file it plays.
_FORMAT_WAV_LOSS = 22
#: How far (samples) before the end of an utterance's end tone the next utterance may begin.
_TAIL_SLACK = 32
#: Correlations this close (relative) to the best are as good: the hint wins. Shifted by d samples
#: a start tone's correlation drops to 0.964 or less of its peak, G.711 moves it by 0.1% or less.
_TIE = 2e-3
_LOUD_ENERGY = BLOCK * SPEECH_RMS * SPEECH_RMS
# The start tone's bin, cosine and sine: the correlation with the sine is the matched filter of a
# start tone that begins at the window's first sample (every tone starts at phase 0).
_START_COS: NDArray[np.float64] = np.ascontiguousarray(_BASIS[:, _START])
_START_SIN: NDArray[np.float64] = np.ascontiguousarray(_BASIS[:, len(_BINS) + _START])

# An utterance found in samples: (first sample, end sample, text or None if unintelligible).
_Found = tuple[int, int, str | None]


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


def _power(blocks: NDArray[np.float64]) -> NDArray[np.float64]:
    """The power of each of the 18 bins in each row of ``blocks``: (n, 18)."""
    dft = blocks @ _BASIS
    re, im = dft[:, : len(_BINS)], dft[:, len(_BINS) :]
    power: NDArray[np.float64] = re * re + im * im
    return power


def _symbols(blocks: NDArray[np.float64], rms: NDArray[np.float64]) -> list[int]:
    """``_exact_symbol`` of each row of ``blocks`` (n x BLOCK integer samples; ``rms``: their RMS)."""
    if not blocks.shape[0]:
        return []
    return _decide(blocks, rms, _power(blocks))


def _decide(blocks: NDArray[np.float64], rms: NDArray[np.float64], power: NDArray[np.float64]) -> list[int]:
    """``_exact_symbol`` of each row of ``blocks``, given ``power = _power(blocks)``.

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


class _Grid:
    """The audio as float samples, and its loud 20 ms blocks on the buffer's grid."""

    __slots__ = ("x", "loud", "symbols", "rms", "start_power")

    def __init__(self, pcm: bytes | bytearray | memoryview) -> None:
        x = _samples(pcm).astype(np.float64)
        count = x.size // BLOCK
        blocks = x[: count * BLOCK].reshape(count, BLOCK)
        # Sums of integer squares below 2**53 are exact in float64 whatever the order, and / and
        # sqrt round correctly, so this is bit for bit the RMS that block_rms (and the original) gives.
        rms = np.sqrt(np.einsum("ij,ij->i", blocks, blocks) / BLOCK)
        self.x = x
        self.loud = np.flatnonzero(~(rms < SPEECH_RMS))
        loud_blocks = blocks[self.loud]
        self.rms = rms[self.loud]
        power = _power(loud_blocks)
        self.symbols = _decide(loud_blocks, self.rms, power)
        self.start_power = power[:, _START]

    def strict(self) -> list[_Found]:
        """The original grid decoder: every loud block belongs to a well-formed utterance, or raise."""
        found: list[_Found] = []
        body: list[int] | None = None
        start = 0
        for index, symbol in zip(self.loud.tolist(), self.symbols, strict=True):
            if body is None:
                if symbol != _START:
                    raise UnintelligibleSpeech(f"speech without a start tone at {index * BLOCK / RATE:.2f} s")
                body, start = [], index
            elif symbol == _END:
                found.append((start * BLOCK, (index + 1) * BLOCK, _text(body)))
                body = None
            else:
                body.append(symbol)
        if body is not None:
            raise UnintelligibleSpeech("utterance without its end tone")
        return found

    def lenient(self) -> list[_Found]:
        """The original lenient grid decoder (see ``hear_lenient``)."""
        found: list[_Found] = []
        body: list[int] | None = None
        start = noise = last = -1
        for index, symbol in zip(self.loud.tolist(), self.symbols, strict=True):
            if symbol == _START:
                if body is not None or noise >= 0:
                    found.append(((start if body is not None else noise) * BLOCK, (last + 1) * BLOCK, None))
                body, start, noise = [], index, -1
            elif body is None:
                noise = index if noise < 0 else noise
            elif symbol == _END:
                try:
                    text: str | None = _text(body)
                except UnintelligibleSpeech:
                    text = None
                found.append((start * BLOCK, (index + 1) * BLOCK, text))
                body = None
            else:
                body.append(symbol)
            last = index
        if body is not None or noise >= 0:
            found.append(((start if body is not None else noise) * BLOCK, (last + 1) * BLOCK, None))
        return found

    def misplaced(self, found: list[_Found]) -> bool:
        """Some utterance the grid decoded has its start tone elsewhere: the audio is off the grid.

        (Where no start tone is found at all, the grid read noise as words, as the original did.)
        """
        after = 0
        for start, end, text in found:
            if text is not None:
                if _start_tone(self.x, start, after - _TAIL_SLACK) not in (start, None):
                    return True
                after = end
        return False

    def shifted(self) -> list[_Found]:
        """Every utterance read at sample resolution from its own start, and what is left: noise."""
        x = self.x
        found: list[_Found] = []
        spans: list[tuple[int, int]] = []
        share = self.start_power / ((BLOCK * BLOCK / 2) * self.rms * self.rms)
        loud = np.ones(x.size // BLOCK + 1, dtype=np.bool_)  # the partial block at the end counts as loud
        loud[: x.size // BLOCK] = False
        loud[self.loud] = True
        hints = (self.loud[share >= _START_HINT] * BLOCK).tolist()
        hints.reverse()
        after = 0  # where the next start tone may begin, at the earliest
        cut: int | None = None  # where the last utterance was cut short: look there first
        while cut is not None or hints:
            if cut is not None:
                hint, cut = cut, None
            elif hints[-1] + _REACH < after:
                hints.pop()
                continue
            else:
                hint = hints.pop()
            start = _start_tone(x, hint, after)
            if start is None:
                continue
            body, end, stop = _read(x, start, loud)
            text: str | None = None
            if body is not None:
                after = end - _TAIL_SLACK  # format_wav may have dropped the end tone's last samples
                try:
                    text = _text(body)
                except UnintelligibleSpeech:
                    text = None
            else:  # the next start tone may overlap the block before the one that cut this short
                after, cut = max(start + 1, stop - BLOCK), stop if stop < x.size else None
            found.append((start, end, text))
            spans.append((start, end))
        # Loud grid blocks that no utterance (decoded or not) overlaps are noise.
        covered = np.zeros(x.size // BLOCK + 1, dtype=np.bool_)
        for start, end in spans:
            covered[start // BLOCK : -(-end // BLOCK)] = True
        noise = self.loud[~covered[self.loud]]
        if noise.size:
            breaks = np.flatnonzero(np.diff(noise) > 1) + 1
            firsts = (noise[np.r_[0, breaks]] * BLOCK).tolist()
            ends = ((noise[np.r_[breaks - 1, noise.size - 1]] + 1) * BLOCK).tolist()
            found += [(first, end, None) for first, end in zip(firsts, ends, strict=True)]
            found.sort(key=lambda item: item[0])
        # What cannot be decoded between two decoded utterances is one stretch of it.
        merged: list[_Found] = []
        for item in found:
            if merged and item[2] is None and merged[-1][2] is None:
                merged[-1] = (merged[-1][0], max(merged[-1][1], item[1]), None)
            else:
                merged.append(item)
        return merged


def _start_tone(x: NDArray[np.float64], hint: int, after: int) -> int | None:
    """Where the start tone near ``hint`` begins (not before ``after``), or None if there is none.

    The sample that maximises the correlation with a start tone beginning there, among those
    within ``_REACH`` of it (so the search is re-centred until it settles), ``hint`` itself if it
    is as good (a start tone longer than 20 ms, an utterance cut right after its start tone and
    the next one, matches as well 80 samples into it); None unless a loud start tone (its bin
    holding at least ``_TONE_SHARE`` of the energy) begins there.
    """
    start = hint
    for _ in range(4):
        lo, hi = max(start - _REACH, after, 0), min(start + _REACH, x.size - BLOCK)
        if hi < lo:
            return None
        match = np.correlate(x[lo : hi + BLOCK], _START_SIN, "valid")
        best = int(match.argmax())
        if lo <= hint <= hi and match[hint - lo] >= match[best] - _TIE * abs(match[best]):
            best = hint - lo
        if lo + best == start:
            break
        start = lo + best
    window = x[start : start + BLOCK]
    energy = float(window @ window)
    re, im = float(window @ _START_COS), float(window @ _START_SIN)
    if energy < _LOUD_ENERGY or re * re + im * im < _TONE_SHARE * (BLOCK / 2) * energy:
        return None
    return start


def _read(x: NDArray[np.float64], start: int, loud: NDArray[np.bool_]) -> tuple[list[int] | None, int, int]:
    """Read the utterance whose start tone begins at ``start``, block by block from there.

    Returns ``(body, end, stop)``: the symbols between the start and end tones and the sample
    after the end tone (twice); or, if it is cut short (another start tone, a loud block that is
    not a tone, the end of the audio), ``None``, the end of its last loud block, and the first
    sample of the block that cut it short (the end of the audio).
    ``loud`` tells the loud grid blocks (and the partial block at the end, taken as loud): blocks
    of the utterance within quiet grid blocks are quiet, skipped without a look.
    """
    total = (x.size - start) // BLOCK
    body: list[int] = []
    last, chunk = start + BLOCK, 64
    for part in range(1, total, 1024):  # a part at a time: the utterance may end in the first
        grid = (start + BLOCK * np.arange(part, min(part + 1024, total))) // BLOCK
        seen = np.flatnonzero(loud[grid] | loud[np.minimum(grid + 1, loud.size - 1)]) + part
        for run in np.split(seen, np.flatnonzero(np.diff(seen) > 1) + 1) if seen.size else []:
            index, end = int(run[0]), int(run[-1]) + 1
            while index < end:
                count, chunk = min(chunk, end - index), 256
                first = start + index * BLOCK
                rows = x[first : first + count * BLOCK].reshape(count, BLOCK)
                energy = np.einsum("ij,ij->i", rows, rows)
                power = _power(rows)
                best = power.argmax(axis=1)
                heard = ~(np.sqrt(energy / BLOCK) < SPEECH_RMS)
                top = np.take_along_axis(power, best[:, None], axis=1)[:, 0]
                tone = top >= _TONE_SHARE * (BLOCK / 2) * energy
                stops = np.flatnonzero(heard & (~tone | (best >= _START)))
                stop = int(stops[0]) if stops.size else count
                body += best[:stop][heard[:stop]].tolist()
                loud_rows = np.flatnonzero(heard[:stop])
                if loud_rows.size:
                    last = first + (int(loud_rows[-1]) + 1) * BLOCK
                if stop < count:
                    at = first + stop * BLOCK
                    if tone[stop] and best[stop] == _END:
                        return body, at + BLOCK, at + BLOCK
                    return None, last, at
                index += count
    # Off the grid the audio may end inside the end tone's block, the tone short of the samples
    # format_wav drops: the block is read padded with silence. (On the grid, as always, not.)
    at = start + total * BLOCK
    if start % BLOCK and x.size - at >= BLOCK - _FORMAT_WAV_LOSS:
        row = np.zeros((1, BLOCK))
        row[0, : x.size - at] = x[at:]
        energy = float(row[0] @ row[0])
        power = _power(row)[0]
        is_end = power.argmax() == _END and power[_END] >= _TONE_SHARE * (BLOCK / 2) * energy
        if energy >= _LOUD_ENERGY and is_end:
            return body, at + BLOCK, at + BLOCK
    return None, last, x.size


def hear_all(pcm: bytes | bytearray | memoryview) -> list[tuple[float, float, str]]:
    """Decode every utterance in PCM, each from its own start (see the module docstring).

    Returns ``(start_s, end_s, text)`` per utterance, times relative to the start of ``pcm``.
    Quiet audio is skipped; loud audio that is not a well-formed utterance raises.
    """
    grid = _Grid(pcm)
    try:
        found = grid.strict()
    except UnintelligibleSpeech as exc:
        error = exc
    else:
        if not grid.misplaced(found):
            return _seconds(found)
        error = UnintelligibleSpeech("speech off the 20 ms grid that is not a well-formed utterance")
    shifted = grid.shifted()
    if all(text is not None for _, _, text in shifted):
        return _seconds(shifted)
    raise error


def hear_lenient(pcm: bytes | bytearray | memoryview) -> list[tuple[float, float, str | None]]:
    """Like ``hear_all``, but what cannot be decoded becomes ``(start_s, end_s, None)`` and decoding
    goes on: an utterance cut short (a new start tone before its end tone), speech without a start
    tone, a broken symbol sequence. A listener hears the words around a cut, as a person would."""
    grid = _Grid(pcm)
    found = grid.lenient()
    heard = sum(text is not None for _, _, text in found)
    if grid.misplaced(found):
        found = grid.shifted()
    elif heard < len(found):  # something unintelligible on the grid: is it speech off the grid?
        shifted = grid.shifted()
        reheard = sum(text is not None for _, _, text in shifted)
        if reheard > heard or (reheard == heard and any(start % BLOCK for start, _, _ in shifted)):
            found = shifted
    return [(start / RATE, end / RATE, text) for start, end, text in found]


def _seconds(found: list[_Found]) -> list[tuple[float, float, str]]:
    return [(start / RATE, end / RATE, text) for start, end, text in found if text is not None]


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

"""ToneVoice: a modem that stands in for speech, so simulated words cross the real audio path.

Text is sent as UTF-8, one 4-bit symbol per 20 ms block (160 samples at 8 kHz), each symbol a
pure tone on an exact bin of a 160-point DFT, framed by a start and an end tone. It has speech
energy (so energy VAD hears it), takes about as long as speech (40 ms per byte) and survives
G.711 companding, so the simulated model can "transcribe" what the simulated caller said and the
caller can "hear" the model's words. Decoding needs symbols aligned to 20 ms blocks, which the
AudioSocket framing and the playout padding preserve. Pure code: samples in, text out.
"""

from __future__ import annotations

import math
import sys
from array import array
from operator import mul

RATE = 8000
BLOCK = 160  # samples per symbol: 20 ms
_START, _END = 16, 17
_BIG_ENDIAN = sys.byteorder == "big"
_BINS = tuple(10 + 2 * i for i in range(18))  # 500 Hz .. 2200 Hz, 100 Hz apart
AMPLITUDE = 6000
#: Per-sample RMS above which a block counts as speech (tones are ~4200, line noise ~30).
SPEECH_RMS = 600.0

_TONES = tuple(
    array("h", (round(AMPLITUDE * math.sin(2 * math.pi * k * n / BLOCK)) for n in range(BLOCK))) for k in _BINS
)
_COS = tuple(tuple(math.cos(2 * math.pi * k * n / BLOCK) for n in range(BLOCK)) for k in _BINS)
_SIN = tuple(tuple(math.sin(2 * math.pi * k * n / BLOCK) for n in range(BLOCK)) for k in _BINS)


class UnintelligibleSpeech(ValueError):
    """The audio does not carry a well-formed ToneVoice utterance."""


def speak(text: str) -> bytes:
    """Text to signed 16-bit little-endian PCM at 8 kHz, a whole number of 20 ms blocks."""
    symbols = [_START]
    for byte in text.encode("utf-8"):
        symbols += [byte >> 4, byte & 0x0F]
    symbols.append(_END)
    pcm = array("h")
    for symbol in symbols:
        pcm.extend(_TONES[symbol])
    return _little_endian(pcm)


def duration_s(text: str) -> float:
    return (2 * len(text.encode("utf-8")) + 2) * BLOCK / RATE


def block_rms(pcm_block: bytes) -> float:
    return _rms(_samples(pcm_block))


def _symbol(block: array[int]) -> int:
    best, best_power = -1, 0.0
    for i in range(len(_BINS)):
        re = sum(map(mul, block, _COS[i]))
        im = sum(map(mul, block, _SIN[i]))
        power = re * re + im * im
        if power > best_power:
            best, best_power = i, power
    return best


def hear(pcm: bytes) -> str:
    """Decode exactly one utterance; raises ``UnintelligibleSpeech`` if there is none."""
    utterances = hear_all(pcm)
    if not utterances:
        raise UnintelligibleSpeech("no framed utterance in the audio")
    return " ".join(text for _, _, text in utterances)


def hear_all(pcm: bytes) -> list[tuple[float, float, str]]:
    """Decode every utterance in PCM whose blocks are aligned to 20 ms from its first sample.

    Returns ``(start_s, end_s, text)`` per utterance, times relative to the start of ``pcm``.
    Silent blocks are skipped; a utterance with broken framing or UTF-8 raises.
    """
    samples = _samples(pcm)
    found: list[tuple[float, float, str]] = []
    body: list[int] | None = None
    start = 0
    for index in range(len(samples) // BLOCK):
        block = samples[index * BLOCK : (index + 1) * BLOCK]
        if _rms(block) < SPEECH_RMS:
            continue
        symbol = _symbol(block)
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


def _text(body: list[int]) -> str:
    if len(body) % 2 or any(s > 15 for s in body):
        raise UnintelligibleSpeech("utterance has a broken symbol sequence")
    data = bytes((body[i] << 4) | body[i + 1] for i in range(0, len(body), 2))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnintelligibleSpeech("utterance is not UTF-8") from exc


def _rms(samples: array[int]) -> float:
    return math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0


def _samples(pcm: bytes) -> array[int]:
    samples = array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if _BIG_ENDIAN:
        samples.byteswap()
    return samples


def _little_endian(samples: array[int]) -> bytes:
    if _BIG_ENDIAN:
        samples = array("h", samples)
        samples.byteswap()
    return samples.tobytes()

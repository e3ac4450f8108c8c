"""G.711 mu-law <-> 16-bit linear PCM, by table lookup (the ITU/Sun reference algorithm).

Pure code: bytes in, bytes out. Matches CPython's ``audioop.lin2ulaw``/``ulaw2lin`` bit for
bit (tested), without depending on ``audioop`` (removed in Python 3.13). Companding only:
8 kHz stays 8 kHz, so the call path never resamples.
"""

from __future__ import annotations

import sys
from array import array

_SEG_END = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_CLIP = 8159
_BIAS = 0x84


def _linear_to_ulaw(sample: int) -> int:
    pcm = sample >> 2
    if pcm < 0:
        pcm, mask = -pcm, 0x7F
    else:
        mask = 0xFF
    pcm = min(pcm, _CLIP) + (_BIAS >> 2)
    for seg, end in enumerate(_SEG_END):
        if pcm <= end:
            return ((seg << 4) | ((pcm >> (seg + 1)) & 0x0F)) ^ mask
    return 0x7F ^ mask


def _ulaw_to_linear(code: int) -> int:
    u = ~code & 0xFF
    t = (((u & 0x0F) << 3) + _BIAS) << ((u & 0x70) >> 4)
    return (_BIAS - t) if u & 0x80 else (t - _BIAS)


# Index: the sample as an unsigned 16-bit value.
_ENCODE = bytes(_linear_to_ulaw(v - 0x10000 if v >= 0x8000 else v) for v in range(0x10000))
_DECODE = array("h", (_ulaw_to_linear(c) for c in range(256)))
_BIG_ENDIAN = sys.byteorder == "big"

#: One mu-law byte of digital silence.
ULAW_SILENCE = _ENCODE[0]


def slin_to_ulaw(pcm: bytes) -> bytes:
    """Signed 16-bit little-endian PCM (AudioSocket's slin) to mu-law, one byte per sample."""
    if len(pcm) % 2:
        raise ValueError(f"slin audio must have an even number of bytes, got {len(pcm)}")
    samples = array("H")
    samples.frombytes(pcm)
    if _BIG_ENDIAN:
        samples.byteswap()
    return bytes(_ENCODE[s] for s in samples)


def ulaw_to_slin(ulaw: bytes) -> bytes:
    """mu-law to signed 16-bit little-endian PCM."""
    samples = array("h", (_DECODE[c] for c in ulaw))
    if _BIG_ENDIAN:
        samples.byteswap()
    return samples.tobytes()

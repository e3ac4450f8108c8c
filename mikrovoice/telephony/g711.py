"""G.711 mu-law and A-law <-> 16-bit linear PCM, by table lookup (the ITU/Sun reference algorithm).

Pure code: bytes in, bytes out. Matches CPython's ``audioop.lin2ulaw``/``ulaw2lin`` bit for
bit (tested; ``lin2alaw``/``alaw2lin`` likewise), without depending on ``audioop`` (removed in
Python 3.13). A-law is the PSTN's law outside North America and Japan (Colombia's trunks
included): a leg may carry it, and the model takes mu-law, so A-law is decoded. Companding only:
8 kHz stays 8 kHz, so the call path never resamples.

The reference algorithm below fills two tables once, at import: a mu-law code for each of the
65536 16-bit samples and a sample for each of the 256 codes. A conversion is then one numpy
``take`` over the input buffer, which is viewed in place as explicitly little-endian samples
(``<u2``) or bytes and written back as little-endian samples (``<i2``), whatever the host's
byte order; a 20 ms frame costs about a microsecond.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

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


_SEG_AEND = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _linear_to_alaw(sample: int) -> int:
    pcm = sample >> 3
    if pcm >= 0:
        mask = 0xD5  # sign (7th) bit = 1
    else:
        mask = 0x55  # sign bit = 0
        pcm = -pcm - 1
    for seg, end in enumerate(_SEG_AEND):
        if pcm <= end:
            aval = seg << 4
            aval |= (pcm >> 1) & 0x0F if seg < 2 else (pcm >> seg) & 0x0F
            return aval ^ mask
    return 0x7F ^ mask


def _alaw_to_linear(code: int) -> int:
    a = code ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


_SLIN_INDEX: Final = np.dtype("<u2")  # a slin sample read as an unsigned table index
_SLIN: Final = np.dtype("<i2")  # a slin sample: signed 16-bit little-endian
# Index: the sample as an unsigned 16-bit value.
_ENCODE: NDArray[np.uint8] = np.array(
    [_linear_to_ulaw(v - 0x10000 if v >= 0x8000 else v) for v in range(0x10000)], dtype=np.uint8
)
_DECODE: NDArray[np.int16] = np.array([_ulaw_to_linear(c) for c in range(256)], dtype=_SLIN)

#: One mu-law byte of digital silence.
ULAW_SILENCE: int = int(_ENCODE[0])
_AENCODE: NDArray[np.uint8] = np.array(
    [_linear_to_alaw(v - 0x10000 if v >= 0x8000 else v) for v in range(0x10000)], dtype=np.uint8
)
_ADECODE: NDArray[np.int16] = np.array([_alaw_to_linear(c) for c in range(256)], dtype=_SLIN)
#: One A-law byte of digital silence.
ALAW_SILENCE: int = int(_AENCODE[0])


def slin_to_ulaw(pcm: bytes | bytearray | memoryview) -> bytes:
    """Signed 16-bit little-endian PCM (AudioSocket's slin) to mu-law, one byte per sample."""
    size = pcm.nbytes if isinstance(pcm, memoryview) else len(pcm)
    if size % 2:
        raise ValueError(f"slin audio must have an even number of bytes, got {size}")
    return _ENCODE.take(np.frombuffer(pcm, _SLIN_INDEX)).tobytes()


def ulaw_to_slin(ulaw: bytes | bytearray | memoryview) -> bytes:
    """mu-law to signed 16-bit little-endian PCM."""
    return _DECODE.take(np.frombuffer(ulaw, np.uint8)).tobytes()


def slin_to_alaw(pcm: bytes | bytearray | memoryview) -> bytes:
    """Signed 16-bit little-endian PCM to A-law, one byte per sample."""
    size = pcm.nbytes if isinstance(pcm, memoryview) else len(pcm)
    if size % 2:
        raise ValueError(f"slin audio must have an even number of bytes, got {size}")
    return _AENCODE.take(np.frombuffer(pcm, _SLIN_INDEX)).tobytes()


def alaw_to_slin(alaw: bytes | bytearray | memoryview) -> bytes:
    """A-law to signed 16-bit little-endian PCM."""
    return _ADECODE.take(np.frombuffer(alaw, np.uint8)).tobytes()

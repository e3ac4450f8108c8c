"""How much of the caller's audio is loud enough to be speech: for barge-in, not for turn-taking.

The model's server VAD decides *that* the caller speaks (``speech_started``); this measures *how
long*, from the audio we forward, so that a short sound ("ajá", a cough, a click on the line)
neither cuts the assistant nor cancels a query (``Settings.min_speech_ms``). A 20 ms block is
loud when its RMS is at least ``SPEECH_DBFS`` (-35 dBFS: speech at a normal level is -30 to
-15 dBFS, line noise and comfort audio below -40). Pure: samples in, milliseconds out.

It runs on every frame of every call, so a block's mean square is taken from the exact integer
sum of its squared samples (below 2**53, so exact in float64 whatever the summation order) divided
once by its length: bit for bit the float mean of the squares, without numpy's per-call overhead
of ``mean``.
"""

from __future__ import annotations

from typing import Final

import numpy as np

SPEECH_DBFS: Final = -35.0
_THRESHOLD_SQUARED: Final = (32768.0 * 10 ** (SPEECH_DBFS / 20)) ** 2
_BLOCK: Final = 160  # 20 ms at 8 kHz
_PCM: Final = np.dtype("<i2")


def loud_ms(slin: bytes) -> int:
    """Milliseconds of 8 kHz slin (s16le) in 20 ms blocks at or above SPEECH_DBFS (a trailing
    partial block counts for its own length)."""
    count = len(slin) // 2
    if not count:
        return 0
    samples = np.frombuffer(slin, _PCM, count).astype(np.int64)
    if count == _BLOCK:  # one frame: the common case
        return 20 if int(samples.dot(samples)) / _BLOCK >= _THRESHOLD_SQUARED else 0
    whole = count // _BLOCK * _BLOCK
    total = 0
    if whole:
        blocks = samples[:whole].reshape(-1, _BLOCK)
        power = np.einsum("ij,ij->i", blocks, blocks) / _BLOCK
        total += int(np.count_nonzero(power >= _THRESHOLD_SQUARED)) * 20
    tail = samples[whole:]
    if tail.size and int(tail.dot(tail)) / tail.size >= _THRESHOLD_SQUARED:
        total += tail.size // 8
    return total

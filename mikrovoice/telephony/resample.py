"""Streaming rational resampler for slin (signed 16-bit little-endian mono PCM), for AudioSocket's rates.

Asterisk's channel driver may send slin at 12, 16, 24, 32, 44.1, 48, 96 or 192 kHz (kinds 0x11-0x18)
while the model link takes 8 kHz; the Asterisk stand-in goes the other way. ``Resampler(rate_in,
rate_out)`` converts one stream: ``process`` takes bytes as they arrive, in chunks of any size (a
trailing odd byte is kept for the next call), and ``flush`` returns the tail at the end of the stream.
Pure code: no I/O, no clock.

Theory of operation
-------------------
The ratio is reduced to ``L/M = rate_out/rate_in`` (44.1 kHz -> 8 kHz is 80/441). Output sample ``j``
stands for the instant ``t_j = (j - D) * M / L`` counted in input samples: the output is the input
delayed by ``D`` output samples (``delay``), about 4.2 ms at any rate. Its value is the input,
band-limited by one continuous-time low-pass prototype ``h``, evaluated at ``t_j``::

    y[j] = sum_n x[n] * h(t_j - n),   h(u) = 2fc/fs_in * sinc(2fc/fs_in * u) * kaiser(u / R)

where the sum runs over the ``2R`` input samples nearest ``t_j`` (``R = ceil(4.18 ms * rate_in)``
each side) and samples before the stream are silence. Because ``t_j`` is rational, ``h`` is only
ever needed at ``L`` fractional offsets (the polyphase branches); each branch is normalised to a DC
gain of exactly one (up to 2**-36), so silence and constants pass through unchanged. One prototype
serves both directions: decimating, it is the anti-alias filter; interpolating, it removes images.

The filter, relative to the lower rate ``f_low = min(rate_in, rate_out)`` (8 kHz on every path we
use): cutoff (-6 dB) ``fc = 0.4625 * f_low`` (3.7 kHz), flat to ``0.425 * f_low`` (3.4 kHz: the top of
the G.711 telephone band, so nothing the caller says is lost), at least 80 dB down from ``0.5 *
f_low`` (4 kHz, the lower Nyquist frequency) upwards, so nothing above it folds back into the band
audibly, and images of an upsampled signal stay 80 dB down. Kaiser's formula gives the length for
80 dB over the 600 Hz transition: 8.36 ms, i.e. 68 taps at 8 kHz, 1606 at 192 kHz (beta = 7.857).

Output samples are computed in blocks of ``P = c * L`` (``c`` whole periods of the ratio): block ``q``
reads the ``W`` input samples starting at ``q * c * M + s0``, so a batch of blocks is a strided view
of the input, copied into a matrix and multiplied by one fixed ``(W, P)`` coefficient matrix: one BLAS
product per call (1 s of 192 kHz audio costs a few milliseconds).

Exactness: the coefficients are integers (the prototype scaled by 2**s, s ~ 36) held in float64,
and so are the samples, and ``s`` is chosen so that every partial sum stays below 2**53. Every
product and every partial sum is then an exact integer, so the result does not depend on the
order BLAS adds in, nor on the shape of the product: the output bytes are identical however the
input is chunked (a block computed half on one call, from zero-padded input, is recomputed on the
next; the padding only meets zero coefficients of the samples kept). The sum is scaled back by an
exact power of two, rounded half to even and clipped to int16.

Length: after ``N`` input samples in total, ``process`` has returned exactly ``floor(N * L / M)``
samples in total (output sample ``j`` is emitted once the input covers its whole period ``[j, j+1) *
M / L``; the delay ``D = ceil(R * L / M)`` is what makes its filter taps available by then), so the
output never drifts from the input clock. ``flush`` returns the ``D`` samples still owed (the last
4.2 ms, computed as if silence followed) and resets the resampler for a new stream. Equal rates are
a pass-through with ``delay == 0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import numpy as np
from numpy.typing import NDArray

#: Cutoff (-6 dB), passband edge and stopband edge, as fractions of the lower of the two rates.
CUTOFF: Final = 0.4625
PASSBAND: Final = 0.425
STOPBAND: Final = 0.5
#: Designed stopband attenuation, dB.
ATTENUATION_DB: Final = 80.0

_SLIN: Final = np.dtype("<i2")
_BETA: Final = 0.1102 * (ATTENUATION_DB - 8.7)  # Kaiser's beta for A > 50 dB
#: Partial sums of |sample * coefficient| must stay below this to be exact in float64.
_EXACT: Final = 2.0**53
_BLOCKS: Final = 256


@dataclass(frozen=True)
class _Design:
    """Everything one rate pair needs; shared (read-only) by every resampler of that pair."""

    up: int  # L
    down: int  # M
    delay: int  # D, output samples
    block_out: int  # P = c * L output samples per block
    block_in: int  # c * M input samples between consecutive blocks
    width: int  # W input samples read per block
    first: int  # s0: input index read first by block 0 (negative: the silence before the stream)
    coefficients: NDArray[np.float64]  # (W, P) integers
    unscale: float  # 2**-s


@lru_cache(maxsize=32)
def _design(rate_in: int, rate_out: int) -> _Design:
    g = math.gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    low = min(rate_in, rate_out)
    fc = CUTOFF * low / rate_in  # cycles per input sample
    transition = (STOPBAND - PASSBAND) * low  # Hz
    length_s = (ATTENUATION_DB - 8.0) / (2.285 * 2.0 * math.pi * transition)  # Kaiser's estimate
    reach = math.ceil(length_s / 2.0 * rate_in)  # R: input samples on each side of t_j
    delay = -(-reach * up // down)
    periods = max(1, round(reach / down))  # c: blocks read about 3R inputs to make R*L/M outputs
    block_out, block_in = periods * up, periods * down
    # Output r of a block (relative to the block's own start) has base input floor((r-D)M/L).
    r = np.arange(block_out, dtype=np.int64)
    numer = (r - delay) * down
    base = numer // up
    phase = numer - base * up
    first = int(base[0]) - reach + 1
    width = int(base[-1]) + reach - first + 1
    k = np.arange(2 * reach, dtype=np.int64)
    # u: distance, in input samples, from each output's instant to each of its taps.
    u = (phase / up)[:, None] + (reach - 1 - k)[None, :].astype(np.float64)
    window = np.i0(_BETA * np.sqrt(np.clip(1.0 - (u / reach) ** 2, 0.0, None))) / np.i0(_BETA)
    taps = 2.0 * fc * np.sinc(2.0 * fc * u) * window
    taps /= taps.sum(axis=1, keepdims=True)  # every branch: DC gain 1
    bits = 52 - 15 - math.ceil(math.log2(float(np.abs(taps).sum(axis=1).max())))
    quantised = np.rint(taps * 2.0**bits)
    # Half a unit of rounding per tap included; |sample| <= 2**15.
    assert (np.abs(quantised).sum(axis=1).max() + 2 * reach) * 2.0**15 < _EXACT
    coefficients = np.zeros((width, block_out), dtype=np.float64)
    rows = (base - reach + 1 - first)[:, None] + k[None, :]
    coefficients[rows, r[:, None]] = quantised
    coefficients.setflags(write=False)
    return _Design(up, down, delay, block_out, block_in, width, first, coefficients, 2.0**-bits)


class Resampler:
    """One slin stream from ``rate_in`` to ``rate_out`` Hz (see the module docstring)."""

    def __init__(self, rate_in: int, rate_out: int) -> None:
        if rate_in <= 0 or rate_out <= 0:
            raise ValueError(f"sample rates must be positive, got {rate_in} -> {rate_out}")
        self.rate_in: Final = rate_in
        self.rate_out: Final = rate_out
        self._design = None if rate_in == rate_out else _design(rate_in, rate_out)
        self._reset()

    @property
    def delay(self) -> int:
        """Output samples by which the output lags the input (0 for a pass-through)."""
        return 0 if self._design is None else self._design.delay

    def _reset(self) -> None:
        self._odd = b""  # a trailing odd byte, waiting for its pair
        self._inputs = 0  # N: input samples received
        self._outputs = 0  # output samples returned by process
        start = 0 if self._design is None else self._design.first
        self._start = start  # input index of self._buffer[0]
        self._buffer: NDArray[np.float64] = np.zeros(-start, dtype=np.float64)

    def process(self, pcm: bytes | bytearray | memoryview) -> bytes:
        """Resample the next chunk of the stream; returns every output sample now complete."""
        data = self._odd + bytes(pcm)
        whole = len(data) & ~1
        self._odd = data[whole:]
        if self._design is None:
            return data[:whole]
        if whole:
            samples = np.frombuffer(data, _SLIN, whole // 2).astype(np.float64)
            self._buffer = np.concatenate((self._buffer, samples))
            self._inputs += whole // 2
        end = self._inputs * self._design.up // self._design.down
        return self._emit(end)

    def flush(self) -> bytes:
        """End the stream: the ``delay`` samples still owed, as if silence followed; then reset."""
        tail = b"" if self._design is None or not self._inputs else self._emit(self._outputs + self._design.delay)
        self._reset()
        return tail

    def _emit(self, end: int) -> bytes:
        """Output samples ``self._outputs`` up to ``end`` (exclusive); input beyond N is silence."""
        d = self._design
        assert d is not None
        pieces = []
        while self._outputs < end:  # at most _BLOCKS blocks at a time: bounded memory
            pieces.append(self._emit_blocks(d, min(end, (self._outputs // d.block_out + _BLOCKS) * d.block_out)))
        return b"".join(pieces)

    def _emit_blocks(self, d: _Design, end: int) -> bytes:
        begin = self._outputs
        q0, q1 = begin // d.block_out, -(-end // d.block_out)
        offset = q0 * d.block_in + d.first - self._start
        needed = offset + (q1 - q0 - 1) * d.block_in + d.width
        segment = self._buffer[offset:]
        if segment.size < needed - offset:
            segment = np.concatenate((segment, np.zeros(needed - offset - segment.size)))
        blocks = np.lib.stride_tricks.sliding_window_view(segment, d.width)[:: d.block_in][: q1 - q0]
        sums = np.ascontiguousarray(blocks) @ d.coefficients  # exact integers (see the docstring)
        chosen = sums.reshape(-1)[begin - q0 * d.block_out : end - q0 * d.block_out]
        out = np.clip(np.rint(chosen * d.unscale), -32768, 32767).astype(_SLIN)
        self._outputs = end
        keep = (end // d.block_out) * d.block_in + d.first - self._start
        self._buffer = self._buffer[keep:]
        self._start += keep
        return out.tobytes()

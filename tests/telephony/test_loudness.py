"""loud_ms: milliseconds of 20 ms blocks at or above -35 dBFS, exactly as its definition says.

The definition (the float mean of the squared samples of each block, a trailing partial block for
its own length) is written out here with numpy's ``mean``; the module computes it from exact
integer sums for speed, and must agree with it on every input, at the threshold included.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from mikrovoice.telephony.loudness import SPEECH_DBFS, loud_ms

THRESHOLD = 32768.0 * 10 ** (SPEECH_DBFS / 20)  # RMS of a block at exactly -35 dBFS: about 582.7


def reference(slin: bytes) -> int:
    samples = np.frombuffer(slin, "<i2", len(slin) // 2).astype(np.float64)
    total = 0
    for start in range(0, samples.size, 160):
        block = samples[start : start + 160]
        if float(np.mean(np.square(block))) >= THRESHOLD**2:
            total += 20 if block.size == 160 else block.size // 8
    return total


def pcm(values: list[int]) -> bytes:
    return np.array(values, dtype="<i2").tobytes()


def test_a_frame_is_loud_from_the_threshold_on() -> None:
    below, above = math.floor(THRESHOLD), math.ceil(THRESHOLD)
    assert loud_ms(pcm([below] * 160)) == 0
    assert loud_ms(pcm([above] * 160)) == 20
    assert loud_ms(pcm([-above] * 160)) == 20
    assert loud_ms(b"") == 0 and loud_ms(b"\x7f") == 0


def test_blocks_count_one_by_one_and_a_partial_block_for_its_length() -> None:
    loud, quiet = [3000] * 160, [10] * 160
    assert loud_ms(pcm(loud + quiet + loud)) == 40
    assert loud_ms(pcm(quiet + loud[:80])) == 10  # 80 samples: 10 ms
    assert loud_ms(pcm(loud) + b"\x01") == 20  # a trailing odd byte is no sample


@given(st.lists(st.integers(-32768, 32767), max_size=700), st.integers(0, 1))
def test_agrees_with_the_definition(values: list[int], odd_byte: int) -> None:
    slin = pcm(values) + b"\x05" * odd_byte
    assert loud_ms(slin) == reference(slin)


@given(st.integers(1, 3), st.integers(-3, 3))
def test_agrees_with_the_definition_at_the_threshold(blocks: int, offset: int) -> None:
    # Blocks whose mean square lies within a few units of the threshold's: no rounding may flip them.
    level = round(THRESHOLD) + offset
    slin = pcm(([level] * 159 + [level + 1]) * blocks)
    assert loud_ms(slin) == reference(slin)

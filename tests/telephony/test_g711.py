"""G.711 mu-law: bit-exact against CPython's audioop (the Sun reference) where it still exists."""

import warnings
from array import array

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mikrovoice.telephony import g711

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    audioop = pytest.importorskip("audioop")


def test_encode_matches_reference_for_every_16_bit_sample() -> None:
    every = array("h", range(-32768, 32768)).tobytes()
    assert g711.slin_to_ulaw(every) == audioop.lin2ulaw(every, 2)


def test_decode_matches_reference_for_every_code() -> None:
    codes = bytes(range(256))
    assert g711.ulaw_to_slin(codes) == audioop.ulaw2lin(codes, 2)


@given(st.binary(max_size=400).map(lambda b: b[: len(b) - len(b) % 2]))
def test_decode_then_encode_is_identity_on_codes(pcm: bytes) -> None:
    codes = g711.slin_to_ulaw(pcm)
    assert g711.slin_to_ulaw(g711.ulaw_to_slin(codes)) == codes


def test_silence_and_odd_lengths() -> None:
    assert g711.slin_to_ulaw(bytes(4)) == bytes([g711.ULAW_SILENCE]) * 2 == b"\xff\xff"
    with pytest.raises(ValueError, match="even"):
        g711.slin_to_ulaw(b"\x00")


@given(st.binary(max_size=400).map(lambda b: b[: len(b) - len(b) % 2]))
def test_every_buffer_type_converts_alike(pcm: bytes) -> None:
    codes = g711.slin_to_ulaw(pcm)
    unaligned = memoryview(b"\x00" + pcm)[1:]  # numpy reads it in place, unaligned
    for view in (bytearray(pcm), memoryview(pcm), unaligned, memoryview(array("h", pcm))):
        assert g711.slin_to_ulaw(view) == codes
    slin = g711.ulaw_to_slin(codes)
    for ulaw in (bytearray(codes), memoryview(codes), memoryview(b"\x00" + codes)[1:]):
        assert g711.ulaw_to_slin(ulaw) == slin
    assert type(codes) is bytes and type(slin) is bytes
    assert codes == audioop.lin2ulaw(pcm, 2) and slin == audioop.ulaw2lin(codes, 2)


def test_odd_length_buffers_are_rejected() -> None:
    for odd in (bytearray(3), memoryview(bytes(5)), memoryview(bytes(6))[1:]):
        with pytest.raises(ValueError, match="even"):
            g711.slin_to_ulaw(odd)
    assert g711.slin_to_ulaw(b"") == b"" and g711.ulaw_to_slin(b"") == b""
    assert isinstance(g711.ULAW_SILENCE, int) and g711.ULAW_SILENCE == 0xFF


def test_alaw_is_bit_exact_with_audioop() -> None:
    audioop = pytest.importorskip("audioop")
    every = np.arange(-32768, 32768, dtype="<i2").tobytes()
    assert g711.slin_to_alaw(every) == audioop.lin2alaw(every, 2)
    codes = bytes(range(256))
    assert g711.alaw_to_slin(codes) == audioop.alaw2lin(codes, 2)
    assert g711.ALAW_SILENCE == 0xD5 and g711.alaw_to_slin(bytes([0xD5])) == (8).to_bytes(2, "little")

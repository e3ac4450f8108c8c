"""G.711 mu-law: bit-exact against CPython's audioop (the Sun reference) where it still exists."""

import warnings
from array import array

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

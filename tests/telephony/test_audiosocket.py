"""AudioSocket codec: byte-for-byte against research/asterisk-media.md section 1.2, and the rules each side enforces."""

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mikrovoice.telephony.audiosocket import (
    Audio,
    AudioSocketCodec,
    AudioSocketProtocolError,
    CallId,
    Dtmf,
    ErrorMessage,
    Hangup,
    Kind,
    Role,
    encode,
)

CALL = uuid.UUID("40325ec2-5efd-4bd3-805f-53576e581d13")


def test_uuid_message_bytes() -> None:
    assert encode(CallId(CALL)).hex(" ") == "01 00 10 40 32 5e c2 5e fd 4b d3 80 5f 53 57 6e 58 1d 13"


def test_audio_dtmf_hangup_bytes() -> None:
    assert encode(Audio(bytes(320)))[:3] == bytes.fromhex("100140")
    assert len(encode(Audio(bytes(320)))) == 323
    assert encode(Audio(bytes(640), Kind.SLIN16))[:3] == bytes.fromhex("120280")
    assert encode(Dtmf("5")) == bytes.fromhex("03000135")
    assert encode(Hangup()) == bytes.fromhex("000000")


def test_encode_refuses_what_asterisk_would_reject() -> None:
    with pytest.raises(ValueError):
        encode(Audio(b""))
    with pytest.raises(ValueError):
        encode(Audio(b"\x00"))
    with pytest.raises(ValueError):
        encode(Dtmf("x"))


def feed(codec: AudioSocketCodec, data: bytes) -> list[object]:
    codec.receive_data(data)
    out = []
    while (m := codec.next_message()) is not None:
        out.append(m)
    return out


def test_server_reads_a_call_and_treats_eof_as_hangup() -> None:
    codec = AudioSocketCodec(Role.SERVER)
    data = encode(CallId(CALL)) + encode(Audio(bytes(range(256)) + bytes(64))) + encode(Dtmf("#"))
    assert feed(codec, data) == [CallId(CALL), Audio(bytes(range(256)) + bytes(64)), Dtmf("#")]
    assert feed(codec, b"") == [Hangup()]


@pytest.mark.parametrize(
    "data, message",
    [
        (encode(Audio(bytes(320))), "first AudioSocket message must be the UUID"),
        (bytes.fromhex("010004") + b"abcd", "UUID message must carry 16 bytes"),
        (encode(CallId(CALL)) + encode(CallId(CALL)), "second UUID"),
        (encode(CallId(CALL)) + bytes.fromhex("020000"), "unknown AudioSocket kind 0x02"),
        (encode(CallId(CALL)) + bytes.fromhex("100000"), "zero-length audio"),
    ],
)
def test_server_rejects_malformed_input(data: bytes, message: str) -> None:
    with pytest.raises(AudioSocketProtocolError, match=message):
        feed(AudioSocketCodec(Role.SERVER), data)


@pytest.mark.parametrize("kind", [0x02, 0x04, 0x0F, 0x19, 0x20, 0x7F, 0xFE])
def test_an_unknown_kind_is_refused_on_its_header_alone(kind: int) -> None:
    codec = AudioSocketCodec(Role.SERVER)
    feed(codec, encode(CallId(CALL)))
    # The header announces 65535 bytes; none of them has to arrive for the refusal.
    with pytest.raises(AudioSocketProtocolError, match=f"unknown AudioSocket kind 0x{kind:02x}"):
        feed(codec, bytes([kind, 0xFF, 0xFF]))


def test_a_uuid_of_the_wrong_length_is_refused_on_its_header() -> None:
    with pytest.raises(AudioSocketProtocolError, match="16 bytes, got 4096"):
        feed(AudioSocketCodec(Role.SERVER), bytes.fromhex("011000"))


@pytest.mark.parametrize("digit", ["a", "d", "X", "x", "\x00", "\xff"])
def test_any_dtmf_byte_reaches_the_call(digit: str) -> None:
    codec = AudioSocketCodec(Role.SERVER)
    data = encode(CallId(CALL)) + bytes([0x03, 0, 1]) + digit.encode("latin-1")
    assert feed(codec, data) == [CallId(CALL), Dtmf(digit)]


def test_audio_of_any_length_and_rate_is_taken() -> None:
    codec = AudioSocketCodec(Role.SERVER)
    data = encode(CallId(CALL)) + bytes.fromhex("100003") + b"abc" + bytes.fromhex("130002") + b"zz"
    assert feed(codec, data) == [CallId(CALL), Audio(b"abc"), Audio(b"zz", Kind.SLIN24)]


def test_eof_inside_a_message_is_an_error() -> None:
    codec = AudioSocketCodec(Role.SERVER)
    feed(codec, encode(CallId(CALL)) + encode(Audio(bytes(320)))[:100])
    with pytest.raises(AudioSocketProtocolError, match="middle of a message"):
        feed(codec, b"")


@pytest.mark.parametrize("kind", [0x01, 0x02, 0x03, 0xFF, 0x20, 0x09])
def test_asterisk_side_rejects_kinds_it_does_not_accept(kind: int) -> None:
    with pytest.raises(AudioSocketProtocolError, match=f"kind 0x{kind:02x}"):
        feed(AudioSocketCodec(Role.ASTERISK), bytes([kind, 0, 1, 0x35]))


def test_asterisk_side_rejects_zero_length_audio_and_accepts_hangup() -> None:
    with pytest.raises(AudioSocketProtocolError, match="zero-length"):
        feed(AudioSocketCodec(Role.ASTERISK), bytes.fromhex("100000"))
    assert feed(AudioSocketCodec(Role.ASTERISK), encode(Hangup())) == [Hangup()]


def test_server_accepts_cycore_error_message() -> None:
    codec = AudioSocketCodec(Role.SERVER)
    assert feed(codec, encode(CallId(CALL)) + bytes.fromhex("ff000101")) == [CallId(CALL), ErrorMessage(b"\x01")]


messages = st.lists(
    st.one_of(
        st.binary(min_size=1, max_size=400).map(lambda b: Audio(b + b if len(b) % 2 else b)),
        st.sampled_from("0123456789*#ABCD").map(Dtmf),
    ),
    max_size=20,
)


@given(messages, st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=50))
def test_any_tcp_fragmentation_yields_the_same_messages(sent: list[object], cuts: list[int]) -> None:
    data = encode(CallId(CALL)) + b"".join(encode(m) for m in sent)  # type: ignore[arg-type]
    codec = AudioSocketCodec(Role.SERVER)
    received: list[object] = []
    position, i = 0, 0
    while position < len(data):
        size = cuts[i % len(cuts)]
        received += feed(codec, data[position : position + size])
        position, i = position + size, i + 1
    received += feed(codec, b"")
    assert received == [CallId(CALL), *sent, Hangup()]

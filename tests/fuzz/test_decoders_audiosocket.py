"""AudioSocket codec (both roles) and the slin sniffer on hostile bytes.

Contract (``telephony.audiosocket``): ``next_message`` returns a message, None (more bytes
needed) or raises ``AudioSocketProtocolError``; nothing else, however the bytes are cut by TCP;
and the outcome does not depend on the cutting. ``SlinSniffer.feed`` takes any payload.
"""

from __future__ import annotations

import uuid

from hypothesis import example, given
from hypothesis import strategies as st

from mikrovoice.telephony.audiosocket import (
    AUDIO_KINDS,
    HEADER_SIZE,
    MAX_PAYLOAD,
    Audio,
    AudioSocketCodec,
    AudioSocketProtocolError,
    CallId,
    Dtmf,
    ErrorMessage,
    Hangup,
    Kind,
    Message,
    Role,
    encode,
)
from mikrovoice.telephony.sniff import SlinSniffer, Verdict
from tests.fuzz.hostile import CUTS, audiosocket_frames, chunked, decoder_settings

CALL = uuid.UUID("6d5b7d4e-2a1f-4c0e-9a57-0d6e1d2f3a4b")
def _uuid_then(garbage: bytes) -> bytes:
    return encode(CallId(CALL)) + garbage


#: What a hostile client sends: raw bytes, lying frames, or a valid UUID followed by either.
HOSTILE_STREAMS = st.one_of(
    st.binary(max_size=2000),
    st.lists(audiosocket_frames(), max_size=8).map(b"".join),
    st.lists(audiosocket_frames(), max_size=8).map(b"".join).map(_uuid_then),
    st.binary(max_size=600).map(_uuid_then),
)


def run_codec(role: Role, pieces: list[bytes], close: bool = True) -> tuple[list[Message], str | None]:
    """Feed ``pieces`` (then EOF) the way the legs do; (messages, protocol error or None).
    Anything but AudioSocketProtocolError propagates and fails the property."""
    codec = AudioSocketCodec(role)
    out: list[Message] = []
    try:
        for piece in [*pieces, b""] if close else pieces:
            codec.receive_data(piece)
            while (message := codec.next_message()) is not None:
                out.append(message)
            assert len(codec._buffer) < HEADER_SIZE + MAX_PAYLOAD  # never more than one message held
    except AudioSocketProtocolError as exc:
        assert str(exc), "a protocol error must say what was wrong"
        return out, str(exc)
    return out, None


@decoder_settings(500)
@given(HOSTILE_STREAMS, CUTS, st.sampled_from(Role))
@example(bytes.fromhex("10 0000"), [3], Role.SERVER)  # zero-length audio, before the UUID
@example(bytes.fromhex("01 0010") + bytes(8), [1], Role.SERVER)  # UUID cut short by the close
@example(bytes.fromhex("01 0001 00"), [4], Role.SERVER)  # a UUID that is not 16 bytes
@example(encode(CallId(CALL)) * 2, [19], Role.SERVER)  # a second UUID
@example(bytes.fromhex("ff ffff"), [1], Role.ASTERISK)  # an error message announcing 64 KiB
def test_any_bytes_in_any_cutting_decode_alike_or_raise_the_protocol_error(
    data: bytes, cuts: list[int], role: Role
) -> None:
    whole = run_codec(role, [data] if data else [])
    assert run_codec(role, chunked(data, cuts)) == whole
    assert run_codec(role, [bytes((b,)) for b in data]) == whole
    messages, error = whole
    if error is None:  # a clean end is always reported as a hang-up (as is each 0x00 a test client sends)
        assert Hangup() in messages
    if role is Role.SERVER:  # nothing is handed on before the UUID
        assert messages in ([], [Hangup()]) or isinstance(messages[0], CallId)


@decoder_settings(300)
@given(HOSTILE_STREAMS, st.sampled_from(Role))
def test_an_open_connection_never_raises_but_the_protocol_error(data: bytes, role: Role) -> None:
    """Without the close: whatever is buffered waits; nothing raises but the protocol error."""
    run_codec(role, [data] if data else [], close=False)


_from_asterisk = st.one_of(
    st.tuples(st.sampled_from(sorted(AUDIO_KINDS)), st.binary(min_size=1, max_size=700)).map(
        lambda kp: Audio(kp[1], Kind(kp[0]))
    ),
    st.sampled_from("0123456789*#ABCD").map(Dtmf),
    st.binary(max_size=8).map(ErrorMessage),
)
_from_server = st.tuples(st.sampled_from(sorted(AUDIO_KINDS)), st.binary(min_size=1, max_size=700)).map(
    lambda kp: Audio(kp[1] + kp[1] if len(kp[1]) % 2 else kp[1], Kind(kp[0]))
)


def _raw(message: Message) -> bytes:
    """``encode`` refuses odd audio (we never send it); Asterisk may, and the server takes it."""
    if isinstance(message, Audio):
        return bytes((message.kind,)) + len(message.payload).to_bytes(2, "big") + message.payload
    return encode(message)


@decoder_settings(300)
@given(st.lists(_from_asterisk, max_size=12), st.lists(st.integers(0, 10_000), max_size=12))
def test_asterisk_stream_split_anywhere_decodes_to_what_was_sent(sent: list[Message], splits: list[int]) -> None:
    data = encode(CallId(CALL)) + b"".join(_raw(m) for m in sent)
    points = sorted({s % (len(data) + 1) for s in splits} | {0, len(data)})
    pieces = [data[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]
    assert run_codec(Role.SERVER, pieces) == ([CallId(CALL), *sent, Hangup()], None)


@decoder_settings(200)
@given(st.lists(_from_server | st.just(Hangup()), max_size=12), st.lists(st.integers(0, 10_000), max_size=12))
def test_server_stream_split_anywhere_decodes_to_what_was_sent(sent: list[Message], splits: list[int]) -> None:
    data = b"".join(encode(m) for m in sent)
    points = sorted({s % (len(data) + 1) for s in splits} | {0, len(data)})
    pieces = [data[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]
    messages, error = run_codec(Role.ASTERISK, pieces)
    assert error is None
    # The peer's close ends the stream with a Hangup unless the server's own 0x00 already did.
    assert messages[: len(sent)] == sent and messages[len(sent) :] in ([], [Hangup()])


# --------------------------------------------------------------------------- the sniffer


@decoder_settings(150)
@given(
    st.lists(
        st.tuples(
            st.binary(max_size=700) | st.integers(0, 400).map(lambda n: b"\xff" * n) | st.integers(0, 400).map(bytes),
            st.floats(0.0, 5.0) | st.sampled_from([0.0, 0.0005, 0.001, 0.02, 1e-12, 1e6]),
        ),
        max_size=120,
    )
)
@example([(b"\x01", 0.0)] * 40)  # one-byte frames arriving all at once
@example([(bytes(160), 0.02 * i) for i in range(600)])  # mu-law-sized silence until the sniffer gives up
def test_the_sniffer_takes_any_payload_at_any_time(frames_in: list[tuple[bytes, float]]) -> None:
    sniffer, at = SlinSniffer(), 1000.0
    for payload, step in frames_in:
        at += step
        verdict = sniffer.feed(payload, at)
        assert isinstance(verdict, Verdict)
        if verdict is not Verdict.UNDECIDED:
            assert sniffer.reason

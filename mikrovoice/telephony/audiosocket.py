"""Asterisk AudioSocket protocol, sans-IO: bytes in, messages out; messages in, bytes out.

Theory of operation. AudioSocket is TLV over one TCP connection: ``kind:u8``, ``len:u16`` big
endian, ``len`` bytes of payload (research/asterisk-media.md section 1). Asterisk is the TCP
client: it sends one UUID message, then 8 kHz slin audio (and DTMF), and hangs up by closing
TCP, never with 0x00. The server answers with audio and may hang up with 0x00.

``AudioSocketCodec`` knows which side it plays (``Role.SERVER`` for mikrovoice, ``Role.ASTERISK``
for the simulator) and enforces what that side accepts: a peer message that the real peer would
reject raises ``AudioSocketProtocolError`` with a message a telephony engineer understands.
This file imports only the standard library and never touches a socket or a clock.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

HEADER_SIZE = 3
MAX_PAYLOAD = 0xFFFF
#: 20 ms of 8 kHz signed-linear mono audio: 160 samples, 2 bytes each.
SLIN8_FRAME_BYTES = 320
FRAME_SECONDS = 0.020


class Kind(enum.IntEnum):
    HANGUP = 0x00
    UUID = 0x01
    SILENCE = 0x02  # only in the CyCore Go library; Asterisk rejects it
    DTMF = 0x03
    SLIN = 0x10  # 8 kHz
    SLIN12 = 0x11
    SLIN16 = 0x12
    SLIN24 = 0x13
    SLIN32 = 0x14
    SLIN44 = 0x15
    SLIN48 = 0x16
    SLIN96 = 0x17
    SLIN192 = 0x18
    ERROR = 0xFF


AUDIO_KINDS = frozenset(range(Kind.SLIN, Kind.SLIN192 + 1))
SAMPLE_RATES = {
    Kind.SLIN: 8000,
    Kind.SLIN12: 12000,
    Kind.SLIN16: 16000,
    Kind.SLIN24: 24000,
    Kind.SLIN32: 32000,
    Kind.SLIN44: 44100,
    Kind.SLIN48: 48000,
    Kind.SLIN96: 96000,
    Kind.SLIN192: 192000,
}
DTMF_DIGITS = frozenset("0123456789*#ABCD")
#: What Asterisk forwards as kind 0x03 (../shared/asterisk/README.md, measured on 23.4.1): the
#: sixteen digits, ``a``-``d`` from SIP INFO and ``X`` for a hook flash (RFC 4733 event 16).
#: Any other byte is still a DTMF message: it is handed on as it came, never an error.
ASTERISK_DTMF = DTMF_DIGITS | frozenset("abcdX")
#: Kinds Asterisk may send the server: UUID, DTMF, audio; 0x00 and 0xFF only from other clients
#: (test harnesses, the CyCore library). Anything else is refused from its 3-byte header on.
_FROM_ASTERISK = frozenset({Kind.HANGUP, Kind.UUID, Kind.DTMF, Kind.ERROR}) | frozenset(range(Kind.SLIN, Kind.SLIN192 + 1))


#: Each kind by its byte, and 0x00 as a plain int: ``next_message`` runs for every 20 ms frame, and
#: an enum call or an enum member's attribute lookup costs more than the rest of the parsing.
_KINDS: dict[int, Kind] = {kind.value: kind for kind in Kind}
_HANGUP = int(Kind.HANGUP)
_UUID = int(Kind.UUID)


class AudioSocketProtocolError(Exception):
    """The peer sent something the real peer would reject; the session must end."""


class Role(enum.Enum):
    SERVER = "server"  # mikrovoice: receives from Asterisk
    ASTERISK = "asterisk"  # the simulator: receives from the server


@dataclass(frozen=True)
class CallId:
    """Kind 0x01: the call's UUID, sent once by Asterisk as the first message."""

    value: uuid.UUID


@dataclass(frozen=True)
class Audio:
    """Kinds 0x10-0x18: signed 16-bit little-endian mono PCM."""

    payload: bytes
    kind: Kind = Kind.SLIN

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATES[self.kind]


@dataclass(frozen=True)
class Dtmf:
    """Kind 0x03: one DTMF digit, sent by Asterisk at the end of the tone.

    Received, ``digit`` is the payload as Asterisk sent it (one ASCII byte normally; any bytes
    are kept, decoded as Latin-1, so an unknown digit can be logged, never refused)."""

    digit: str


@dataclass(frozen=True)
class Hangup:
    """Kind 0x00: the server ends the session. Asterisk itself never sends it."""


@dataclass(frozen=True)
class ErrorMessage:
    """Kind 0xFF with an optional code (CyCore library only; upstream Asterisk never sends it)."""

    code: bytes = b""


Message = CallId | Audio | Dtmf | Hangup | ErrorMessage


def encode(message: Message) -> bytes:
    """One message as one buffer: header and payload go out in a single write."""
    if isinstance(message, Audio):
        kind, payload = message.kind, message.payload
        if not payload or len(payload) % 2:
            raise ValueError(f"audio payload must be a non-empty even number of bytes, got {len(payload)}")
    elif isinstance(message, CallId):
        kind, payload = Kind.UUID, message.value.bytes
    elif isinstance(message, Dtmf):
        if len(message.digit) != 1 or message.digit not in DTMF_DIGITS:
            raise ValueError(f"not a DTMF digit: {message.digit!r}")
        kind, payload = Kind.DTMF, message.digit.encode("ascii")
    elif isinstance(message, Hangup):
        kind, payload = Kind.HANGUP, b""
    else:
        kind, payload = Kind.ERROR, message.code
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes does not fit the 16-bit length")
    return bytes((kind,)) + len(payload).to_bytes(2, "big") + payload


class AudioSocketCodec:
    """Parses the byte stream one side receives, enforcing that side's rules.

    ``receive_data(data)`` buffers bytes (``b""`` means the peer closed TCP);
    ``next_message()`` returns the next whole ``Message``, ``None`` when more bytes are needed,
    or raises ``AudioSocketProtocolError``. After the peer's close, ``next_message()`` returns
    ``Hangup()`` once all buffered messages are consumed, or raises if a message was cut short.
    """

    def __init__(self, role: Role) -> None:
        self.role = role
        self._buffer = bytearray()
        self._seen_uuid = False
        self._closed = False
        self._hangup_reported = False

    @property
    def partial(self) -> bool:
        """True while part of a message is buffered (Asterisk gives the rest 5 ms to arrive)."""
        return bool(self._buffer)

    @property
    def peer_closed(self) -> bool:
        return self._closed

    def receive_data(self, data: bytes | bytearray) -> None:
        if self._closed:
            raise RuntimeError("receive_data() after the peer closed the connection")
        if data:
            self._buffer += data
        else:
            self._closed = True

    def next_message(self) -> Message | None:
        buffer = self._buffer
        if len(buffer) < HEADER_SIZE:
            return self._at_end_of_buffer()
        kind_byte = buffer[0]
        length = (buffer[1] << 8) | buffer[2]
        server = self.role is Role.SERVER
        if server:
            self._check_from_asterisk(kind_byte, length)
        else:
            self._check_from_server(kind_byte, length)
        end = HEADER_SIZE + length
        if len(buffer) < end:
            return self._at_end_of_buffer()
        payload = bytes(buffer[HEADER_SIZE:end])
        del buffer[:end]
        if server:
            return self._from_asterisk(kind_byte, payload)
        if kind_byte == _HANGUP:
            self._hangup_reported = True
            return Hangup()
        return Audio(payload, _KINDS[kind_byte])

    def _at_end_of_buffer(self) -> Message | None:
        if not self._closed:
            return None
        if self._buffer:
            raise AudioSocketProtocolError(
                f"connection closed in the middle of a message ({len(self._buffer)} bytes of it received)"
            )
        if self._hangup_reported:
            return None
        self._hangup_reported = True
        return Hangup()

    def _check_from_server(self, kind: int, length: int) -> None:
        # What res_audiosocket.c accepts from the server (asterisk-media.md section 1.6).
        if kind != _HANGUP and kind not in AUDIO_KINDS:
            name = Kind(kind).name if kind in Kind._value2member_map_ else "unknown"
            raise AudioSocketProtocolError(
                f"received AudioSocket kind 0x{kind:02x} ({name}) from the server; Asterisk accepts "
                "only 0x00 (hangup) and 0x10-0x18 (audio) and ends the session"
            )
        if kind in AUDIO_KINDS and length == 0:
            raise AudioSocketProtocolError("received a zero-length audio message from the server")
        # An odd length is taken: res_audiosocket.c makes len/2 samples of it (RA L421).

    def _check_from_asterisk(self, kind: int, length: int) -> None:
        # Decided on the header alone: an unknown kind announcing a large length must not keep
        # the call (and its paid model session) open while that many bytes arrive.
        if kind in AUDIO_KINDS:
            if length == 0:
                raise AudioSocketProtocolError("zero-length audio message from Asterisk")
        elif kind not in _FROM_ASTERISK:
            raise AudioSocketProtocolError(
                f"unknown AudioSocket kind 0x{kind:02x} from Asterisk (length {length}); Asterisk sends "
                "only 0x01 (UUID), 0x03 (DTMF) and 0x10-0x18 (audio)"
            )
        if not self._seen_uuid and kind != _UUID:
            raise AudioSocketProtocolError(
                f"first AudioSocket message must be the UUID (kind 0x01), got kind 0x{kind:02x}"
            )
        if kind == _UUID and (self._seen_uuid or length != 16):
            raise AudioSocketProtocolError(
                "a second UUID message arrived in the same session" if self._seen_uuid
                else f"UUID message must carry 16 bytes, got {length}"
            )

    def _from_asterisk(self, kind: int, payload: bytes) -> Message:
        # The header passed _check_from_asterisk: the kind is known and allowed here.
        if kind == _UUID:
            self._seen_uuid = True
            return CallId(uuid.UUID(bytes=payload))
        if kind in AUDIO_KINDS:
            # Any length: slin is even, but a mislabelled G.711 stream need not be (the leg
            # keeps a trailing odd byte for the next message).
            return Audio(payload, _KINDS[kind])
        if kind == Kind.DTMF:
            return Dtmf(payload.decode("latin-1"))
        if kind == Kind.HANGUP:
            # Asterisk never sends it, but other clients (test harnesses) do: treat it as a hang-up.
            self._hangup_reported = True
            return Hangup()
        return ErrorMessage(payload)

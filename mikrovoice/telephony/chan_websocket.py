"""Asterisk chan_websocket media protocol, sans-IO, both sides: text in, events out; commands in, text out.

Theory of operation. ``Dial(WebSocket/<connection>/<options>)`` makes Asterisk a WebSocket client
of our service (or, with ``INCOMING``, a server our app dials). One WebSocket carries one call:
BINARY messages are audio in the channel's native format, TEXT messages are control, either
``plain-text`` (one line, ``NAME key:value ...``) or ``json`` (one object), chosen per call with
``f(json)`` or globally in chan_websocket.conf (CW L1672-1683, L2007; default ``plain-text``).

Citations are line numbers in ``/work/shared/asterisk/source/chan_websocket.c`` (**CW**), which is
byte-identical to ``channels/chan_websocket.c`` at tag 23.4.1 (checked with ``git show``), and, at
the same tag: **RHW** ``res/res_http_websocket.c``, **HWS** ``include/asterisk/http_websocket.h``,
**RWC** ``res/res_websocket_client.c``, **CB** ``main/codec_builtin.c``, **STR**
``include/asterisk/strings.h``, **JS** ``main/json.c``. (research/asterisk-media.md cites master,
whose line numbers differ.)

Connection. For an outbound ``Dial(WebSocket/<connection>/...)`` with ``connection_type =
per_call_config``, each call opens its own connection and sends ``GET /<path>[?<query>]`` for
exactly the ``uri`` of that websocket_client.conf section: Asterisk appends **no** connection id or
channel id (RWC L246-273, RHW L1110-1137, L1465-1481). The only additions come from the dial option
``v(k=v,k2=v2)``: the commas become ``&`` (CW L1666-1668) and the list is appended after ``?`` (or
``&`` if the uri already has a query, RWC L256-268). ``outbound_request_target()`` computes that
target and ``request_params()`` reads the parameters back, e.g. ``v(call=${UNIQUEID})``; the ids
themselves arrive in MEDIA_START. Beware: the parameters are stored on the shared websocket_client
object (RWC L240-244) and only replaced by a call that has ``v()`` (CW L1271-1273), so a later call
without ``v()`` sends the previous call's parameters (seen on 23.4.1). Asterisk offers the
subprotocol(s) named by ``protocols =`` (use ``media``, ``SUBPROTOCOL``); the server need not echo
one, but one it echoes must be in that list, and any ``Sec-WebSocket-Extensions`` answer
(permessage-deflate) fails the call (RHW L1424-1435).
Inbound (``INCOMING``) apps connect to ``/media/<MEDIA_WEBSOCKET_CONNECTION_ID>`` with subprotocol
``media`` (CW L1851-1933, L2080).

Events (Asterisk -> app, ``encode_event``/``parse_event``). MEDIA_START is sent once on connect
(CW L1158), then the channel is auto-answered unless ``n`` (CW L1173-1176). Plain text, CW L248-256::

    MEDIA_START connection_id:<id> channel:<name> channel_id:<uniqueid> format:<fmt> optimal_frame_size:<n> ptime:<ms>

JSON (CW L231-241) is compact jansson output (JS L467-487: ``JSON_COMPACT``, keys in insertion order,
control characters escaped as ``\\u001F`` uppercase) with ``channel_variables``: every variable of
the channel (JS L941-951), incl. MEDIA_WEBSOCKET_CONNECTION_ID and MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE
(CW L1469-1484). Every other JSON event is ``{"event":...,"channel_id":...,...}`` (CW L198-428);
the plain-text forms of MEDIA_XON/MEDIA_XOFF/QUEUE_DRAINED are the bare name (CW L211, L217-219),
MEDIA_MARK_PROCESSED/MEDIA_BUFFERING_COMPLETED are the name plus `` <id>`` if an id was given
(CW L283-285, L313-315), DTMF_END is ``DTMF_END digit:<d> channel_id:<id>`` (digit first, CW L343),
STATUS and ERROR as in CW L376-384, L422-423. Some ERROR texts end in ``\\n`` (CW L849, L855, L898).
``parse_event`` detects the format (a plain-text event starts with an upper-case name), never
raises on a well-formed event it does not know (``UnknownEvent``), and raises
``ChanWebsocketProtocolError`` for anything else.

Commands (app -> Asterisk, ``encode_command``/``parse_command``). A TEXT message longer than 128
bytes is ignored with a warning (CW L144, L922-926), as is an empty one (L916-920). Asterisk cuts
the text at a NUL, strips bytes < 33 from both ends (CW L933-936, STR L150-222), then: plain text
splits at the first space into name and argument (CW L725-730); JSON loads the text with jansson
(top level object or array, no NaN, no ``\\u0000``) and reads the string members ``command`` and
``correlation_id`` (CW L715-723); unparsable JSON answers ERROR ``Unable to parse JSON command``
(CW L718-721). Names are matched case-sensitively with strcmp (CW L733-843); an unknown name is only
logged, nothing is sent back (CW L903-906). Plain-text arguments of commands that take none are
ignored (``ANSWER now`` answers). SET_MEDIA_DIRECTION exists only in JSON (CW L843-901).

Media (``MediaQueue``, the model of what Asterisk does with our BINARY messages). Not in passthrough,
each message is cut into ``optimal_frame_size`` frames (default_ms * minimum_bytes / minimum_ms of
the codec, CW L1406-1417, table from CB) and queued (CW L1035-1045); a remainder smaller than one
frame is dropped, unless media buffering is on (START_MEDIA_BUFFERING): then it is kept and
completed by the next message's first bytes (CW L970-1029, L1047-1064); STOP_MEDIA_BUFFERING
queues whatever is left as one *short* frame, then MEDIA_BUFFERING_COMPLETED (CW L765-777). A
channel timer every ptime takes one frame off the queue (CW L579-614, L465-563). Marks and
MEDIA_BUFFERING_COMPLETED are control frames in the same queue, not counted in its length
(CW L651-676, L545-548); all control frames at the head are sent in one tick, before that tick's
audio frame (CW L526-549), so a mark behind N frames is reported on tick N+1, even on an empty
queue (one tick later, never at once). Flow control (CW L141-143): a message that arrives while the
queue holds >= 1000 frames is ignored whole (CW L955-959), but the check is made once per message,
so one large message can take the queue past 1000; MEDIA_XOFF is sent once when a queued frame
brings the length to >= 900 (CW L638-642); MEDIA_XON at the start of a tick whose length is < 800
(CW L486-491). FLUSH_MEDIA drops every frame *and every pending mark* (CW L805-817): those marks
are never reported. QUEUE_DRAINED is sent by the first tick that finds the queue empty after
REPORT_QUEUE_DRAINED (CW L501-508); a tick that only sends control frames does not count. A paused
queue does nothing at all on a tick, not even XON (CW L476-478). Media direction ``in`` drops our
audio (CW L1118-1123) and stops the timer (CW L883-895, L1701-1705).

Message size. res_http_websocket reads each WebSocket frame (header, mask and payload) into a
fixed 65535-byte buffer, ``AST_WEBSOCKET_MAX_RX_PAYLOAD_SIZE`` (HWS L100-106, RHW L97); a larger
frame closes the socket with 1009 and hangs up (RHW L666-674, CW L1083-1091). So the payload limit
is 65535 - 4 = 65531 bytes for the unmasked frames a server sends (``MAX_MESSAGE_BYTES``) and
65535 - 8 = 65527 for masked frames from an ``INCOMING`` client. The docs' 65500 is a round figure
under both; a LOW_MEMORY build allows 8192. Do not fragment messages: with reconstruction at 1024
bytes (CW L1154) the chunks of a fragmented message after the first 1024 bytes can come up as
CONTINUATION and be ignored (CW L1105-1108, RHW L733-752).

Checked against a running Asterisk 23.4.1 (Local channel -> ``Dial(WebSocket/conn1/...)``, both
formats): every event text the tests call "captured" was received verbatim from it, the request
target was ``/some/path?call=...&k=v`` for ``uri = ws://127.0.0.1:18765/some/path``, a 65531-byte
message was queued as 204 frames and a 65532-byte one closed the socket with 1009.

This module imports only the standard library and never touches a socket or a clock.
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal, get_args
from urllib.parse import parse_qsl, urlsplit

Format = Literal["plain-text", "json"]
MediaDirection = Literal["both", "in", "out"]
PLAIN_TEXT: Format = "plain-text"
JSON: Format = "json"

SUBPROTOCOL = "media"
#: CW L144: MIN(128, AST_WEBSOCKET_MAX_RX_PAYLOAD_SIZE - 1); longer TEXT messages are ignored.
MAX_TEXT_BYTES = 128
MAX_QUEUE_FRAMES = 1000  # CW L141
XOFF_FRAMES = 900  # CW L142
XON_FRAMES = 800  # CW L143
#: HWS L105: the whole frame (header + mask + payload) must fit in this buffer (RHW L666-674).
MAX_FRAME_BYTES = 65535
#: Largest BINARY payload in one unmasked frame (what a WebSocket server sends): 2-byte header
#: plus 2-byte extended length.
MAX_MESSAGE_BYTES = MAX_FRAME_BYTES - 4
#: Largest payload in one masked frame (what an app that dials ``/media/<id>`` sends).
MAX_MASKED_MESSAGE_BYTES = MAX_FRAME_BYTES - 8


class ChanWebsocketProtocolError(Exception):
    """Asterisk sent a TEXT message that no chan_websocket sends: the session cannot be trusted."""


# --- codecs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Codec:
    """The fields of ``struct ast_codec`` that chan_websocket uses (CB, tag 23.4.1)."""

    sample_rate: int
    minimum_ms: int
    default_ms: int
    minimum_bytes: int

    @property
    def passthrough(self) -> bool:
        """Forced passthrough: the stream cannot be cut on byte boundaries (CW L1406-1408)."""
        return self.minimum_bytes <= 10

    @property
    def optimal_frame_size(self) -> int:
        """CW L1406-1417: 0 in forced passthrough, else default_ms * minimum_bytes / minimum_ms."""
        if self.passthrough:
            return 0
        return self.default_ms * self.minimum_bytes // self.minimum_ms


#: Audio formats by the name ``ast_format_get_name`` gives (the name in MEDIA_START ``format``).
CODECS: Mapping[str, Codec] = {
    "ulaw": Codec(8000, 10, 20, 80),
    "alaw": Codec(8000, 10, 20, 80),
    "slin": Codec(8000, 10, 20, 160),
    "slin12": Codec(12000, 10, 20, 240),
    "slin16": Codec(16000, 10, 20, 320),
    "slin24": Codec(24000, 10, 20, 480),
    "slin32": Codec(32000, 10, 20, 640),
    "slin44": Codec(44100, 10, 20, 882),
    "slin48": Codec(48000, 10, 20, 960),
    "slin96": Codec(96000, 10, 20, 1920),
    "slin192": Codec(192000, 10, 20, 3840),
    "g722": Codec(16000, 10, 20, 80),
    "g726": Codec(8000, 10, 20, 40),
    "g726aal2": Codec(8000, 10, 20, 40),
    "adpcm": Codec(8000, 10, 20, 40),
    "gsm": Codec(8000, 20, 20, 33),
    "ilbc": Codec(8000, 20, 20, 38),
    "g723": Codec(8000, 30, 30, 20),
    "siren7": Codec(16000, 20, 20, 80),
    "siren14": Codec(32000, 20, 20, 120),
    "g719": Codec(48000, 20, 20, 160),
    "silk8": Codec(8000, 20, 20, 160),
    "silk12": Codec(12000, 20, 20, 240),
    "silk16": Codec(16000, 20, 20, 320),
    "silk24": Codec(24000, 20, 20, 480),
    "lpc10": Codec(8000, 20, 20, 7),
    "g729": Codec(8000, 10, 20, 10),
    "speex": Codec(8000, 10, 20, 10),
    "speex16": Codec(16000, 10, 20, 10),
    "speex32": Codec(32000, 10, 20, 10),
    "opus": Codec(48000, 20, 20, 10),
    "codec2": Codec(8000, 20, 20, 6),
}


def _codec(format_name: str) -> Codec:
    try:
        return CODECS[format_name]
    except KeyError:
        raise ValueError(f"unknown Asterisk audio format {format_name!r}") from None


def optimal_frame_size(format_name: str) -> int:
    """Bytes per frame Asterisk cuts our audio into (ulaw/alaw 160, slin 320, slin16 640, slin24 960).

    0 for codecs in forced passthrough (opus, speex, g729, lpc10, codec2), as MEDIA_START reports.
    """
    return _codec(format_name).optimal_frame_size


def ptime(format_name: str) -> int:
    """Milliseconds per frame: the codec's default_ms (MEDIA_START ``ptime``, the timer period)."""
    return _codec(format_name).default_ms


# --- URLs ---------------------------------------------------------------------------------------


def outbound_request_target(uri: str, uri_params: str | None = None) -> str:
    """The request-target of Asterisk's ``GET`` for ``uri`` from websocket_client.conf.

    ``uri_params`` is the dial option ``v(...)`` as written (``a=1,b=2``). Nothing else is added
    (RWC L256-273, CW L1657-1668, RHW L1110-1137, L1466).
    """
    if uri_params:
        uri = f"{uri}{'&' if '?' in uri else '?'}{uri_params.replace(',', '&')}"
    parts = urlsplit(uri)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def request_params(target: str) -> dict[str, str]:
    """The ``v(...)`` parameters in the request-target our server received, URI-decoded."""
    return dict(parse_qsl(urlsplit(target).query, keep_blank_values=True))


# --- events (Asterisk -> app) ---------------------------------------------------------------------


@dataclass(frozen=True)
class MediaStart:
    """Sent once when the WebSocket is up (CW L226-260, L1158). ``channel_variables``: JSON only."""

    NAME: ClassVar[str] = "MEDIA_START"
    connection_id: str
    channel: str
    channel_id: str
    format: str
    optimal_frame_size: int
    ptime: int
    channel_variables: Mapping[str, str] = field(default_factory=dict)
    #: Fields this module does not know (a newer Asterisk), in the order received.
    extra: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class DtmfEnd:
    """The caller pressed ``digit`` (CW L327-348, L1768-1777). Not validated here."""

    NAME: ClassVar[str] = "DTMF_END"
    digit: str
    channel_id: str


@dataclass(frozen=True)
class MediaXoff:
    """The queue reached 900 frames: stop sending audio (CW L638-642)."""

    NAME: ClassVar[str] = "MEDIA_XOFF"
    channel_id: str | None = None  # JSON only


@dataclass(frozen=True)
class MediaXon:
    """The queue is below 800 frames again (CW L486-491)."""

    NAME: ClassVar[str] = "MEDIA_XON"
    channel_id: str | None = None  # JSON only


@dataclass(frozen=True)
class QueueDrained:
    """Answer to REPORT_QUEUE_DRAINED: the queue ran empty (CW L501-508)."""

    NAME: ClassVar[str] = "QUEUE_DRAINED"
    channel_id: str | None = None  # JSON only


@dataclass(frozen=True)
class MediaBufferingCompleted:
    """STOP_MEDIA_BUFFERING reached the head of the queue (CW L765-777). ``""`` id reads as None."""

    NAME: ClassVar[str] = "MEDIA_BUFFERING_COMPLETED"
    correlation_id: str | None = None
    channel_id: str | None = None  # JSON only


@dataclass(frozen=True)
class MediaMarkProcessed:
    """MARK_MEDIA reached the head of the queue: everything before it was played (CW L780-803)."""

    NAME: ClassVar[str] = "MEDIA_MARK_PROCESSED"
    correlation_id: str | None = None
    channel_id: str | None = None  # JSON only


@dataclass(frozen=True)
class Status:
    """Answer to GET_STATUS (CW L355-388). ``queue_length`` counts audio frames only."""

    NAME: ClassVar[str] = "STATUS"
    channel_id: str
    queue_length: int
    xon_level: int
    xoff_level: int
    queue_full: bool
    bulk_media: bool
    media_paused: bool


@dataclass(frozen=True)
class AsteriskError:
    """An ERROR event: a command was refused (CW L395-428, L678-697, L720, L849-899)."""

    NAME: ClassVar[str] = "ERROR"
    error_text: str
    channel_id: str


@dataclass(frozen=True)
class UnknownEvent:
    """A well-formed event this module does not know; ``raw`` is the whole text."""

    name: str
    raw: str


Event = (
    MediaStart
    | DtmfEnd
    | MediaXoff
    | MediaXon
    | QueueDrained
    | MediaBufferingCompleted
    | MediaMarkProcessed
    | Status
    | AsteriskError
    | UnknownEvent
)

# --- commands (app -> Asterisk) -------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    NAME: ClassVar[str] = "ANSWER"


@dataclass(frozen=True)
class Hangup:
    NAME: ClassVar[str] = "HANGUP"


@dataclass(frozen=True)
class StartMediaBuffering:
    NAME: ClassVar[str] = "START_MEDIA_BUFFERING"


@dataclass(frozen=True)
class StopMediaBuffering:
    NAME: ClassVar[str] = "STOP_MEDIA_BUFFERING"
    correlation_id: str | None = None


@dataclass(frozen=True)
class MarkMedia:
    NAME: ClassVar[str] = "MARK_MEDIA"
    correlation_id: str | None = None


@dataclass(frozen=True)
class FlushMedia:
    NAME: ClassVar[str] = "FLUSH_MEDIA"


@dataclass(frozen=True)
class GetStatus:
    NAME: ClassVar[str] = "GET_STATUS"


@dataclass(frozen=True)
class ReportQueueDrained:
    NAME: ClassVar[str] = "REPORT_QUEUE_DRAINED"


@dataclass(frozen=True)
class PauseMedia:
    NAME: ClassVar[str] = "PAUSE_MEDIA"


@dataclass(frozen=True)
class ContinueMedia:
    NAME: ClassVar[str] = "CONTINUE_MEDIA"


@dataclass(frozen=True)
class SetMediaDirection:
    """JSON only (CW L843-901). The direction is the app's: ``in`` = the app only listens."""

    NAME: ClassVar[str] = "SET_MEDIA_DIRECTION"
    direction: MediaDirection


Command = (
    Answer
    | Hangup
    | StartMediaBuffering
    | StopMediaBuffering
    | MarkMedia
    | FlushMedia
    | GetStatus
    | ReportQueueDrained
    | PauseMedia
    | ContinueMedia
    | SetMediaDirection
)


@dataclass(frozen=True)
class IgnoredCommand:
    """A TEXT message Asterisk does not act on.

    ``reason`` is what Asterisk logs (without the channel-name prefix), ``error_text`` the text of
    the ERROR event it sends back (None: it sends nothing), ``command`` the name it read, if any.
    """

    reason: str
    error_text: str | None = None
    command: str | None = None


_SIMPLE_COMMANDS: Mapping[str, Command] = {
    c.NAME: c
    for c in (
        Answer(),
        Hangup(),
        StartMediaBuffering(),
        FlushMedia(),
        GetStatus(),
        ReportQueueDrained(),
        PauseMedia(),
        ContinueMedia(),
    )
}
_DIRECTIONS: tuple[str, ...] = get_args(MediaDirection)


def _check_format(fmt: str) -> Format:
    if fmt == PLAIN_TEXT:
        return PLAIN_TEXT
    if fmt == JSON:
        return JSON
    raise ValueError(f"control message format must be 'plain-text' or 'json', not {fmt!r}")


def _check_c_string(what: str, value: str) -> None:
    """A C string cannot hold NUL, and Asterisk sends UTF-8: refuse what it could not carry."""
    if "\x00" in value:
        raise ValueError(f"{what} contains NUL: {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not encodable as UTF-8: {value!r}") from None


def encode_command(cmd: Command, fmt: Format) -> str:
    """The TEXT message for ``cmd`` as chan_websocket parses it (CW L708-909).

    Raises ValueError if Asterisk would not receive it as meant: longer than 128 bytes (CW L922),
    SET_MEDIA_DIRECTION in plain text, or a plain-text correlation id with whitespace (Asterisk
    strips it, CW L936). An empty correlation id is the same as none (CW L285, L315).
    """
    fmt = _check_format(fmt)
    correlation_id = cmd.correlation_id if isinstance(cmd, StopMediaBuffering | MarkMedia) else None
    if correlation_id is not None:
        _check_c_string("correlation id", correlation_id)
    if fmt == PLAIN_TEXT:
        if isinstance(cmd, SetMediaDirection):
            raise ValueError("SET_MEDIA_DIRECTION only exists in the json control format (CW L848)")
        text = cmd.NAME
        if correlation_id:
            if any(c.isspace() or ord(c) < 33 for c in correlation_id):
                raise ValueError(f"a plain-text correlation id cannot hold whitespace: {correlation_id!r}")
            text = f"{text} {correlation_id}"
    else:
        obj: dict[str, str] = {"command": cmd.NAME}
        if correlation_id:
            obj["correlation_id"] = correlation_id
        if isinstance(cmd, SetMediaDirection):
            if cmd.direction not in _DIRECTIONS:
                raise ValueError(f"not a media direction: {cmd.direction!r}")
            obj["direction"] = cmd.direction
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    size = len(text.encode("utf-8"))
    if size > MAX_TEXT_BYTES:
        raise ValueError(f"command is {size} bytes; Asterisk ignores TEXT messages over {MAX_TEXT_BYTES}")
    return text


def _jansson_loads(text: str) -> object:
    """json.loads restricted to what jansson's ``json_loadb(buf, len, 0)`` accepts (JS L585-591)."""

    def reject_constant(name: str) -> object:
        raise ValueError(f"invalid token {name}")

    def parse_int(s: str) -> int:
        value = int(s)
        if not -(2**63) <= value < 2**63:
            raise ValueError("too big integer")
        return value

    def parse_float(s: str) -> float:
        value = float(s)
        if math.isinf(value):
            raise ValueError("real number overflow")
        return value

    value: object = json.loads(
        text, parse_constant=reject_constant, parse_int=parse_int, parse_float=parse_float
    )
    if not isinstance(value, dict | list):
        raise ValueError("'[' or '{' expected")  # no JSON_DECODE_ANY
    problem = _json_strings_problem(value, nul=True)
    if problem is not None:
        raise ValueError(problem)
    return value


def _is_utf8(text: str) -> bool:
    """False for text with a lone surrogate: no WebSocket TEXT message (UTF-8) can carry it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_strings_problem(value: object, *, nul: bool) -> str | None:
    """What jansson would refuse in the strings (keys included) of a decoded JSON value: a lone
    surrogate (an invalid ``\\uD800`` escape), and NUL if ``nul`` (no JSON_ALLOW_NUL)."""
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        strings: list[str] = []
        if isinstance(item, dict):
            strings.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            strings.append(item)
        for s in strings:
            if nul and "\x00" in s:
                return "\\u0000 is not allowed without JSON_ALLOW_NUL"
            if not _is_utf8(s):
                return "invalid Unicode escape"
    return None


def _c_strip(text: str) -> str:
    """CW L933-936: the C string ends at the first NUL; ast_strip drops bytes < 33 at both ends."""
    text = text.split("\x00", 1)[0]
    start, end = 0, len(text)
    while start < end and ord(text[start]) < 33:
        start += 1
    while end > start and ord(text[end - 1]) < 33:
        end -= 1
    return text[start:end]


def parse_command(text: str, fmt: Format) -> Command | IgnoredCommand:
    """What chan_websocket makes of one TEXT message (CW L911-942, L708-909).

    State-dependent refusals (passthrough, media direction ``in``) are ``MediaQueue.command``'s.
    """
    fmt = _check_format(fmt)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size == 0:
        return IgnoredCommand("WebSocket TEXT message has 0 length")
    if size > MAX_TEXT_BYTES:
        return IgnoredCommand(
            f"WebSocket TEXT message of length {size} exceeds maximum length of {MAX_TEXT_BYTES}"
        )
    if not _is_utf8(text):
        # A lone surrogate: no WebSocket TEXT message carries one, and nothing Asterisk would echo
        # back (a correlation id) could be encoded. Only a caller of this function can make one.
        return IgnoredCommand(f"WebSocket TEXT message is not UTF-8: {text!r}")
    text = _c_strip(text)
    obj: dict[str, object] = {}
    data: str | None = None
    if fmt == JSON:
        try:
            loaded = _jansson_loads(text)
        except (ValueError, RecursionError):
            return IgnoredCommand(
                f"Unable to parse JSON command: {text!r}", error_text="Unable to parse JSON command"
            )
        if isinstance(loaded, dict):
            obj = loaded
        raw_name = obj.get("command")
        name = raw_name if isinstance(raw_name, str) else None
    else:
        name, space, rest = text.partition(" ")
        data = rest if space else None

    def json_string(key: str) -> str | None:
        value = obj.get(key)
        return value if isinstance(value, str) else None

    correlation_id = json_string("correlation_id") if fmt == JSON else data
    if name is not None and name in _SIMPLE_COMMANDS:
        return _SIMPLE_COMMANDS[name]
    if name == StopMediaBuffering.NAME:
        return StopMediaBuffering(correlation_id)
    if name == MarkMedia.NAME:
        return MarkMedia(correlation_id)
    if name == SetMediaDirection.NAME:
        if fmt != JSON:
            return IgnoredCommand(
                "SET_MEDIA_DIRECTION in plain-text format",
                error_text="SET_MEDIA_DIRECTION only supports JSON format.\n",
                command=name,
            )
        direction = json_string("direction")
        if direction is None:
            return IgnoredCommand(
                "SET_MEDIA_DIRECTION without direction",
                error_text="SET_MEDIA_DIRECTION requires a 'direction' parameter.\n",
                command=name,
            )
        if direction == "both":
            return SetMediaDirection("both")
        if direction == "in":
            return SetMediaDirection("in")
        if direction == "out":
            return SetMediaDirection("out")
        return IgnoredCommand(
            f"SET_MEDIA_DIRECTION to {direction!r}",
            error_text=f"'{direction}' is not a valid direction for SET_MEDIA_DIRECTION.\n",
            command=name,
        )
    # glibc prints a NULL %s as "(null)" (CW L904).
    return IgnoredCommand(f"WebSocket {'(null)' if name is None else name} command unknown", command=name)


# --- encoding events ----------------------------------------------------------------------------

_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _jansson_dumps(value: object) -> str:
    """jansson ``json_dumps(value, JSON_COMPACT)``: no spaces, UTF-8 kept, ``\\u%04X`` controls."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("jansson cannot encode a non-finite real")
        s = format(value, ".17g")
        return s if any(c in s for c in ".eE") else s + ".0"
    if isinstance(value, str):
        _check_c_string("JSON string", value)
        out = []
        for c in value:
            if c in _SHORT_ESCAPES:
                out.append(_SHORT_ESCAPES[c])
            elif ord(c) < 0x20:
                out.append(f"\\u{ord(c):04X}")
            else:
                out.append(c)
        return '"' + "".join(out) + '"'
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{_jansson_dumps(str(k))}:{_jansson_dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_jansson_dumps(v) for v in value) + "]"
    raise ValueError(f"cannot encode {type(value).__name__} as JSON")


def _plain_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _need_channel_id(event: Event) -> str:
    channel_id = getattr(event, "channel_id", None)
    if channel_id is None:
        raise ValueError(f"{type(event).__name__} in json needs a channel_id")
    return str(channel_id)


def encode_event(event: Event, fmt: Format) -> str:
    """The exact TEXT message Asterisk 23.4.1 sends for ``event`` (CW L198-428).

    ``UnknownEvent`` encodes as its raw text (for a stand-in that wants to send surprises).
    """
    fmt = _check_format(fmt)
    if isinstance(event, UnknownEvent):
        return event.raw
    for name, value in vars(event).items():
        if isinstance(value, str):
            _check_c_string(name, value)
    if fmt == PLAIN_TEXT:
        return _encode_plain(event)
    obj: dict[str, object] = {"event": event.NAME}
    if isinstance(event, MediaStart):
        obj |= {
            "connection_id": event.connection_id,
            "channel": event.channel,
            "channel_id": event.channel_id,
            "format": event.format,
            "optimal_frame_size": event.optimal_frame_size,
            "ptime": event.ptime,
            "channel_variables": dict(event.channel_variables),
        }
        obj |= {k: v for k, v in event.extra.items() if k not in obj}
        return _jansson_dumps(obj)
    obj["channel_id"] = _need_channel_id(event)
    if isinstance(event, MediaBufferingCompleted | MediaMarkProcessed):
        obj["correlation_id"] = event.correlation_id or ""  # S_OR(id, "") CW L275, L305
    elif isinstance(event, DtmfEnd):
        if len(event.digit) != 1:
            raise ValueError(f"Asterisk sends one character per DTMF_END, not {event.digit!r}")
        obj["digit"] = event.digit
    elif isinstance(event, Status):
        obj |= {
            "queue_length": event.queue_length,
            "xon_level": event.xon_level,
            "xoff_level": event.xoff_level,
            "queue_full": event.queue_full,
            "bulk_media": event.bulk_media,
            "media_paused": event.media_paused,
        }
    elif isinstance(event, AsteriskError):
        obj["error_text"] = event.error_text
    return _jansson_dumps(obj)


def _encode_plain(event: Event) -> str:
    if isinstance(event, MediaStart):
        text = (
            f"MEDIA_START connection_id:{event.connection_id} channel:{event.channel}"
            f" channel_id:{event.channel_id} format:{event.format}"
            f" optimal_frame_size:{event.optimal_frame_size} ptime:{event.ptime}"
        )
        return text + "".join(f" {k}:{_plain_value(v)}" for k, v in event.extra.items())
    if isinstance(event, MediaBufferingCompleted | MediaMarkProcessed):
        # "%s%s%s", name, S_COR(id, " ", ""), S_OR(id, ""): a non-NULL "" id leaves a trailing space.
        return event.NAME + ("" if event.correlation_id is None else " " + event.correlation_id)
    if isinstance(event, DtmfEnd):
        if len(event.digit) != 1:
            raise ValueError(f"Asterisk sends one character per DTMF_END, not {event.digit!r}")
        return f"DTMF_END digit:{event.digit} channel_id:{event.channel_id}"
    if isinstance(event, Status):
        return (
            f"STATUS channel_id:{event.channel_id} queue_length:{event.queue_length}"
            f" xon_level:{event.xon_level} xoff_level:{event.xoff_level}"
            f" queue_full:{_plain_value(event.queue_full)} bulk_media:{_plain_value(event.bulk_media)}"
            f" media_paused:{_plain_value(event.media_paused)}"
        )
    if isinstance(event, AsteriskError):
        return f"ERROR channel_id:{event.channel_id} error_text:{event.error_text}"
    assert not isinstance(event, UnknownEvent)
    return event.NAME  # MEDIA_XON, MEDIA_XOFF, QUEUE_DRAINED: ast_strdup(event), CW L211


# --- parsing events -----------------------------------------------------------------------------

_PLAIN_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
_PLAIN_KEY = re.compile(r"([a-z][a-z0-9_]*):")
#: Asterisk prints these with %d/%u (CW L248-256, L376-384): 20 digits hold any of them. More
#: would not be Asterisk's, and over 4300 digits int() itself refuses (a ValueError, not ours).
_INT = re.compile(r"-?[0-9]{1,20}")


def _error(raw: str, problem: str) -> ChanWebsocketProtocolError:
    """One log line, however long the message or the value it complains about."""
    shown = raw if len(raw) <= 200 else raw[:200] + "..."
    problem = problem if len(problem) <= 200 else problem[:200] + "..."
    return ChanWebsocketProtocolError(f"chan_websocket event {shown!r}: {problem}")


def parse_event(text: str) -> Event:
    """One TEXT message from Asterisk, in either format (detected). See the module docstring."""
    if not text:
        raise ChanWebsocketProtocolError("empty chan_websocket TEXT message")
    if not _is_utf8(text):
        raise _error(text, "not UTF-8 (a lone surrogate): no WebSocket TEXT message carries that")
    name, _, _ = text.partition(" ")
    if _PLAIN_NAME.fullmatch(name):
        return _parse_plain(text)
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise _error(text, f"neither a plain-text event nor JSON ({e})") from None
    if not isinstance(obj, dict):
        raise _error(text, f"JSON event must be an object, not {type(obj).__name__}")
    problem = _json_strings_problem(obj, nul=False)
    if problem is not None:  # jansson writes only UTF-8: a \\ud800 escape is not Asterisk's
        raise _error(text, problem)
    return _parse_json(text, obj)


def _plain_fields(raw: str, rest: str) -> dict[str, str]:
    """``key:value key:value``; a word without ``key:`` continues the previous value (spaces)."""
    fields: dict[str, str] = {}
    key: str | None = None
    for word in rest.split(" ") if rest else []:
        m = _PLAIN_KEY.match(word)
        if m and m.group(1) not in fields:
            key = m.group(1)
            fields[key] = word[m.end() :]
        elif key is None:
            raise _error(raw, f"expected key:value, got {word!r}")
        else:
            fields[key] += " " + word
    return fields


def _plain_int(raw: str, fields: Mapping[str, str], key: str) -> int:
    value = _plain_str(raw, fields, key)
    if not _INT.fullmatch(value):
        raise _error(raw, f"{key} is not an integer: {value!r}")
    return int(value)


def _plain_str(raw: str, fields: Mapping[str, str], key: str) -> str:
    if key not in fields:
        raise _error(raw, f"missing {key}")
    return fields[key]


def _plain_bool(raw: str, fields: Mapping[str, str], key: str) -> bool:
    value = _plain_str(raw, fields, key)
    if value not in ("true", "false"):
        raise _error(raw, f"{key} is not true or false: {value!r}")
    return value == "true"


def _parse_plain(raw: str) -> Event:
    name, space, rest = raw.partition(" ")
    if name == MediaXoff.NAME:
        return MediaXoff()
    if name == MediaXon.NAME:
        return MediaXon()
    if name == QueueDrained.NAME:
        return QueueDrained()
    if name == MediaMarkProcessed.NAME:
        return MediaMarkProcessed(rest or None)
    if name == MediaBufferingCompleted.NAME:
        return MediaBufferingCompleted(rest or None)
    if name == AsteriskError.NAME:
        # The error text is free text (spaces, colons, a trailing newline): take it whole.
        head, sep, error_text = rest.partition(" error_text:")
        if not sep or not head.startswith("channel_id:"):
            raise _error(raw, "expected 'channel_id:<id> error_text:<text>'")
        return AsteriskError(error_text, head[len("channel_id:") :])
    if name == DtmfEnd.NAME:
        head, sep, channel_id = rest.rpartition(" channel_id:")
        if not sep or not head.startswith("digit:"):
            raise _error(raw, "expected 'digit:<d> channel_id:<id>'")
        return DtmfEnd(head[len("digit:") :], channel_id)
    if name == MediaStart.NAME:
        f = _plain_fields(raw, rest)
        known = ("connection_id", "channel", "channel_id", "format", "optimal_frame_size", "ptime")
        return MediaStart(
            connection_id=_plain_str(raw, f, "connection_id"),
            channel=_plain_str(raw, f, "channel"),
            channel_id=_plain_str(raw, f, "channel_id"),
            format=_plain_str(raw, f, "format"),
            optimal_frame_size=_plain_int(raw, f, "optimal_frame_size"),
            ptime=_plain_int(raw, f, "ptime"),
            extra={k: v for k, v in f.items() if k not in known},
        )
    if name == Status.NAME:
        f = _plain_fields(raw, rest)
        return Status(
            channel_id=_plain_str(raw, f, "channel_id"),
            queue_length=_plain_int(raw, f, "queue_length"),
            xon_level=_plain_int(raw, f, "xon_level"),
            xoff_level=_plain_int(raw, f, "xoff_level"),
            queue_full=_plain_bool(raw, f, "queue_full"),
            bulk_media=_plain_bool(raw, f, "bulk_media"),
            media_paused=_plain_bool(raw, f, "media_paused"),
        )
    return UnknownEvent(name, raw)


def _json_str(raw: str, obj: Mapping[str, object], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise _error(raw, f"{key} must be a string, got {value!r}")
    return value


def _json_opt_str(raw: str, obj: Mapping[str, object], key: str) -> str | None:
    return _json_str(raw, obj, key) if obj.get(key) is not None else None


def _json_int(raw: str, obj: Mapping[str, object], key: str) -> int:
    value = obj.get(key)
    if type(value) is not int:
        raise _error(raw, f"{key} must be an integer, got {value!r}")
    return value


def _json_bool(raw: str, obj: Mapping[str, object], key: str) -> bool:
    value = obj.get(key)
    if not isinstance(value, bool):
        raise _error(raw, f"{key} must be true or false, got {value!r}")
    return value


def _parse_json(raw: str, obj: Mapping[str, object]) -> Event:
    if "event" not in obj:
        raise _error(raw, "JSON event has no 'event' member")
    name = _json_str(raw, obj, "event")
    channel_id = _json_opt_str(raw, obj, "channel_id")
    if name == MediaXoff.NAME:
        return MediaXoff(channel_id)
    if name == MediaXon.NAME:
        return MediaXon(channel_id)
    if name == QueueDrained.NAME:
        return QueueDrained(channel_id)
    if name == MediaMarkProcessed.NAME:
        return MediaMarkProcessed(_json_opt_str(raw, obj, "correlation_id") or None, channel_id)
    if name == MediaBufferingCompleted.NAME:
        return MediaBufferingCompleted(_json_opt_str(raw, obj, "correlation_id") or None, channel_id)
    if name == DtmfEnd.NAME:
        return DtmfEnd(_json_str(raw, obj, "digit"), _json_str(raw, obj, "channel_id"))
    if name == AsteriskError.NAME:
        return AsteriskError(_json_str(raw, obj, "error_text"), _json_str(raw, obj, "channel_id"))
    if name == Status.NAME:
        return Status(
            channel_id=_json_str(raw, obj, "channel_id"),
            queue_length=_json_int(raw, obj, "queue_length"),
            xon_level=_json_int(raw, obj, "xon_level"),
            xoff_level=_json_int(raw, obj, "xoff_level"),
            queue_full=_json_bool(raw, obj, "queue_full"),
            bulk_media=_json_bool(raw, obj, "bulk_media"),
            media_paused=_json_bool(raw, obj, "media_paused"),
        )
    if name == MediaStart.NAME:
        variables = obj.get("channel_variables", {})
        if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
            raise _error(raw, "channel_variables must be an object of strings")
        known = (
            "event",
            "connection_id",
            "channel",
            "channel_id",
            "format",
            "optimal_frame_size",
            "ptime",
            "channel_variables",
        )
        return MediaStart(
            connection_id=_json_str(raw, obj, "connection_id"),
            channel=_json_str(raw, obj, "channel"),
            channel_id=_json_str(raw, obj, "channel_id"),
            format=_json_str(raw, obj, "format"),
            optimal_frame_size=_json_int(raw, obj, "optimal_frame_size"),
            ptime=_json_int(raw, obj, "ptime"),
            channel_variables=dict(variables),
            extra={k: v for k, v in obj.items() if k not in known},
        )
    return UnknownEvent(name, raw)


# --- the Asterisk side: the outbound frame queue --------------------------------------------------


@dataclass(frozen=True)
class _ControlFrame:
    """An AST_CONTROL_OPTION frame holding an event to send when it reaches the head (CW L651-676)."""

    event: Event


class MediaQueue:
    """chan_websocket's queue of audio from the app, and the commands that act on it.

    ``write(message)`` for each BINARY message, ``command(parse_command(text, fmt))`` for each TEXT
    message, ``tick()`` every ptime (the channel timer). Each returns the events Asterisk sends at
    that moment, in order; ``tick`` also returns the frame the channel plays (None: nothing).
    """

    def __init__(
        self,
        format_name: str = "slin",
        *,
        channel_id: str = "",
        passthrough: bool = False,
        media_direction: MediaDirection = "both",
    ) -> None:
        codec = _codec(format_name)
        if media_direction not in _DIRECTIONS:
            raise ValueError(f"not a media direction: {media_direction!r}")
        self.format_name = format_name
        self.channel_id = channel_id
        self.frame_size = codec.optimal_frame_size  # reported in MEDIA_START even with p (CW L1410)
        self.ptime = codec.default_ms
        self.passthrough = passthrough or codec.passthrough  # CW L1406-1408, L1632-1634
        self.media_direction: MediaDirection = media_direction
        self.queue_full = False
        self.bulk_media = False
        self.paused = False
        self.report_queue_drained = False
        self._frames: deque[bytes | _ControlFrame] = deque()
        self._length = 0
        self._leftover = bytearray()
        self.frames_played = 0
        #: Whole frames' worth of audio Asterisk ignored: queue full or media direction ``in``.
        self.frames_dropped = 0
        #: Every byte of our audio that will never play, except what FLUSH_MEDIA removed.
        self.bytes_dropped = 0
        self.frames_flushed = 0

    @property
    def length(self) -> int:
        """Audio frames queued (``frame_queue_length``; marks are not counted)."""
        return self._length

    @property
    def pending_marks(self) -> int:
        return sum(isinstance(f, _ControlFrame) for f in self._frames)

    @property
    def leftover(self) -> bytes:
        """The partial frame kept while media buffering is on."""
        return bytes(self._leftover)

    @property
    def timer_running(self) -> bool:
        """False while the app's media direction is ``in``: ``tick()`` does nothing then."""
        return self.media_direction != "in"

    def status(self) -> Status:
        return Status(
            channel_id=self.channel_id,
            queue_length=self._length,
            xon_level=XON_FRAMES,
            xoff_level=XOFF_FRAMES,
            queue_full=self.queue_full,
            bulk_media=self.bulk_media,
            media_paused=self.paused,
        )

    def _drop(self, message: bytes) -> None:
        if self.passthrough:
            self.frames_dropped += 1
        else:
            self.frames_dropped += len(message) // self.frame_size
        self.bytes_dropped += len(message)

    def _queue_voice(self, frame: bytes, events: list[Event]) -> None:
        """queue_frame_from_buffer, CW L616-649."""
        self._frames.append(frame)
        self._length += 1
        if not self.queue_full and self._length >= XOFF_FRAMES:
            self.queue_full = True
            events.append(MediaXoff(self.channel_id))

    def write(self, message: bytes) -> list[Event]:
        """One BINARY message from the app (CW L1117-1131, L944-1067)."""
        message = bytes(message)
        if self.media_direction == "in" or self._length >= MAX_QUEUE_FRAMES:
            self._drop(message)
            return []
        events: list[Event] = []
        if self.passthrough:
            self._queue_voice(message, events)
            return events
        size = self.frame_size
        data = memoryview(message)
        if self.bulk_media and self._leftover:
            needed = size - len(self._leftover)
            take = min(needed, len(data))
            self._leftover += data[:take]
            if take < needed:
                return events
            self._queue_voice(bytes(self._leftover), events)
            self._leftover.clear()
            data = data[take:]
        if not self.bulk_media:
            self._leftover.clear()
        whole = len(data) - len(data) % size
        for start in range(0, whole, size):
            self._queue_voice(bytes(data[start : start + size]), events)
        rest = data[whole:]
        if rest:
            if self.bulk_media:
                self._leftover[:] = rest
            else:
                self.bytes_dropped += len(rest)
        return events

    def _refuse(self, name: str, *, passthrough: bool = True, direction: bool = True) -> list[Event] | None:
        """ERROR_ON_PASSTHROUGH_MODE_RTN / ERROR_ON_INVALID_MEDIA_DIRECTION_RTN, CW L678-697."""
        if passthrough and self.passthrough:
            return [AsteriskError(f"{name} not supported in passthrough mode", self.channel_id)]
        if direction and self.media_direction == "in":
            return [AsteriskError(f"{name} not supported while media direction is 'in'", self.channel_id)]
        return None

    def command(self, cmd: Command | IgnoredCommand) -> list[Event]:
        """A parsed TEXT message (CW L708-909). ANSWER and HANGUP are the caller's (call control)."""
        if isinstance(cmd, IgnoredCommand):
            if cmd.command == SetMediaDirection.NAME and self.passthrough:
                return [AsteriskError(f"{cmd.command} not supported in passthrough mode", self.channel_id)]
            return [] if cmd.error_text is None else [AsteriskError(cmd.error_text, self.channel_id)]
        if isinstance(cmd, Answer | Hangup):
            return []
        if isinstance(cmd, GetStatus):
            return [self.status()]
        if isinstance(cmd, FlushMedia | ReportQueueDrained | SetMediaDirection):
            refused = self._refuse(cmd.NAME, direction=False)
        else:
            refused = self._refuse(cmd.NAME)
        if refused is not None:
            return refused
        events: list[Event] = []
        if isinstance(cmd, StartMediaBuffering):
            self.bulk_media = True
        elif isinstance(cmd, StopMediaBuffering):
            self.bulk_media = False
            if self._leftover:
                self._queue_voice(bytes(self._leftover), events)  # a short frame
            self._leftover.clear()
            self._frames.append(_ControlFrame(MediaBufferingCompleted(cmd.correlation_id, self.channel_id)))
        elif isinstance(cmd, MarkMedia):
            self._frames.append(_ControlFrame(MediaMarkProcessed(cmd.correlation_id, self.channel_id)))
        elif isinstance(cmd, FlushMedia):
            self.frames_flushed += self._length
            self._frames.clear()
            self._length = 0
            self.bulk_media = False
            self._leftover.clear()
        elif isinstance(cmd, ReportQueueDrained):
            self.report_queue_drained = True
        elif isinstance(cmd, PauseMedia):
            self.paused = True
        elif isinstance(cmd, ContinueMedia):
            self.paused = False
        else:
            self.media_direction = cmd.direction
        return events

    def tick(self) -> tuple[bytes | None, list[Event]]:
        """One firing of the channel timer: dequeue_frame, CW L465-563."""
        if not self.timer_running or self.paused:
            return None, []
        events: list[Event] = []
        if self.queue_full and self._length < XON_FRAMES:
            self.queue_full = False
            events.append(MediaXon(self.channel_id))
        if not self._frames:
            if self.report_queue_drained:
                self.report_queue_drained = False
                events.append(QueueDrained(self.channel_id))
            return None, events
        while self._frames and isinstance(self._frames[0], _ControlFrame):
            head = self._frames.popleft()
            assert isinstance(head, _ControlFrame)
            events.append(head.event)
        if not self._frames:
            return None, events
        frame = self._frames.popleft()
        assert isinstance(frame, bytes)
        self._length -= 1
        self.frames_played += 1
        return frame, events

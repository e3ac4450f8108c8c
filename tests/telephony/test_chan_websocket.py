"""chan_websocket sans-IO: byte-for-byte against chan_websocket.c (23.4.1) and text captured from it.

"CW L<n>" is a line of /work/shared/asterisk/source/chan_websocket.c. Strings marked "captured" were
received verbatim from a running Asterisk 23.4.1 (Local channel -> Dial(WebSocket/conn1/c(slin)...)).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mikrovoice.telephony.chan_websocket import (
    CODECS,
    JSON,
    MAX_FRAME_BYTES,
    MAX_MASKED_MESSAGE_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_QUEUE_FRAMES,
    MAX_TEXT_BYTES,
    PLAIN_TEXT,
    SUBPROTOCOL,
    XOFF_FRAMES,
    XON_FRAMES,
    Answer,
    AsteriskError,
    ChanWebsocketProtocolError,
    Command,
    ContinueMedia,
    DtmfEnd,
    Event,
    FlushMedia,
    Format,
    GetStatus,
    Hangup,
    IgnoredCommand,
    MarkMedia,
    MediaBufferingCompleted,
    MediaMarkProcessed,
    MediaQueue,
    MediaStart,
    MediaXoff,
    MediaXon,
    PauseMedia,
    QueueDrained,
    ReportQueueDrained,
    SetMediaDirection,
    StartMediaBuffering,
    Status,
    StopMediaBuffering,
    UnknownEvent,
    encode_command,
    encode_event,
    optimal_frame_size,
    outbound_request_target,
    parse_command,
    parse_event,
    ptime,
    request_params,
)

P = "1795669182.2"  # channel_id of the captured plain-text call
J = "1795669223.8"  # channel_id of the captured JSON call
FRAME = 320  # slin


def status(cid: str, length: int, full: bool = False, bulk: bool = False, paused: bool = False) -> Status:
    return Status(cid, length, XON_FRAMES, XOFF_FRAMES, full, bulk, paused)


# --- events: exact text, both formats -------------------------------------------------------------

CAPTURED_PLAIN: list[tuple[str, Event]] = [
    (  # CW L248-256
        f"MEDIA_START connection_id:conn1 channel:WebSocket/conn1/0x7efe2c006590 channel_id:{P} format:slin"
        " optimal_frame_size:320 ptime:20",
        MediaStart("conn1", "WebSocket/conn1/0x7efe2c006590", P, "slin", 320, 20),
    ),
    (  # CW L376-384
        f"STATUS channel_id:{P} queue_length:0 xon_level:800 xoff_level:900 queue_full:false bulk_media:false"
        " media_paused:false",
        status(P, 0),
    ),
    (
        f"STATUS channel_id:{P} queue_length:1000 xon_level:800 xoff_level:900 queue_full:true bulk_media:false"
        " media_paused:false",
        status(P, 1000, full=True),
    ),
    (
        f"STATUS channel_id:{P} queue_length:1 xon_level:800 xoff_level:900 queue_full:false bulk_media:true"
        " media_paused:false",
        status(P, 1, bulk=True),
    ),
    (  # CW L422-423 with the "\n" of CW L849
        f"ERROR channel_id:{P} error_text:SET_MEDIA_DIRECTION only supports JSON format.\n",
        AsteriskError("SET_MEDIA_DIRECTION only supports JSON format.\n", P),
    ),
    (f"DTMF_END digit:7 channel_id:{P}", DtmfEnd("7", P)),  # CW L343: digit first
    ("MEDIA_MARK_PROCESSED m1", MediaMarkProcessed("m1")),  # CW L313-315
    ("MEDIA_MARK_PROCESSED  sp", MediaMarkProcessed(" sp")),  # from "MARK_MEDIA  sp": split at 1st space
    ("MEDIA_MARK_PROCESSED a b", MediaMarkProcessed("a b")),
    ("MEDIA_BUFFERING_COMPLETED b1", MediaBufferingCompleted("b1")),  # CW L283-285
    ("QUEUE_DRAINED", QueueDrained()),  # CW L211, L217-219
    ("MEDIA_XOFF", MediaXoff()),
    ("MEDIA_XON", MediaXon()),
]

CAPTURED_JSON: list[tuple[str, Event]] = [
    (  # CW L231-241, channel_variables as ast_json_channel_vars lists them
        '{"event":"MEDIA_START","connection_id":"conn1","channel":"WebSocket/conn1/0x7efe0c0050c0",'
        f'"channel_id":"{J}","format":"slin","optimal_frame_size":320,"ptime":20,"channel_variables":'
        '{"DIALEDPEERNUMBER":"conn1/c(slin)f(json)","MEDIA_WEBSOCKET_CONNECTION_ID":"conn1",'
        '"MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE":"320","__INHERITED":"a\\"b"}}',
        MediaStart(
            "conn1",
            "WebSocket/conn1/0x7efe0c0050c0",
            J,
            "slin",
            320,
            20,
            {
                "DIALEDPEERNUMBER": "conn1/c(slin)f(json)",
                "MEDIA_WEBSOCKET_CONNECTION_ID": "conn1",
                "MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE": "320",
                "__INHERITED": 'a"b',
            },
        ),
    ),
    (  # CW L360-369
        f'{{"event":"STATUS","channel_id":"{J}","queue_length":120,"xon_level":800,"xoff_level":900,'
        '"queue_full":false,"bulk_media":false,"media_paused":false}',
        status(J, 120),
    ),
    (
        f'{{"event":"STATUS","channel_id":"{J}","queue_length":0,"xon_level":800,"xoff_level":900,'
        '"queue_full":true,"bulk_media":false,"media_paused":false}',
        status(J, 0, full=True),
    ),
    (  # CW L411-414, L720
        f'{{"event":"ERROR","channel_id":"{J}","error_text":"Unable to parse JSON command"}}',
        AsteriskError("Unable to parse JSON command", J),
    ),
    (  # CW L855
        f'{{"event":"ERROR","channel_id":"{J}","error_text":"SET_MEDIA_DIRECTION requires a \'direction\' parameter.\\n"}}',
        AsteriskError("SET_MEDIA_DIRECTION requires a 'direction' parameter.\n", J),
    ),
    (  # CW L898
        f'{{"event":"ERROR","channel_id":"{J}","error_text":"\'sideways\' is not a valid direction for SET_MEDIA_DIRECTION.\\n"}}',
        AsteriskError("'sideways' is not a valid direction for SET_MEDIA_DIRECTION.\n", J),
    ),
    (f'{{"event":"DTMF_END","channel_id":"{J}","digit":"7"}}', DtmfEnd("7", J)),  # CW L332-336
    (  # CW L302-306
        f'{{"event":"MEDIA_MARK_PROCESSED","channel_id":"{J}","correlation_id":"m1"}}',
        MediaMarkProcessed("m1", J),
    ),
    (  # S_OR(id, ""): no id -> "" (CW L305)
        f'{{"event":"MEDIA_MARK_PROCESSED","channel_id":"{J}","correlation_id":""}}',
        MediaMarkProcessed(None, J),
    ),
    (  # jansson: \u%04X upper case, UTF-8 and "/" and DEL unescaped
        '{"event":"MEDIA_MARK_PROCESSED","channel_id":"1795669242.11","correlation_id":"\\u001F\u00e9/\x7f"}',
        MediaMarkProcessed("\x1f\u00e9/\x7f", "1795669242.11"),
    ),
    (
        f'{{"event":"MEDIA_MARK_PROCESSED","channel_id":"{J}","correlation_id":"a\\u0001b c"}}',
        MediaMarkProcessed("a\x01b c", J),
    ),
    (  # CW L272-276
        f'{{"event":"MEDIA_BUFFERING_COMPLETED","channel_id":"{J}","correlation_id":"b1"}}',
        MediaBufferingCompleted("b1", J),
    ),
    (f'{{"event":"QUEUE_DRAINED","channel_id":"{J}"}}', QueueDrained(J)),  # CW L202-204
    (f'{{"event":"MEDIA_XOFF","channel_id":"{J}"}}', MediaXoff(J)),
    (f'{{"event":"MEDIA_XON","channel_id":"{J}"}}', MediaXon(J)),
]


@pytest.mark.parametrize(("text", "event"), CAPTURED_PLAIN)
def test_captured_plain_text_events(text: str, event: Event) -> None:
    assert parse_event(text) == event
    assert encode_event(event, PLAIN_TEXT) == text


@pytest.mark.parametrize(("text", "event"), CAPTURED_JSON)
def test_captured_json_events(text: str, event: Event) -> None:
    assert parse_event(text) == event
    assert encode_event(event, JSON) == text


def test_media_start_plain_text_has_no_channel_variables() -> None:
    event = CAPTURED_JSON[0][1]
    assert encode_event(event, PLAIN_TEXT) == (
        f"MEDIA_START connection_id:conn1 channel:WebSocket/conn1/0x7efe0c0050c0 channel_id:{J} format:slin"
        " optimal_frame_size:320 ptime:20"
    )


def test_event_encodings_from_the_source() -> None:
    # CW L283-285: S_COR(id, " ", "") adds the space for any non-NULL id, even "".
    assert encode_event(MediaMarkProcessed(""), PLAIN_TEXT) == "MEDIA_MARK_PROCESSED "
    assert encode_event(MediaMarkProcessed(None), PLAIN_TEXT) == "MEDIA_MARK_PROCESSED"
    assert encode_event(MediaBufferingCompleted(None, "c"), JSON) == (
        '{"event":"MEDIA_BUFFERING_COMPLETED","channel_id":"c","correlation_id":""}'
    )
    # CW L681, L691-692: passthrough / direction refusals.
    assert encode_event(AsteriskError("MARK_MEDIA not supported in passthrough mode", "c"), PLAIN_TEXT) == (
        "ERROR channel_id:c error_text:MARK_MEDIA not supported in passthrough mode"
    )
    assert encode_event(status("c", 3, paused=True), PLAIN_TEXT).endswith(
        "queue_full:false bulk_media:false media_paused:true"
    )


def test_encode_event_refuses_what_asterisk_cannot_send() -> None:
    with pytest.raises(ValueError):
        encode_event(MediaXoff(), JSON)  # JSON events always carry channel_id
    with pytest.raises(ValueError):
        encode_event(DtmfEnd("12", "c"), PLAIN_TEXT)  # one char, "%c" (CW L343)
    with pytest.raises(ValueError):
        encode_event(MediaMarkProcessed("a\x00b", "c"), JSON)
    with pytest.raises(ValueError):
        encode_event(MediaXon("c"), "xml")  # type: ignore[arg-type]


def test_unknown_events_are_forward_compatible() -> None:
    assert parse_event("MEDIA_FOO bar:1") == UnknownEvent("MEDIA_FOO", "MEDIA_FOO bar:1")
    raw = '{"event":"MEDIA_FOO","channel_id":"c","x":[1]}'
    assert parse_event(raw) == UnknownEvent("MEDIA_FOO", raw)
    assert encode_event(UnknownEvent("MEDIA_FOO", raw), PLAIN_TEXT) == raw
    start = parse_event(
        "MEDIA_START connection_id:a channel:b channel_id:c format:ulaw optimal_frame_size:160 ptime:20 x:y z"
    )
    assert isinstance(start, MediaStart) and start.extra == {"x": "y z"}
    start = parse_event(
        '{"event":"MEDIA_START","connection_id":"a","channel":"b","channel_id":"c","format":"ulaw",'
        '"optimal_frame_size":160,"ptime":20,"channel_variables":{},"new":{"k":1}}'
    )
    assert isinstance(start, MediaStart) and start.extra == {"new": {"k": 1}}
    # Known events ignore members they do not know; DTMF digits are the caller's to validate.
    assert parse_event('{"event":"MEDIA_XON","channel_id":"c","later":true}') == MediaXon("c")
    assert parse_event("DTMF_END digit:X channel_id:c") == DtmfEnd("X", "c")
    assert parse_event("DTMF_END digit:  channel_id:c") == DtmfEnd(" ", "c")
    assert parse_event("ERROR channel_id:c error_text:a: b error_text:c") == AsteriskError(
        "a: b error_text:c", "c"
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "[]",
        "42",
        '"MEDIA_XON"',
        "null",
        "hello",
        "media_xon",
        "MEDIA_XON\n",  # Asterisk never sends a newline after a name
        "{}",
        '{"channel_id":"c"}',
        '{"event":5}',
        '{"event":null}',
        '{"event":"MEDIA_XON","channel_id":5}',
        '{"event":"DTMF_END","channel_id":"c"}',
        '{"event":"MEDIA_START","connection_id":"a","channel":"b","channel_id":"c","format":"slin",'
        '"optimal_frame_size":"320","ptime":20}',
        '{"event":"MEDIA_START","connection_id":"a","channel":"b","channel_id":"c","format":"slin",'
        '"optimal_frame_size":true,"ptime":20}',
        '{"event":"MEDIA_START","connection_id":"a","channel":"b","channel_id":"c","format":"slin",'
        '"optimal_frame_size":320,"ptime":20,"channel_variables":{"A":1}}',
        '{"event":"STATUS","channel_id":"c","queue_length":0,"xon_level":800,"xoff_level":900,'
        '"queue_full":0,"bulk_media":false,"media_paused":false}',
        "MEDIA_START connection_id:a",
        "MEDIA_START connection_id:a channel:b channel_id:c format:slin optimal_frame_size:x ptime:20",
        "MEDIA_START connection_id:a channel:b channel_id:c format:slin optimal_frame_size:\u0663 ptime:20",
        "MEDIA_START oops",
        "STATUS channel_id:c queue_length:0 xon_level:800 xoff_level:900 queue_full:yes bulk_media:false media_paused:false",
        "DTMF_END 7",
        "DTMF_END digit:7",
        "ERROR oops",
        "ERROR channel_id:c",
        "[" * 100_000,
    ],
)
def test_malformed_events_raise_protocol_error(text: str) -> None:
    with pytest.raises(ChanWebsocketProtocolError):
        parse_event(text)


@given(st.text(max_size=300))
def test_parse_event_raises_nothing_but_protocol_errors(text: str) -> None:
    try:
        parse_event(text)
    except ChanWebsocketProtocolError:
        pass


@given(
    st.sampled_from([t for t, _ in CAPTURED_PLAIN + CAPTURED_JSON]),
    st.integers(0, 400),
    st.integers(0, 40),
    st.text(max_size=20),
)
def test_mutated_captured_events_raise_nothing_but_protocol_errors(
    text: str, at: int, cut: int, insert: str
) -> None:
    at = min(at, len(text))
    try:
        parse_event(text[:at] + insert + text[at + cut :])
    except ChanWebsocketProtocolError:
        pass


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_event_names = st.sampled_from(
    [
        "MEDIA_START",
        "DTMF_END",
        "STATUS",
        "ERROR",
        "MEDIA_XON",
        "MEDIA_MARK_PROCESSED",
        "MEDIA_BUFFERING_COMPLETED",
    ]
)


@given(
    _event_names,
    st.dictionaries(
        st.sampled_from(
            ["channel_id", "digit", "queue_length", "error_text", "correlation_id", "format", "ptime"]
        ),
        _json_values,
    ),
)
def test_parse_event_on_arbitrary_json_members(name: str, members: dict[str, object]) -> None:
    try:
        parse_event(json.dumps({"event": name, **members}))
    except ChanWebsocketProtocolError:
        pass


_ids = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
_events = st.one_of(
    st.builds(
        MediaStart,
        _ids,
        _ids,
        _ids,
        _ids,
        st.integers(0, 10**6),
        st.integers(0, 1000),
        st.dictionaries(_ids, _ids, max_size=3),
    ),
    st.builds(DtmfEnd, st.sampled_from("0123456789*#ABCD"), _ids),
    st.builds(MediaXoff, _ids),
    st.builds(MediaXon, _ids),
    st.builds(QueueDrained, _ids),
    st.builds(MediaMarkProcessed, st.none() | _ids.filter(bool), _ids),
    st.builds(MediaBufferingCompleted, st.none() | _ids.filter(bool), _ids),
    st.builds(
        Status,
        _ids,
        st.integers(0, 2000),
        st.just(800),
        st.just(900),
        st.booleans(),
        st.booleans(),
        st.booleans(),
    ),
    st.builds(AsteriskError, _ids, _ids),
)


@given(_events)
def test_json_events_round_trip(event: Event) -> None:
    assert parse_event(encode_event(event, JSON)) == event


_tokens = st.text(
    st.characters(codec="utf-8", exclude_categories=["Zs", "Zl", "Zp", "Cc"]), min_size=1, max_size=12
)
_plain_events = st.one_of(  # plain text carries channel_id only in MEDIA_START, DTMF_END, STATUS, ERROR
    st.builds(MediaStart, _tokens, _tokens, _tokens, _tokens, st.integers(0, 10**6), st.integers(0, 1000)),
    st.builds(DtmfEnd, st.characters(codec="utf-8", exclude_characters="\x00"), _tokens),
    st.builds(MediaXoff),
    st.builds(MediaXon),
    st.builds(QueueDrained),
    st.builds(MediaMarkProcessed, st.none() | _ids.filter(bool)),  # free text, spaces included
    st.builds(MediaBufferingCompleted, st.none() | _ids.filter(bool)),
    st.builds(
        Status,
        _tokens,
        st.integers(0, 2000),
        st.just(800),
        st.just(900),
        st.booleans(),
        st.booleans(),
        st.booleans(),
    ),
    st.builds(AsteriskError, _ids, _tokens),  # free text, newlines included
)


@given(_plain_events)
def test_plain_events_round_trip(event: Event) -> None:
    assert parse_event(encode_event(event, PLAIN_TEXT)) == event


# --- commands -------------------------------------------------------------------------------------

COMMANDS: list[tuple[Command, str, str]] = [  # names: CW L129-139
    (Answer(), "ANSWER", '{"command":"ANSWER"}'),
    (Hangup(), "HANGUP", '{"command":"HANGUP"}'),
    (StartMediaBuffering(), "START_MEDIA_BUFFERING", '{"command":"START_MEDIA_BUFFERING"}'),
    (StopMediaBuffering(), "STOP_MEDIA_BUFFERING", '{"command":"STOP_MEDIA_BUFFERING"}'),
    (
        StopMediaBuffering("b1"),
        "STOP_MEDIA_BUFFERING b1",
        '{"command":"STOP_MEDIA_BUFFERING","correlation_id":"b1"}',
    ),
    (MarkMedia(), "MARK_MEDIA", '{"command":"MARK_MEDIA"}'),
    (MarkMedia("m1"), "MARK_MEDIA m1", '{"command":"MARK_MEDIA","correlation_id":"m1"}'),
    (FlushMedia(), "FLUSH_MEDIA", '{"command":"FLUSH_MEDIA"}'),
    (GetStatus(), "GET_STATUS", '{"command":"GET_STATUS"}'),
    (ReportQueueDrained(), "REPORT_QUEUE_DRAINED", '{"command":"REPORT_QUEUE_DRAINED"}'),
    (PauseMedia(), "PAUSE_MEDIA", '{"command":"PAUSE_MEDIA"}'),
    (ContinueMedia(), "CONTINUE_MEDIA", '{"command":"CONTINUE_MEDIA"}'),
]


@pytest.mark.parametrize(("cmd", "plain", "js"), COMMANDS)
def test_command_encodings_and_round_trips(cmd: Command, plain: str, js: str) -> None:
    assert encode_command(cmd, PLAIN_TEXT) == plain
    assert encode_command(cmd, JSON) == js
    assert parse_command(plain, PLAIN_TEXT) == cmd
    assert parse_command(js, JSON) == cmd


def test_set_media_direction_is_json_only() -> None:
    text = encode_command(SetMediaDirection("in"), JSON)
    assert text == '{"command":"SET_MEDIA_DIRECTION","direction":"in"}'
    assert parse_command(text, JSON) == SetMediaDirection("in")
    with pytest.raises(ValueError):
        encode_command(SetMediaDirection("in"), PLAIN_TEXT)


def test_encode_command_refuses_what_asterisk_would_not_read_as_meant() -> None:
    assert len(encode_command(MarkMedia("x" * 117), PLAIN_TEXT)) == MAX_TEXT_BYTES  # 128 is accepted
    with pytest.raises(ValueError):
        encode_command(MarkMedia("x" * 118), PLAIN_TEXT)  # CW L922: > 128
    with pytest.raises(ValueError):
        encode_command(MarkMedia("\u00e9" * 59), PLAIN_TEXT)  # 70 characters, 129 bytes
    for bad in ("a b", "a\tb", " a", "a\n", "a\x00"):
        with pytest.raises(ValueError):
            encode_command(MarkMedia(bad), PLAIN_TEXT)
    assert encode_command(MarkMedia("a b"), JSON) == '{"command":"MARK_MEDIA","correlation_id":"a b"}'
    assert encode_command(MarkMedia(""), PLAIN_TEXT) == "MARK_MEDIA"  # "" is no id (CW L285)
    with pytest.raises(ValueError):
        encode_command(MarkMedia("a\x00"), JSON)  # jansson refuses \u0000
    with pytest.raises(ValueError):
        encode_command(Answer(), "JSON")  # type: ignore[arg-type]


PARSE_ERROR = "Unable to parse JSON command"


@pytest.mark.parametrize(
    ("text", "fmt", "expected"),
    [
        # What the captured calls sent and what Asterisk did with it.
        ("GET_STATUS  ", PLAIN_TEXT, GetStatus()),  # ast_strip, CW L936
        (" \t\r\nHANGUP\r\n", PLAIN_TEXT, Hangup()),
        ("ANSWER now", PLAIN_TEXT, Answer()),  # argument ignored
        ("MARK_MEDIA  sp", PLAIN_TEXT, MarkMedia(" sp")),  # split at the first space, CW L726
        ("MARK_MEDIA a b", PLAIN_TEXT, MarkMedia("a b")),
        ("MARK_MEDIA m1\x00junk", PLAIN_TEXT, MarkMedia("m1")),  # C string ends at NUL
        (
            "answer",
            PLAIN_TEXT,
            IgnoredCommand("WebSocket answer command unknown", command="answer"),
        ),  # CW L904
        ("", PLAIN_TEXT, IgnoredCommand("WebSocket TEXT message has 0 length")),  # CW L917
        (
            "X" * 129,
            PLAIN_TEXT,
            IgnoredCommand("WebSocket TEXT message of length 129 exceeds maximum length of 128"),
        ),
        (
            "X" * 129,
            JSON,
            IgnoredCommand("WebSocket TEXT message of length 129 exceeds maximum length of 128"),
        ),
        (
            "SET_MEDIA_DIRECTION in",
            PLAIN_TEXT,
            IgnoredCommand(
                "SET_MEDIA_DIRECTION in plain-text format",
                "SET_MEDIA_DIRECTION only supports JSON format.\n",  # CW L849
                "SET_MEDIA_DIRECTION",
            ),
        ),
        ('{"command":"MARK_MEDIA"}', JSON, MarkMedia(None)),
        ('{"command":"MARK_MEDIA","correlation_id":""}', JSON, MarkMedia("")),
        ('{"command":"MARK_MEDIA","correlation_id":5}', JSON, MarkMedia(None)),  # not a string: NULL
        (
            '{"command":"MARK_MEDIA","correlation_id":"x","command":"GET_STATUS"}',
            JSON,
            GetStatus(),
        ),  # last wins
        ('  {"command":"HANGUP"}\n', JSON, Hangup()),
        ('{"command":"bogus"}', JSON, IgnoredCommand("WebSocket bogus command unknown", command="bogus")),
        ("[1]", JSON, IgnoredCommand("WebSocket (null) command unknown")),  # jansson loads arrays too
        ('{"command":1}', JSON, IgnoredCommand("WebSocket (null) command unknown")),
        (
            '{"command":"SET_MEDIA_DIRECTION"}',
            JSON,
            IgnoredCommand(
                "SET_MEDIA_DIRECTION without direction",
                "SET_MEDIA_DIRECTION requires a 'direction' parameter.\n",  # CW L855
                "SET_MEDIA_DIRECTION",
            ),
        ),
        (
            '{"command":"SET_MEDIA_DIRECTION","direction":"sideways"}',
            JSON,
            IgnoredCommand(
                "SET_MEDIA_DIRECTION to 'sideways'",
                "'sideways' is not a valid direction for SET_MEDIA_DIRECTION.\n",  # CW L898
                "SET_MEDIA_DIRECTION",
            ),
        ),
    ],
)
def test_parse_command_follows_asterisk(text: str, fmt: Format, expected: Command | IgnoredCommand) -> None:
    assert parse_command(text, fmt) == expected


@pytest.mark.parametrize(
    "text",
    [  # each answered with ERROR "Unable to parse JSON command" by the captured call (CW L718-721)
        "answer",
        "ANSWER",
        "GET_STATUS  ",
        "{",
        "   ",
        '"GET_STATUS"',  # no JSON_DECODE_ANY: the top level must be an object or an array
        '{"command":"GET_STATUS","n":1e400}',
        '{"command":"GET_STATUS","n":NaN}',
        '{"command":"GET_STATUS","n":"\\ud800"}',
        '{"command":"GET_STATUS","n":"\\u0000"}',
        '{"command":"GET_STATUS","n":99999999999999999999}',
    ],
)
def test_unparsable_json_commands_get_an_error_event(text: str) -> None:
    result = parse_command(text, JSON)
    assert isinstance(result, IgnoredCommand) and result.error_text == PARSE_ERROR


@given(st.text(max_size=200), st.sampled_from([PLAIN_TEXT, JSON]))
def test_parse_command_never_raises(text: str, fmt: Format) -> None:
    parse_command(text, fmt)


_plain_ids = st.text(
    st.characters(codec="utf-8", exclude_categories=["Zs", "Zl", "Zp", "Cc"]), min_size=1, max_size=40
)
_json_ids = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=30)


@given(st.one_of(st.builds(MarkMedia, _plain_ids), st.builds(StopMediaBuffering, _plain_ids)))
def test_plain_command_round_trip(cmd: Command) -> None:
    try:
        text = encode_command(cmd, PLAIN_TEXT)
    except ValueError:
        return  # too long, or whitespace outside the excluded categories
    assert parse_command(text, PLAIN_TEXT) == cmd


@given(st.one_of(st.builds(MarkMedia, _json_ids), st.builds(StopMediaBuffering, _json_ids)))
def test_json_command_round_trip(cmd: Command) -> None:
    try:
        text = encode_command(cmd, JSON)
    except ValueError:
        return  # too long
    assert parse_command(text, JSON) == cmd


# --- helpers and constants ------------------------------------------------------------------------


def test_constants() -> None:
    assert (MAX_TEXT_BYTES, MAX_QUEUE_FRAMES, XOFF_FRAMES, XON_FRAMES) == (128, 1000, 900, 800)  # CW L141-144
    assert MAX_FRAME_BYTES == 65535  # http_websocket.h L105
    assert (MAX_MESSAGE_BYTES, MAX_MASKED_MESSAGE_BYTES) == (
        65531,
        65527,
    )  # 65532 closed with 1009 (captured)
    assert SUBPROTOCOL == "media"


def test_optimal_frame_sizes() -> None:  # CW L1406-1417 with main/codec_builtin.c
    sizes = {
        name: optimal_frame_size(name)
        for name in ("ulaw", "alaw", "slin", "slin16", "slin24", "slin48", "g722")
    }
    assert sizes == {
        "ulaw": 160,
        "alaw": 160,
        "slin": 320,
        "slin16": 640,
        "slin24": 960,
        "slin48": 1920,
        "g722": 160,
    }
    assert optimal_frame_size("opus") == 0 and CODECS["opus"].passthrough  # forced passthrough
    assert (optimal_frame_size("g723"), ptime("g723"), ptime("slin")) == (20, 30, 20)
    with pytest.raises(ValueError):
        optimal_frame_size("mp3")


def test_outbound_request_target() -> None:
    # Captured: uri = ws://127.0.0.1:18765/some/path, Dial(WebSocket/conn1/c(slin)v(call=${UNIQUEID},k=v))
    target = outbound_request_target("ws://127.0.0.1:18765/some/path", "call=1795669182.1,k=v")
    assert target == "/some/path?call=1795669182.1&k=v"
    assert request_params(target) == {"call": "1795669182.1", "k": "v"}
    assert outbound_request_target("ws://h:1/some/path") == "/some/path"  # nothing appended
    assert outbound_request_target("ws://h:1/p?a=1", "b=2") == "/p?a=1&b=2"
    assert outbound_request_target("ws://h:1") == "/"
    assert request_params("/p?x=a%20b&y=") == {"x": "a b", "y": ""}


# --- the queue ------------------------------------------------------------------------------------


def frames(n: int, size: int = FRAME) -> bytes:
    return bytes(range(256)) * (n * size // 256) + bytes(n * size % 256)


def run(q: MediaQueue, ticks: int) -> list[tuple[bytes | None, list[Event]]]:
    return [q.tick() for _ in range(ticks)]


def test_messages_are_cut_into_frames_and_the_remainder_dropped() -> None:
    q = MediaQueue("slin", channel_id="c")
    assert q.write(frames(3) + bytes(100)) == []
    assert q.length == 3 and q.bytes_dropped == 100
    played = [q.tick()[0] for _ in range(4)]
    assert played[:3] == [frames(3)[i * FRAME : (i + 1) * FRAME] for i in range(3)] and played[3] is None
    assert q.frames_played == 3
    q = MediaQueue("ulaw")
    q.write(bytes(1000))
    assert (q.length, q.bytes_dropped) == (6, 40)


def test_passthrough_queues_each_message_whole() -> None:
    q = MediaQueue("opus", channel_id="c")
    q.write(bytes(77))
    q.write(bytes(3))
    assert [q.tick()[0] for _ in range(2)] == [bytes(77), bytes(3)]
    q = MediaQueue("slin", passthrough=True)  # the p option
    q.write(bytes(1000))
    assert q.length == 1 and q.frame_size == 320


def test_a_mark_after_2_4_seconds_is_reported_on_tick_121() -> None:
    q = MediaQueue("slin", channel_id="c")
    q.write(frames(120))  # 2.4 s in one message
    assert q.command(MarkMedia("m1")) == []
    results = run(q, 120)
    assert all(frame is not None and events == [] for frame, events in results)
    assert q.tick() == (None, [MediaMarkProcessed("m1", "c")])  # captured: 2.42 s after the mark
    assert q.tick() == (None, [])


def test_marks_on_an_empty_queue_wait_for_the_next_tick_and_share_it_with_audio() -> None:
    q = MediaQueue("slin", channel_id="c")
    q.command(MarkMedia("a"))
    q.command(MarkMedia())
    q.write(frames(1))
    frame, events = q.tick()  # all control frames at the head, then the audio (CW L526-549)
    assert frame == frames(1) and events == [MediaMarkProcessed("a", "c"), MediaMarkProcessed(None, "c")]
    assert q.pending_marks == 0


def test_xoff_exactly_once_at_900_and_xon_below_800() -> None:
    q = MediaQueue("slin", channel_id="c")
    assert q.write(frames(899)) == []
    assert q.write(frames(1)) == [MediaXoff("c")]  # CW L639: >= 900
    assert q.write(frames(99)) == [] and q.queue_full
    assert q.length == 999
    results = run(q, 200)  # 999 -> 799; tick 200 started at 800, not below (CW L486)
    assert all(frame is not None and events == [] for frame, events in results)
    frame, events = q.tick()  # starts at 799: XON before its dequeue
    assert frame is not None and events == [MediaXon("c")] and not q.queue_full


def test_xon_tick_exactly() -> None:
    q = MediaQueue("slin", channel_id="c")
    q.write(frames(1000))
    events_by_tick = [events for _, events in run(q, 202)]
    assert [i + 1 for i, e in enumerate(events_by_tick) if e] == [202]  # length 799 at the start of tick 202
    assert events_by_tick[201] == [MediaXon("c")] and not q.queue_full
    assert q.write(frames(100)) == [] and q.write(frames(2)) == [MediaXoff("c")]  # a new cycle


def test_binary_is_ignored_while_the_queue_holds_1000_frames() -> None:
    q = MediaQueue("slin", channel_id="c")
    assert q.write(frames(200) * 5) == [MediaXoff("c")]  # captured: 5 x 200 frames -> 1000, XOFF
    assert q.write(frames(200)) == []  # captured: the 6th message left no trace
    assert (q.length, q.frames_dropped, q.bytes_dropped) == (1000, 200, 200 * FRAME)
    assert q.command(GetStatus()) == [status("c", 1000, full=True)]


def test_the_full_check_is_per_message_so_one_message_can_overfill() -> None:
    q = MediaQueue("slin")
    q.write(frames(999))
    q.write(frames(204))  # checked at 999 < 1000 (CW L955), then all 204 frames queued
    assert q.length == 1203


def test_flush_drops_frames_and_marks_and_xon_follows() -> None:
    q = MediaQueue("slin", channel_id="c")
    q.write(frames(1000))
    q.command(MarkMedia("lost"))
    q.command(StartMediaBuffering())
    q.write(bytes(100))
    assert q.command(FlushMedia()) == []
    assert q.command(GetStatus()) == [status("c", 0, full=True)]  # captured: queue_full stays true
    assert (q.frames_flushed, q.pending_marks, q.leftover, q.bulk_media) == (1000, 0, b"", False)
    assert q.tick() == (None, [MediaXon("c")])  # captured: MEDIA_XON on the next tick
    assert all(r == (None, []) for r in run(q, 5))  # the mark is never reported


def test_media_buffering_keeps_the_remainder_and_stop_queues_a_short_frame() -> None:
    q = MediaQueue("slin", channel_id="c")
    q.command(StartMediaBuffering())
    q.write(bytes(500))
    assert q.command(GetStatus()) == [status("c", 1, bulk=True)]  # captured
    assert q.leftover == bytes(180)
    q.write(b"\x01" * 100)  # still short: appended, nothing queued (CW L994-999)
    assert (q.length, len(q.leftover)) == (1, 280)
    q.write(b"\x02" * 400)  # 40 complete the frame, 320 make another, 40 kept
    assert (q.length, q.leftover) == (3, b"\x02" * 40)
    assert q.command(StopMediaBuffering("b1")) == []
    assert (q.length, q.leftover, q.bulk_media) == (4, b"", False)
    q.command(ReportQueueDrained())
    played = run(q, 6)
    assert [len(f) if f else None for f, _ in played] == [320, 320, 320, 40, None, None]
    assert played[1][0] == bytes(180) + b"\x01" * 100 + b"\x02" * 40
    assert played[4][1] == [MediaBufferingCompleted("b1", "c")]
    assert played[5][1] == [QueueDrained("c")]  # captured: COMPLETED then QUEUE_DRAINED one tick later


def test_captured_buffering_timing() -> None:
    q = MediaQueue("slin", channel_id="c")
    q.command(StartMediaBuffering())
    q.write(bytes(500))
    q.command(StopMediaBuffering("b1"))
    q.command(ReportQueueDrained())
    assert [events for _, events in run(q, 4)] == [
        [],
        [],
        [MediaBufferingCompleted("b1", "c")],
        [QueueDrained("c")],
    ]


def test_stop_without_start_still_completes() -> None:
    q = MediaQueue("slin", channel_id="c")
    q.command(StopMediaBuffering())
    assert q.tick() == (None, [MediaBufferingCompleted(None, "c")])


def test_queue_drained_only_on_a_truly_empty_tick() -> None:
    q = MediaQueue("slin", channel_id="c")
    q.command(ReportQueueDrained())
    q.command(MarkMedia("m"))
    assert q.tick() == (None, [MediaMarkProcessed("m", "c")])  # CW L556-558: no drained check here
    assert q.tick() == (None, [QueueDrained("c")])
    assert q.tick() == (None, []) and not q.report_queue_drained


def test_pause_stops_everything_including_xon() -> None:
    q = MediaQueue("slin", channel_id="c")
    q.write(frames(900))
    q.command(FlushMedia())
    assert q.command(PauseMedia()) == []
    assert q.command(GetStatus()) == [status("c", 0, full=True, paused=True)]
    assert run(q, 3) == [(None, [])] * 3  # CW L476-478
    q.command(ContinueMedia())
    assert q.tick() == (None, [MediaXon("c")])


def test_passthrough_refuses_media_commands() -> None:  # CW L678-686
    q = MediaQueue("opus", channel_id="c")
    for cmd in (
        StartMediaBuffering(),
        StopMediaBuffering(),
        MarkMedia(),
        FlushMedia(),
        ReportQueueDrained(),
        PauseMedia(),
        ContinueMedia(),
        SetMediaDirection("in"),
    ):
        assert q.command(cmd) == [AsteriskError(f"{cmd.NAME} not supported in passthrough mode", "c")]
    assert q.command(GetStatus()) == [status("c", 0)]
    # The passthrough check precedes SET_MEDIA_DIRECTION's own checks (CW L846-851).
    assert q.command(parse_command("SET_MEDIA_DIRECTION in", PLAIN_TEXT)) == [
        AsteriskError("SET_MEDIA_DIRECTION not supported in passthrough mode", "c")
    ]
    assert q.command(Answer()) == [] and q.command(Hangup()) == []


def test_media_direction_in() -> None:
    q = MediaQueue("slin", channel_id="c")
    q.write(frames(2))
    assert q.command(SetMediaDirection("in")) == []
    assert not q.timer_running and q.tick() == (None, [])  # the timer is closed (CW L888-892)
    q.write(frames(5))  # dropped (CW L1118-1123)
    assert (q.length, q.frames_dropped) == (2, 5)
    for cmd in (StartMediaBuffering(), StopMediaBuffering(), MarkMedia(), PauseMedia(), ContinueMedia()):
        assert q.command(cmd) == [
            AsteriskError(f"{cmd.NAME} not supported while media direction is 'in'", "c")
        ]
    assert q.command(ReportQueueDrained()) == [] and q.report_queue_drained  # no direction check
    q.command(SetMediaDirection("both"))
    assert [f is not None for f, _ in run(q, 3)] == [True, True, False]
    assert MediaQueue("slin", media_direction="in").tick() == (None, [])


def test_ignored_commands_answer_with_their_error_event() -> None:
    q = MediaQueue("slin", channel_id="c")
    assert q.command(parse_command("{", JSON)) == [AsteriskError(PARSE_ERROR, "c")]
    assert q.command(parse_command("answer", PLAIN_TEXT)) == []
    assert q.command(parse_command("X" * 200, PLAIN_TEXT)) == []


def test_replay_of_the_captured_plain_text_call() -> None:
    """The server script's plain-text steps, against the events Asterisk sent (CAPTURED_PLAIN)."""
    q = MediaQueue("slin", channel_id=P)
    sent: list[str] = []

    def text(t: str) -> None:
        sent.extend(encode_event(e, PLAIN_TEXT) for e in q.command(parse_command(t, PLAIN_TEXT)))

    def ticks(n: int) -> None:
        for _ in range(n):
            sent.extend(encode_event(e, PLAIN_TEXT) for e in q.tick()[1])

    text("GET_STATUS")
    q.write(bytes(FRAME * 120))
    for t in (
        "MARK_MEDIA m1",
        "GET_STATUS",
        "answer",
        "GET_STATUS  ",
        "X" * 129,
        "SET_MEDIA_DIRECTION in",
        "MARK_MEDIA  sp",
        "MARK_MEDIA a b",
    ):
        text(t)
    ticks(150)
    text("START_MEDIA_BUFFERING")
    q.write(bytes(500))
    for t in ("GET_STATUS", "STOP_MEDIA_BUFFERING b1", "REPORT_QUEUE_DRAINED"):
        text(t)
    ticks(25)
    for _ in range(6):
        sent.extend(encode_event(e, PLAIN_TEXT) for e in q.write(bytes(FRAME * 200)))
    for t in ("GET_STATUS", "MARK_MEDIA lost", "FLUSH_MEDIA", "GET_STATUS"):
        text(t)
    ticks(25)
    text("GET_STATUS")
    st_ = "STATUS channel_id:1795669182.2 queue_length:{} xon_level:800 xoff_level:900 queue_full:{} bulk_media:{} media_paused:false"
    assert sent == [
        st_.format(0, "false", "false"),
        st_.format(120, "false", "false"),
        st_.format(120, "false", "false"),
        "ERROR channel_id:1795669182.2 error_text:SET_MEDIA_DIRECTION only supports JSON format.\n",
        "MEDIA_MARK_PROCESSED m1",
        "MEDIA_MARK_PROCESSED  sp",
        "MEDIA_MARK_PROCESSED a b",
        st_.format(1, "false", "true"),
        "MEDIA_BUFFERING_COMPLETED b1",
        "QUEUE_DRAINED",
        "MEDIA_XOFF",
        st_.format(1000, "true", "false"),
        st_.format(0, "true", "false"),
        "MEDIA_XON",
        st_.format(0, "false", "false"),
    ]


_ops = st.lists(
    st.one_of(
        st.integers(0, 3 * 65531).map(lambda n: ("write", n)),
        st.integers(1, 400).map(lambda n: ("tick", n)),
        st.sampled_from(
            [
                MarkMedia("m"),
                FlushMedia(),
                PauseMedia(),
                ContinueMedia(),
                StartMediaBuffering(),
                StopMediaBuffering("s"),
                ReportQueueDrained(),
                GetStatus(),
            ]
        ).map(lambda c: ("cmd", c)),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["slin", "ulaw", "slin16"]), _ops)
def test_queue_invariants(format_name: str, ops: list[tuple[str, object]]) -> None:
    q = MediaQueue(format_name, channel_id="c")
    max_per_message = MAX_MESSAGE_BYTES // q.frame_size
    flow: list[type] = []
    for kind, arg in ops:
        if kind == "write":
            assert isinstance(arg, int)
            size = min(arg, MAX_MESSAGE_BYTES)
            events = q.write(bytes(size))
        elif kind == "tick":
            assert isinstance(arg, int)
            events = [e for _ in range(arg) for e in q.tick()[1]]
        else:
            events = q.command(arg)  # type: ignore[arg-type]
        flow += [type(e) for e in events if isinstance(e, MediaXoff | MediaXon)]
        # Never more than one message beyond the 999 that let it in (the check is per message).
        assert q.length <= MAX_QUEUE_FRAMES - 1 + max_per_message
        if q.length >= XOFF_FRAMES:
            assert q.queue_full
        assert len(q.leftover) < q.frame_size
    # XOFF and XON alternate, starting with XOFF.
    assert flow == [MediaXoff, MediaXon] * (len(flow) // 2) + [MediaXoff] * (len(flow) % 2)

"""chan_websocket control messages, both formats, on hostile text.

Contract (``telephony.chan_websocket``): ``parse_event`` returns a typed event (``UnknownEvent``
for a well-formed one it does not know) or raises ``ChanWebsocketProtocolError``; ``parse_command``
never raises: a command or an ``IgnoredCommand``. A typed result holds what its type says (a
``str`` that can go on the wire as UTF-8, an ``int``, a ``bool``), so the code that reads it,
the leg or the Asterisk stand-in, cannot trip on it.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing

from hypothesis import example, given
from hypothesis import strategies as st

from mikrovoice.telephony import chan_websocket as cw
from tests.fuzz.hostile import (
    HOSTILE_JSON_TEXT,
    JSON_VALUES,
    NASTY_TEXT,
    NUMBER_TEXT,
    decoder_settings,
    mutated,
)

FORMATS: list[cw.Format] = [cw.PLAIN_TEXT, cw.JSON]
EVENTS: list[cw.Event] = [
    cw.MediaStart("conn1", "WebSocket/conn1/0x7efe2c006590", "1795669182.2", "slin", 320, 20,
                  {"MIKROVOICE_CALLER": "3001234567", "MEDIA_WEBSOCKET_CONNECTION_ID": "conn1"}),
    cw.DtmfEnd("5", "1795669182.2"),
    cw.MediaXoff("1795669182.2"),
    cw.MediaXon("1795669182.2"),
    cw.QueueDrained("1795669182.2"),
    cw.MediaMarkProcessed("7", "1795669182.2"),
    cw.MediaBufferingCompleted("b1", "1795669182.2"),
    cw.Status("1795669182.2", 12, 800, 900, False, True, False),
    cw.AsteriskError("Unable to parse JSON command", "1795669182.2"),
]
JSON_TEMPLATES = [json.loads(cw.encode_event(e, cw.JSON)) for e in EVENTS]
PLAIN_TEMPLATES = [cw.encode_event(e, cw.PLAIN_TEXT) for e in EVENTS]
NAMES = [cls.NAME for cls in (cw.MediaStart, cw.DtmfEnd, cw.MediaXoff, cw.MediaXon, cw.QueueDrained,
                               cw.MediaMarkProcessed, cw.MediaBufferingCompleted, cw.Status, cw.AsteriskError)]
NAMES += ["UNKNOWN_EVENT", "A", "media_start", "MEDIA_START\x00"]
KEYS = ["connection_id", "channel", "channel_id", "format", "optimal_frame_size", "ptime", "digit", "queue_length",
        "xon_level", "xoff_level", "queue_full", "bulk_media", "media_paused", "error_text", "correlation_id",
        "channel_variables", "event"]


@st.composite
def plain_events(draw: st.DrawFn) -> str:
    """``NAME key:value ...`` with the real names and keys and hostile values (huge digits above all)."""
    name = draw(st.sampled_from(NAMES) | st.from_regex(r"[A-Z][A-Z0-9_]{0,20}", fullmatch=True))
    words = draw(st.lists(
        st.tuples(st.sampled_from(KEYS) | st.text(max_size=6), NUMBER_TEXT | NASTY_TEXT | st.sampled_from(
            ["true", "false", "slin", "ulaw", "opus"])).map(lambda kv: f"{kv[0]}:{kv[1]}")
        | NASTY_TEXT,
        max_size=10,
    ))
    return " ".join([name, *words])


@st.composite
def mutated_plain(draw: st.DrawFn) -> str:
    """A real plain-text event with one value replaced by a hostile one, or cut anywhere."""
    text = draw(st.sampled_from(PLAIN_TEMPLATES))
    words = text.split(" ")
    i = draw(st.integers(0, len(words) - 1))
    key, colon, _ = words[i].partition(":")
    words[i] = f"{key}{colon}{draw(NUMBER_TEXT | NASTY_TEXT)}" if colon else draw(NASTY_TEXT)
    text = " ".join(words)
    return text[: draw(st.integers(0, len(text)))] if draw(st.booleans()) else text


json_events = st.sampled_from(JSON_TEMPLATES).flatmap(lambda t: mutated(t, st.sampled_from(KEYS))).map(
    lambda v: json.dumps(v)  # NaN and Infinity as Python writes them, lone surrogates as \\ud800
)
HOSTILE_EVENTS = st.one_of(plain_events(), mutated_plain(), json_events, HOSTILE_JSON_TEXT, NASTY_TEXT)


def _utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def assert_well_typed(result: object) -> None:
    """Each field holds its annotated type (str fields: text that can be logged and sent as UTF-8)."""
    hints = typing.get_type_hints(type(result))
    for f in dataclasses.fields(result):  # type: ignore[arg-type]
        value, hint = getattr(result, f.name), hints[f.name]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        allowed = typing.get_args(hint) if union else (hint,)
        if value is None:
            assert type(None) in allowed, (f.name, value)
        elif hint is bool:
            assert type(value) is bool, (f.name, value)
        elif hint is int:
            assert type(value) is int, (f.name, value)
        elif str in allowed:
            assert isinstance(value, str) and _utf8(value), (f.name, value)
    if isinstance(result, cw.MediaStart):
        assert all(isinstance(k, str) and isinstance(v, str) and _utf8(k) and _utf8(v)
                   for k, v in result.channel_variables.items())


@decoder_settings(600)
@given(HOSTILE_EVENTS)
@example("STATUS channel_id:x queue_length:" + "9" * 5000 + " xon_level:1 xoff_level:1 queue_full:true"
         " bulk_media:true media_paused:true")  # int() refuses more than 4300 digits: was a ValueError
@example("MEDIA_START connection_id:c channel:c channel_id:c format:slin optimal_frame_size:" + "1" * 4301
         + " ptime:20")  # the same, in the event that starts a call
@example('{"event":"MEDIA_START","connection_id":"c","channel":"c","channel_id":"\\ud800","format":"slin",'
         '"optimal_frame_size":320,"ptime":20}')  # a lone surrogate as the call's id: was accepted
@example('{"event":"DTMF_END","digit":"\\udfff","channel_id":"c"}')
@example("MEDIA_MARK_PROCESSED \ud800")  # not UTF-8: no WebSocket text frame can carry it
@example('{"event":"STATUS","channel_id":"c","queue_length":NaN}')
@example("[" * 100_000)
def test_parse_event_gives_a_typed_event_or_the_protocol_error(text: str) -> None:
    try:
        result = cw.parse_event(text)
    except cw.ChanWebsocketProtocolError as exc:
        assert str(exc) and len(str(exc)) < 600  # one clear line, not the whole message echoed
        return
    assert isinstance(result, typing.get_args(cw.Event))
    assert_well_typed(result)


HOSTILE_COMMANDS = st.one_of(
    st.text(max_size=140),
    NASTY_TEXT,
    HOSTILE_JSON_TEXT.filter(lambda t: len(t) < 300),
    st.sampled_from(["MARK_MEDIA", "STOP_MEDIA_BUFFERING", "SET_MEDIA_DIRECTION", "ANSWER", "FLUSH_MEDIA"]).flatmap(
        lambda name: NASTY_TEXT.map(lambda rest: f"{name} {rest}")),
    st.fixed_dictionaries({}, optional={
        "command": st.sampled_from(["MARK_MEDIA", "STOP_MEDIA_BUFFERING", "SET_MEDIA_DIRECTION", "GET_STATUS"])
        | JSON_VALUES,
        "correlation_id": JSON_VALUES, "direction": st.sampled_from(["in", "out", "both"]) | JSON_VALUES,
    }).map(json.dumps),
)


@decoder_settings(500)
@given(HOSTILE_COMMANDS, st.sampled_from(FORMATS), st.sampled_from(["slin", "ulaw", "opus"]), st.booleans())
@example("MARK_MEDIA \ud800", cw.PLAIN_TEXT, "slin", False)  # its MEDIA_MARK_PROCESSED could not be encoded
@example('{"command":"MARK_MEDIA","correlation_id":"\\ud800"}', cw.JSON, "slin", False)
def test_parse_command_never_raises_and_asterisk_can_answer_it(
    text: str, fmt: cw.Format, format_name: str, buffering: bool
) -> None:
    """The Asterisk stand-in's path: parse, act on the queue, encode what Asterisk sends back."""
    result = cw.parse_command(text, fmt)
    assert isinstance(result, (*typing.get_args(cw.Command), cw.IgnoredCommand))
    assert_well_typed(result)
    queue = cw.MediaQueue(format_name, channel_id="1795669182.2")
    if buffering:
        queue.command(cw.StartMediaBuffering())
        queue.write(bytes(100))
    events = queue.command(result)
    for _ in range(3):
        events += queue.tick()[1]
    for event in events:
        for out_fmt in FORMATS:
            assert cw.parse_event(cw.encode_event(event, out_fmt)) is not None


_correlation = st.none() | st.text(st.characters(codec="utf-8", min_codepoint=33, exclude_categories=["Zs", "Zl", "Zp"]),
                                   min_size=1, max_size=20)
COMMANDS = st.one_of(
    st.sampled_from([cw.Answer(), cw.Hangup(), cw.StartMediaBuffering(), cw.FlushMedia(), cw.GetStatus(),
                     cw.ReportQueueDrained(), cw.PauseMedia(), cw.ContinueMedia()]),
    st.builds(cw.MarkMedia, _correlation),
    st.builds(cw.StopMediaBuffering, _correlation),
    st.sampled_from([cw.SetMediaDirection("both"), cw.SetMediaDirection("in"), cw.SetMediaDirection("out")]),
)


@decoder_settings(200)
@given(COMMANDS, st.sampled_from(FORMATS))
def test_encoded_commands_parse_back(command: cw.Command, fmt: cw.Format) -> None:
    try:
        text = cw.encode_command(command, fmt)
    except ValueError:  # over 128 bytes, or SET_MEDIA_DIRECTION in plain text: refused before the wire
        return
    assert cw.parse_command(text, fmt) == command


@decoder_settings(200)
@given(st.lists(st.binary(max_size=2000) | COMMANDS | st.just("tick"), max_size=60),
       st.sampled_from(["slin", "ulaw", "slin16", "opus"]))
def test_the_media_queue_takes_any_audio_and_commands(steps: list[object], format_name: str) -> None:
    queue = cw.MediaQueue(format_name, channel_id="c")
    for step in steps:
        if isinstance(step, bytes):
            queue.write(step)
        elif step == "tick":
            queue.tick()
        else:
            queue.command(step)  # type: ignore[arg-type]
        assert queue.length >= 0 and queue.length <= cw.MAX_QUEUE_FRAMES + 2000 // max(1, queue.frame_size or 1)

"""Realtime server events on hostile text, and what the pure code then does with the typed events.

Contract (``realtime.protocol``): ``parse_server_event`` returns a typed event (``Unrecognised``
for a well-formed type it does not use) or raises ``RealtimeProtocolError`` (the link logs
``model.bad_event`` and reads on). A typed event holds what its type says, so the pure code the
call feeds it to (``ResponseGate``, ``error_effect``, ``failure_of``, ``retry_after_s``,
``check_session_updated``) cannot trip on it either.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import types
import typing
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from mikrovoice.realtime import protocol as rt
from tests.fuzz.hostile import HOSTILE_JSON_TEXT, JSON_VALUES, NASTY_TEXT, decoder_settings, mutated

_SESSION = {
    "type": "realtime", "object": "realtime.session", "id": "sess_1", "model": "gpt-realtime-2.1",
    "output_modalities": ["audio"], "instructions": "x", "tools": [{"type": "function", "name": "trafico"}],
    "audio": {"input": {"format": {"type": "audio/pcmu"}, "turn_detection": {"type": "server_vad"}},
              "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"}},
}
_CALL_ITEM = {"id": "item_2", "type": "function_call", "status": "completed", "call_id": "call_1", "name": "trafico",
              "arguments": '{"routers":"todos"}'}
#: One event of each type the client reads, in the GA shapes (research/openai-realtime.md 1.5).
TEMPLATES: list[dict[str, Any]] = [
    {"type": "session.created", "event_id": "event_1", "session": _SESSION},
    {"type": "session.updated", "event_id": "event_2", "session": _SESSION},
    {"type": "response.created", "event_id": "event_3", "response": {
        "id": "resp_1", "object": "realtime.response", "status": "in_progress", "metadata": {"kind": "greeting"},
        "output": []}},
    {"type": "response.done", "event_id": "event_4", "response": {
        "id": "resp_1", "status": "failed", "metadata": {"kind": "report"}, "output": [_CALL_ITEM],
        "status_details": {"type": "failed", "reason": None,
                           "error": {"type": "invalid_request_error", "code": "rate_limit_exceeded",
                                     "message": "Please try again in 1m26.4s"}}}},
    {"type": "response.output_audio.delta", "event_id": "event_5", "response_id": "resp_1", "item_id": "item_1",
     "output_index": 0, "content_index": 0, "delta": base64.b64encode(bytes(160)).decode()},
    {"type": "response.output_audio_transcript.delta", "event_id": "event_6", "response_id": "resp_1",
     "item_id": "item_1", "output_index": 0, "content_index": 0, "delta": "Hola"},
    {"type": "response.output_audio_transcript.done", "event_id": "event_7", "response_id": "resp_1",
     "item_id": "item_1", "output_index": 0, "content_index": 0, "transcript": "Hola, ¿en qué le ayudo?"},
    {"type": "response.output_item.done", "event_id": "event_8", "response_id": "resp_1", "output_index": 1,
     "item": _CALL_ITEM},
    {"type": "conversation.item.added", "event_id": "event_9", "previous_item_id": None,
     "item": {"id": "item_3", "type": "function_call_output", "call_id": "call_1", "output": "{}"}},
    {"type": "input_audio_buffer.speech_started", "event_id": "event_10", "audio_start_ms": 1200, "item_id": "item_4"},
    {"type": "input_audio_buffer.speech_stopped", "event_id": "event_11", "audio_end_ms": 2400, "item_id": "item_4"},
    {"type": "conversation.item.input_audio_transcription.completed", "event_id": "event_12", "item_id": "item_4",
     "content_index": 0, "transcript": "dame el tráfico"},
    {"type": "error", "event_id": "event_13", "error": {
        "type": "invalid_request_error", "code": "conversation_already_has_active_response",
        "message": "Conversation already has an active response", "param": None, "event_id": "rc_7"}},
    {"type": "rate_limits.updated", "event_id": "event_14", "rate_limits": []},
]
KEYS = st.sampled_from(["type", "id", "response", "item", "session", "delta", "response_id", "item_id", "call_id",
                        "name", "arguments", "status", "metadata", "output", "error", "code", "message", "event_id",
                        "audio_start_ms", "audio_end_ms", "transcript", "status_details", "reason"])

HOSTILE_NUMBERS_JSON = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "1.5", "-1", "true", '"12"',
                                        '"abc"', "9" * 5000, "1e308", "[]", "{}", "null"])


@st.composite
def hostile_number_events(draw: st.DrawFn) -> str:
    """speech_started/stopped with a number Python's json reads as NaN, inf, a float, a string..."""
    kind, key = draw(st.sampled_from([("input_audio_buffer.speech_started", "audio_start_ms"),
                                      ("input_audio_buffer.speech_stopped", "audio_end_ms")]))
    return f'{{"type":"{kind}","{key}":{draw(HOSTILE_NUMBERS_JSON)},"item_id":"item_1"}}'


HOSTILE_EVENTS = st.one_of(
    st.sampled_from(TEMPLATES).flatmap(lambda t: mutated(t, KEYS)).map(json.dumps),
    hostile_number_events(),
    st.sampled_from(TEMPLATES).flatmap(lambda t: mutated(t, KEYS)).map(lambda v: json.dumps(v).encode()),
    HOSTILE_JSON_TEXT,
    JSON_VALUES.map(json.dumps),
    NASTY_TEXT,
    st.binary(max_size=50),
)


def assert_well_typed(event: object) -> None:
    hints = typing.get_type_hints(type(event), vars(rt))
    for f in dataclasses.fields(event):  # type: ignore[arg-type]
        value, hint = getattr(event, f.name), hints[f.name]
        origin = typing.get_origin(hint)
        allowed = typing.get_args(hint) if origin in (typing.Union, types.UnionType) else (hint,)
        if value is None:
            assert type(None) in allowed, (f.name, value)
        elif str in allowed:
            assert isinstance(value, str), (f.name, value)
        elif hint is int:
            assert isinstance(value, int), (f.name, value)
        elif hint is bytes:
            assert isinstance(value, bytes), (f.name, value)
        elif origin is dict:
            assert isinstance(value, dict), (f.name, value)
            if typing.get_args(hint) == (str, str):
                assert all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        elif origin is tuple:
            assert isinstance(value, tuple)
            for inner in value:
                assert_well_typed(inner)


def drive(events: list[rt.ServerEvent]) -> None:
    """What the call does with each event that is pure: the gate, error_effect, the session check."""
    gate = rt.ResponseGate(absorbable=frozenset({"report"}))
    gate.request(rt.client_response_create("greeting"))
    gate.request(rt.client_response_create("report"), after_output="call_1")
    sent = rt.client_session_update(rt.SessionSettings("gpt-realtime-2.1", "x", "marin", (
        rt.ToolSpec("trafico", "d", {"type": "object"}),)))
    for event in events:
        if isinstance(event, rt.SessionCreated | rt.SessionUpdated):
            problem = rt.check_session_updated(sent, event.session)
            assert problem is None or isinstance(problem, str)
        elif isinstance(event, rt.ResponseCreated):
            gate.on_created(event)
            assert isinstance(event.out_of_band, bool)
        elif isinstance(event, rt.ResponseDone):
            failure = rt.failure_of(event)
            if failure is not None:
                rt.error_effect(failure, pending_create_id=gate.pending_create_id)
            gate.on_done(event)
        elif isinstance(event, rt.ItemAdded):
            gate.on_item_added(event)
        elif isinstance(event, rt.ServerError):
            rt.error_effect(event, session_update_id=sent["event_id"], pending_create_id=gate.pending_create_id)
            wait = rt.retry_after_s(event)
            assert wait is None or (isinstance(wait, float) and not math.isnan(wait) and wait >= 0)
            gate.on_error(event)
        gate.take_refused()
        gate.hold(False)


@decoder_settings(600)
@given(HOSTILE_EVENTS)
@example('{"type":"input_audio_buffer.speech_started","audio_start_ms":NaN,"item_id":"i"}')  # was ValueError
@example('{"type":"input_audio_buffer.speech_stopped","audio_end_ms":Infinity,"item_id":"i"}')  # was OverflowError
@example('{"type":"input_audio_buffer.speech_started","audio_start_ms":"abc","item_id":"i"}')  # was ValueError
@example('{"type":"input_audio_buffer.speech_started","audio_start_ms":true,"item_id":"i"}')
@example("[" * 100_000)  # was RecursionError
@example('{"type":"response.output_audio.delta","delta":"é","response_id":"r","item_id":"i"}')  # was ValueError
@example('{"type":"session.updated","session":[1]}')  # was a SessionUpdated the session check tripped on
@example('{"type":"response.done","response":{"id":5,"status":"completed","output":[{"type":"function_call",'
         '"status":"completed","id":"a","call_id":"c","name":"n","arguments":"{}"}]}}')
@example('{"type":"response.created","response":{"id":"r","metadata":{"kind":' + "[" * 900 + "]" * 900 + "}}}")
def test_parse_server_event_gives_a_typed_event_or_the_protocol_error(text: str | bytes) -> None:
    try:
        event = rt.parse_server_event(text)
    except rt.RealtimeProtocolError as exc:
        assert str(exc) and len(str(exc)) < 600
        return
    assert isinstance(event, typing.get_args(rt.ServerEvent))
    assert_well_typed(event)
    drive([event])


@decoder_settings(300)
@given(st.lists(st.sampled_from(TEMPLATES).flatmap(lambda t: st.just(t) | mutated(t, KEYS)), max_size=12))
@example([{"type": "session.updated", "session": None}])  # check_session_updated tripped on it: AttributeError
@example([{"type": "input_audio_buffer.speech_stopped", "audio_end_ms": "", "item_id": "i"}])  # int(""): ValueError
def test_any_sequence_of_plausible_events_drives_the_gate_without_error(events: list[Any]) -> None:
    parsed = []
    for event in events:
        try:
            parsed.append(rt.parse_server_event(json.dumps(event)))
        except rt.RealtimeProtocolError:
            continue
    drive(parsed)


@decoder_settings(200)
@given(st.text(max_size=300) | st.sampled_from(["Please try again in " + "9" * 400 + "h", "try again in 1e5s",
                                                  "try again in " + "1m" * 2000 + "x", "try again in 0.000ms"]))
def test_retry_after_never_raises(message: str) -> None:
    wait = rt.retry_after_s(rt.ServerError("rate_limit_exceeded", message, None))
    assert wait is None or wait >= 0

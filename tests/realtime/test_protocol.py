"""Realtime GA events: client event shapes, server event parsing, and the one-response-at-a-time gate."""

import base64
import json

import pytest

from mikrovoice.realtime import protocol as rt

SETTINGS = rt.SessionSettings(model="gpt-realtime", instructions="hola", voice="marin",
                              tools=(rt.ToolSpec("t", "d", {"type": "object", "properties": {}}),))


def test_session_update_is_ga_pcmu_server_vad_with_flat_tools() -> None:
    event = rt.client_session_update(SETTINGS)
    session = event["session"]
    assert event["type"] == "session.update" and session["type"] == "realtime"
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"} == session["audio"]["output"]["format"]
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert session["tools"] == [{"type": "function", "name": "t", "description": "d", "parameters": {"type": "object", "properties": {}}}]
    assert "input_audio_format" not in session and "modalities" not in session  # no beta keys


def test_client_events() -> None:
    assert rt.client_append_audio(b"\xff\x7f") == {"type": "input_audio_buffer.append", "audio": "/38="}
    out = rt.client_tool_output("call_1", '{"a":1}')
    assert out["item"] == {"type": "function_call_output", "call_id": "call_1", "output": '{"a":1}'}
    create = rt.client_response_create("progress", "di algo", tool_choice="none")
    assert create["response"] == {"metadata": {"kind": "progress"}, "instructions": "di algo", "tool_choice": "none"}
    assert rt.client_truncate("item_1", 480)["audio_end_ms"] == 480


def test_parse_function_call_audio_and_done() -> None:
    item = {"id": "item_1", "type": "function_call", "status": "completed", "name": "trafico_sfp",
            "call_id": "call_1", "arguments": "{}"}
    parsed = rt.parse_server_event(json.dumps({"type": "response.output_item.done", "response_id": "resp_1", "item": item}))
    assert parsed == rt.FunctionCall("resp_1", "item_1", "call_1", "trafico_sfp", "{}")
    delta = {"type": "response.output_audio.delta", "response_id": "r", "item_id": "i", "delta": base64.b64encode(b"\x01\x02").decode()}
    assert rt.parse_server_event(json.dumps(delta)) == rt.AudioDelta("r", "i", b"\x01\x02")
    done = {"type": "response.done", "response": {"id": "r", "status": "cancelled", "metadata": {"kind": "report"}, "output": [item]}}
    parsed_done = rt.parse_server_event(json.dumps(done))
    assert isinstance(parsed_done, rt.ResponseDone) and parsed_done.metadata == {"kind": "report"}
    assert rt.parse_server_event('{"type":"rate_limits.updated","rate_limits":[]}') == rt.Unrecognised("rate_limits.updated")


def test_incomplete_function_call_is_not_executed() -> None:
    item = {"id": "i", "type": "function_call", "status": "incomplete", "name": "x", "call_id": "c", "arguments": "{"}
    event = rt.parse_server_event(json.dumps({"type": "response.output_item.done", "response_id": "r", "item": item}))
    assert isinstance(event, rt.Unrecognised)


@pytest.mark.parametrize("text", ["not json", "[]", '{"no":"type"}', '{"type":"response.created"}',
                                  '{"type":"response.output_audio.delta","response_id":"r","item_id":"i","delta":"@@@"}',
                                  '{"type":"response.done","response":{"id":5,"status":"completed"}}'])
def test_garbage_is_a_protocol_error(text: str) -> None:
    with pytest.raises(rt.RealtimeProtocolError):
        rt.parse_server_event(text)


def created(rid: str, kind: str | None) -> rt.ResponseCreated:
    return rt.ResponseCreated(rid, {"kind": kind} if kind else {})


def done(rid: str) -> rt.ResponseDone:
    return rt.ResponseDone(rid, "completed", {})


def test_gate_releases_one_response_at_a_time() -> None:
    gate = rt.ResponseGate()
    greeting, progress = rt.client_response_create("greeting"), rt.client_response_create("progress")
    assert gate.request(greeting) == [greeting]
    assert gate.request(progress) == []  # queued: the greeting is on the wire
    assert gate.on_created(created("r1", "greeting")) == []
    assert gate.on_done(done("r1")) == [progress]
    gate.on_created(created("r2", "progress"))
    assert gate.on_done(done("r2")) == [] and not gate.busy


def test_gate_retries_a_create_refused_because_vad_answered_first() -> None:
    gate = rt.ResponseGate()
    report = rt.client_response_create("report")
    assert gate.request(report) == [report]
    gate.on_created(created("vad1", None))  # server VAD started a response at the same moment
    error = rt.ServerError("conversation_already_has_active_response", "busy", report["event_id"])
    assert gate.on_error(error) == []
    (retried,) = gate.on_done(done("vad1"))  # retried once the VAD turn is done, under a new event_id
    assert retried["response"] == report["response"] and retried["event_id"] != report["event_id"]


def test_gate_drops_queued_progress_when_the_result_arrives() -> None:
    gate = rt.ResponseGate()
    gate.on_created(created("vad", None))
    gate.request(rt.client_response_create("progress"))
    gate.cancel_kind("progress")
    assert gate.on_done(done("vad")) == []

"""Realtime GA events: client event shapes, server event parsing, error effects, and the one-response-at-a-time gate."""

import base64
import json

import pytest

from mikrovoice.realtime import protocol as rt

SETTINGS = rt.SessionSettings(model="gpt-realtime", instructions="hola", voice="marin",
                              tools=(rt.ToolSpec("t", "d", {"type": "object", "properties": {}}),))
BUSY = "conversation_already_has_active_response"


# --------------------------------------------------------------------------- session.update


def test_session_update_is_ga_pcmu_server_vad_with_flat_tools() -> None:
    event = rt.client_session_update(SETTINGS)
    session = event["session"]
    assert event["type"] == "session.update" and session["type"] == "realtime"
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"} == session["audio"]["output"]["format"]
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert session["tools"] == [{"type": "function", "name": "t", "description": "d", "parameters": {"type": "object", "properties": {}}}]
    assert "input_audio_format" not in session and "modalities" not in session  # no beta keys
    assert rt.sent_event_kind(event["event_id"]) == "session.update"


@pytest.mark.parametrize(("model", "effort", "sent"), [
    ("gpt-realtime-2.1", "minimal", {"effort": "minimal"}),
    ("gpt-realtime-2", "low", {"effort": "low"}),
    ("gpt-realtime-2.1-mini", "high", {"effort": "high"}),
    ("gpt-realtime-2.1", None, None),  # no effort configured: no block
    ("gpt-realtime-1.5", "minimal", None),  # not a reasoning model: no block
    ("gpt-realtime", "minimal", None),
])
def test_reasoning_is_sent_only_to_reasoning_models(model: str, effort: str | None, sent: object) -> None:
    settings = rt.SessionSettings(model, "x", "marin", (), reasoning_effort=effort)
    assert rt.client_session_update(settings)["session"].get("reasoning") == sent


@pytest.mark.parametrize(("model", "reasoning"), [
    ("gpt-realtime-2", True), ("gpt-realtime-2.1", True), ("gpt-realtime-2.1-mini", True),
    ("gpt-realtime-2.1-2026-05-01", True), ("gpt-realtime-2.1-mini-2026-05-01", True),
    ("gpt-realtime", False), ("gpt-realtime-1.5", False), ("gpt-realtime-mini", False),
    ("gpt-realtime-2025-08-28", False),  # the gpt-realtime snapshot, not a "2" model
    ("gpt-realtime-mini-2025-12-15", False), ("gpt-4o-realtime-preview", False), ("gpt-realtime-2x", False),
])
def test_is_reasoning_model(model: str, reasoning: bool) -> None:
    assert rt.is_reasoning_model(model) is reasoning


def _echo(sent: rt.JSON) -> rt.JSON:
    """What a server that took everything sends back, with fields of its own added."""
    session = json.loads(json.dumps(sent["session"]))
    session.update({"id": "sess_1", "object": "realtime.session", "expires_at": 0, "tracing": None})
    session["model"] = "gpt-realtime-2025-08-28"  # the snapshot behind the alias
    session["audio"]["input"]["noise_reduction"] = None
    session["audio"]["input"]["turn_detection"]["idle_timeout_ms"] = None
    return session


def test_session_updated_that_took_everything_is_fine() -> None:
    sent = rt.client_session_update(SETTINGS)
    assert rt.check_session_updated(sent, _echo(sent)) is None
    assert rt.check_session_updated(sent["session"], _echo(sent)) is None  # the session alone will do


def test_session_updated_still_on_default_pcm_is_a_problem() -> None:
    sent = rt.client_session_update(SETTINGS)
    echo = _echo(sent)
    echo["audio"]["input"]["format"] = {"type": "audio/pcm", "rate": 24000}
    problem = rt.check_session_updated(sent, echo)
    assert problem == "input audio is audio/pcm@24000, asked audio/pcmu"


@pytest.mark.parametrize(("change", "expected"), [
    (lambda s: s["audio"]["output"].update(format={"type": "audio/pcma"}), "output audio is audio/pcma, asked audio/pcmu"),
    (lambda s: s["audio"].pop("output"), "output audio is nothing, asked audio/pcmu"),
    (lambda s: s["audio"]["output"].update(voice="alloy"), "voice is alloy, asked marin"),
    (lambda s: s.update(tools=[]), "tools are [], asked ['t']"),
    (lambda s: s.pop("tools"), "tools are [], asked ['t']"),
    (lambda s: s.update(model="gpt-realtime-mini"), "model is gpt-realtime-mini, asked gpt-realtime"),
    (lambda s: s["audio"]["input"].update(turn_detection=None), "turn detection is None, asked server_vad"),
])
def test_session_updated_differences(change: object, expected: str) -> None:
    sent = rt.client_session_update(SETTINGS)
    echo = _echo(sent)
    change(echo)  # type: ignore[operator]
    assert rt.check_session_updated(sent, echo) == expected


def test_session_updated_reports_every_problem_on_one_line() -> None:
    sent = rt.client_session_update(SETTINGS)
    echo = _echo(sent)
    echo["audio"]["input"]["format"] = echo["audio"]["output"]["format"] = {"type": "audio/pcm", "rate": 24000}
    problem = rt.check_session_updated(sent, echo)
    assert problem is not None and "\n" not in problem and problem.count(";") == 1


# --------------------------------------------------------------------------- client events


def test_client_events() -> None:
    append = rt.client_append_audio(b"\xff\x7f")
    assert append["type"] == "input_audio_buffer.append" and append["audio"] == "/38="
    assert rt.sent_event_kind(append["event_id"]) == "audio.append"
    out = rt.client_tool_output("call_1", '{"a":1}')
    assert out["item"] == {"type": "function_call_output", "call_id": "call_1", "output": '{"a":1}'}
    assert rt.sent_event_kind(out["event_id"]) == "tool_output"
    create = rt.client_response_create("progress", "di algo", tool_choice="none")
    assert create["response"] == {"metadata": {"kind": "progress"}, "instructions": "di algo", "tool_choice": "none"}
    assert rt.client_truncate("item_1", 480)["audio_end_ms"] == 480
    clear = rt.client_input_audio_clear()
    assert clear["type"] == "input_audio_buffer.clear" and rt.sent_event_kind(clear["event_id"]) == "audio.clear"


def test_cancel_with_and_without_response_id() -> None:
    bare = rt.client_response_cancel()
    assert bare["type"] == "response.cancel" and "response_id" not in bare
    assert rt.client_response_cancel("resp_1")["response_id"] == "resp_1"
    assert rt.sent_event_kind(bare["event_id"]) == "response.cancel"


def test_system_note_is_a_system_message_with_input_text() -> None:
    note = rt.client_system_note("3 de 5 routers respondieron")
    assert note["type"] == "conversation.item.create"
    assert note["item"] == {"type": "message", "role": "system",
                            "content": [{"type": "input_text", "text": "3 de 5 routers respondieron"}]}
    assert rt.sent_event_kind(note["event_id"]) == "system_note"


def test_per_response_instructions_keep_the_session_rules_first() -> None:
    rules = "Eres el asistente del NOC. Nunca inventes resultados."
    create = rt.client_response_create("report", "Resume el resultado.", session_instructions=rules)
    assert create["response"]["instructions"] == "Eres el asistente del NOC. Nunca inventes resultados.\n\nResume el resultado."
    # no per-response instructions: the session's apply by themselves, nothing is sent
    assert "instructions" not in rt.client_response_create("turn", session_instructions=rules)["response"]


def test_out_of_band_create_with_input_and_metadata() -> None:
    note = rt.system_message("Di: sigo consultando.")
    create = rt.client_response_create("progress", "Di la frase.", "none", out_of_band=True, input=[note],
                                       metadata={"call_id": "call_9"})
    response = create["response"]
    assert response["conversation"] == "none" and response["input"] == [note]
    assert response["metadata"] == {"kind": "progress", rt.OUT_OF_BAND_KEY: "true", "call_id": "call_9"}
    assert "conversation" not in rt.client_response_create("report")["response"]


@pytest.mark.parametrize("metadata", [
    {f"k{i}": "v" for i in range(16)},  # 17 keys with kind
    {"kind": "other"},  # ours
    {"n": 5},  # not a string
    {"k" * 65: "v"},
    {"k": "v" * 513},
])
def test_metadata_beyond_the_servers_limits_is_refused(metadata: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        rt.client_response_create("report", metadata=metadata)  # type: ignore[arg-type]


def test_metadata_at_the_limit_is_fine() -> None:
    create = rt.client_response_create("report", metadata={f"k{i}": "v" * 512 for i in range(15)})
    assert len(create["response"]["metadata"]) == 16


def test_event_ids_are_ours_by_prefix() -> None:
    assert rt.sent_event_kind("rc_12") == "response.create"
    assert rt.sent_event_kind("event_12") is None and rt.sent_event_kind("rc_x") is None
    assert rt.sent_event_kind(None) is None and rt.sent_event_kind("rc") is None
    renewed = rt.renew_event_id(rt.client_tool_output("c", "x"))
    assert rt.sent_event_kind(renewed["event_id"]) == "tool_output"


# --------------------------------------------------------------------------- server events


def test_parse_function_call_audio_and_done() -> None:
    item = {"id": "item_1", "type": "function_call", "status": "completed", "name": "trafico_sfp",
            "call_id": "call_1", "arguments": "{}"}
    parsed = rt.parse_server_event(json.dumps({"type": "response.output_item.done", "response_id": "resp_1", "item": item}))
    assert parsed == rt.FunctionCall("resp_1", "item_1", "call_1", "trafico_sfp", "{}")
    delta = {"type": "response.output_audio.delta", "response_id": "r", "item_id": "i", "delta": base64.b64encode(b"\x01\x02").decode()}
    assert rt.parse_server_event(json.dumps(delta)) == rt.AudioDelta("r", "i", b"\x01\x02")
    done = {"type": "response.done", "response": {"id": "r", "status": "cancelled", "metadata": {"kind": "report"}, "output": [item],
                                                  "status_details": {"type": "cancelled", "reason": "turn_detected"}}}
    parsed_done = rt.parse_server_event(json.dumps(done))
    assert isinstance(parsed_done, rt.ResponseDone) and parsed_done.metadata == {"kind": "report"}
    assert parsed_done.reason == "turn_detected" and parsed_done.error_code is None
    assert rt.parse_server_event('{"type":"rate_limits.updated","rate_limits":[]}') == rt.Unrecognised("rate_limits.updated")


def test_parse_failed_response_done_carries_the_error() -> None:
    # openai/openai-realtime-console#561: a model the key cannot use fails the response, no error event
    done = {"type": "response.done", "event_id": "event_1", "response": {
        "object": "realtime.response", "id": "resp_1", "status": "failed", "output": [], "metadata": None,
        "status_details": {"type": "failed", "error": {"type": "invalid_request_error", "code": "model_not_found",
                                                       "message": "The model `gpt-realtime` does not exist or you do not have access to it."}}}}
    parsed = rt.parse_server_event(json.dumps(done))
    assert isinstance(parsed, rt.ResponseDone)
    assert (parsed.status, parsed.error_code, parsed.error_type, parsed.reason) == ("failed", "model_not_found", "invalid_request_error", None)
    failure = rt.failure_of(parsed)
    assert failure is not None and rt.error_effect(failure) is rt.ErrorEffect.FATAL
    assert rt.failure_of(rt.ResponseDone("r", "incomplete", {}, reason="max_output_tokens")) is None


def test_parse_errors_with_type_param_and_null_event_id() -> None:
    raw = {"type": "error", "event_id": "event_1", "error": {"type": "invalid_request_error", "code": BUSY,
           "message": "Conversation already has an active response in progress: resp_1.", "param": None, "event_id": "rc_7"}}
    error = rt.parse_server_event(json.dumps(raw))
    assert isinstance(error, rt.ServerError)
    assert (error.code, error.type, error.param, error.event_id) == (BUSY, "invalid_request_error", None, "rc_7")
    bare = rt.parse_server_event('{"type":"error","error":{"type":"server_error","message":"boom","code":null,"event_id":null}}')
    assert bare == rt.ServerError("server_error", "boom", None) and isinstance(bare, rt.ServerError) and bare.type == "server_error"
    param = rt.parse_server_event('{"type":"error","error":{"type":"invalid_request_error","code":"unknown_parameter",'
                                  '"message":"Unknown parameter","param":"session.bogus"}}')
    assert isinstance(param, rt.ServerError) and param.param == "session.bogus" and param.event_id is None


def test_parse_item_added() -> None:
    added = {"type": "conversation.item.added", "previous_item_id": None, "item": {
        "id": "item_5", "object": "realtime.item", "type": "function_call_output", "call_id": "call_1", "output": "{}"}}
    assert rt.parse_server_event(json.dumps(added)) == rt.ItemAdded("item_5", "function_call_output", None, "call_1")
    message = {"type": "conversation.item.added", "item": {"id": "item_6", "type": "message", "role": "user", "content": []}}
    assert rt.parse_server_event(json.dumps(message)) == rt.ItemAdded("item_6", "message", "user", None)


def test_incomplete_function_call_is_not_executed() -> None:
    item = {"id": "i", "type": "function_call", "status": "incomplete", "name": "x", "call_id": "c", "arguments": "{"}
    event = rt.parse_server_event(json.dumps({"type": "response.output_item.done", "response_id": "r", "item": item}))
    assert isinstance(event, rt.Unrecognised)


@pytest.mark.parametrize("text", ["not json", "[]", '{"no":"type"}', '{"type":"response.created"}',
                                  '{"type":"response.output_audio.delta","response_id":"r","item_id":"i","delta":"@@@"}',
                                  '{"type":"response.done","response":{"id":5,"status":"completed"}}',
                                  '{"type":"error","error":"boom"}',
                                  '{"type":"conversation.item.added","item":{"type":"message"}}'])
def test_garbage_is_a_protocol_error(text: str) -> None:
    with pytest.raises(rt.RealtimeProtocolError):
        rt.parse_server_event(text)


# --------------------------------------------------------------------------- error effects

E = rt.ErrorEffect


def err(code: str, event_id: str | None = None, type: str = "invalid_request_error", message: str = "") -> rt.ServerError:
    return rt.ServerError(code, message, event_id, type=type)


@pytest.mark.parametrize(("error", "effect"), [
    # FATAL: whatever the event, even our pending create or our session.update
    (err("invalid_api_key"), E.FATAL), (err("insufficient_quota", "rc_1"), E.FATAL),
    (err("credit_balance_exhausted"), E.FATAL), (err("model_not_found", "su_1"), E.FATAL),
    (err("x", type="insufficient_quota"), E.FATAL), (err("beta_api_shape_disabled"), E.FATAL),
    # SESSION_EXPIRED, any event_id
    (err("session_expired"), E.SESSION_EXPIRED), (err("session_expired", "rc_1"), E.SESSION_EXPIRED),
    # SESSION_REFUSED: the error names a session.update of ours
    (err("invalid_value", "su_1"), E.SESSION_REFUSED), (err("unknown_parameter", "su_99"), E.SESSION_REFUSED),
    (err("server_error", "su_1", type="server_error"), E.SESSION_REFUSED),
    # RESPONSE_BUSY with or without event_id
    (err(BUSY, "rc_1"), E.RESPONSE_BUSY), (err(BUSY), E.RESPONSE_BUSY),
    # RATE_LIMITED by code or by type
    (err("rate_limit_exceeded", "rc_1", type="tokens"), E.RATE_LIMITED), (err("whatever", type="requests"), E.RATE_LIMITED),
    # RESPONSE_REFUSED: named, or null while a create is pending (the default for unknown codes then)
    (err("server_error", "rc_1", type="server_error"), E.RESPONSE_REFUSED),
    (err("server_error", None, type="server_error"), E.RESPONSE_REFUSED),
    (err("some_new_code"), E.RESPONSE_REFUSED),
    # ITEM_REFUSED: one of our conversation items
    (err("invalid_value", "fco_3"), E.ITEM_REFUSED), (err("invalid_value", "rp_3"), E.ITEM_REFUSED),
    (err("x", "sn_3"), E.ITEM_REFUSED),
    # HARMLESS: codes, and our events whose failure changes nothing, and errors naming nothing of ours
    (err("response_cancel_not_active"), E.HARMLESS), (err("response_cancel_not_active", "rx_4"), E.HARMLESS),
    (err("item_truncate_invalid_item_id"), E.HARMLESS), (err("item_delete_invalid_item_id"), E.HARMLESS),
    (err("input_audio_buffer_commit_empty"), E.HARMLESS), (err("invalid_value", "tr_4"), E.HARMLESS),
    (err("invalid_value", "ap_4"), E.HARMLESS), (err("invalid_value", "clr_4"), E.HARMLESS),
    (err("some_new_code", "rc_0"), E.HARMLESS),  # a create of ours that is no longer pending
    (err("some_new_code", "event_x"), E.HARMLESS),  # someone else's id
])
def test_error_effect_with_a_create_pending(error: rt.ServerError, effect: rt.ErrorEffect) -> None:
    assert rt.error_effect(error, session_update_id="su_1", pending_create_id="rc_1") is effect


@pytest.mark.parametrize(("error", "effect"), [
    (err("server_error", None, type="server_error"), E.HARMLESS),  # unknown, nothing pending: log only
    (err("some_new_code"), E.HARMLESS),
    (err("invalid_value", "custom_su"), E.SESSION_REFUSED),  # the id we were told is our session.update
    (err("session_expired"), E.SESSION_EXPIRED),
    (err(BUSY), E.RESPONSE_BUSY),
])
def test_error_effect_with_nothing_pending(error: rt.ServerError, effect: rt.ErrorEffect) -> None:
    assert rt.error_effect(error, session_update_id="custom_su") is effect


@pytest.mark.parametrize(("message", "seconds"), [
    ("Rate limit reached for gpt-realtime on requests per min (RPM): Limit 5000. Please try again in 12ms. Visit", 0.012),
    ("... requests per day (RPD): Limit 1000, Used 1000, Requested 1. Please try again in 1m26.4s. Visit", 86.4),
    ("Please try again in 20s.", 20.0),
    ("Rate limit reached.", None),
])
def test_retry_after(message: str, seconds: float | None) -> None:
    assert rt.retry_after_s(err("rate_limit_exceeded", message=message)) == (pytest.approx(seconds) if seconds else None)


# --------------------------------------------------------------------------- response gate


def created(rid: str, kind: str | None, **extra: str) -> rt.ResponseCreated:
    return rt.ResponseCreated(rid, {"kind": kind, **extra} if kind else {})


def done(rid: str, status: str = "completed", **details: str) -> rt.ResponseDone:
    return rt.ResponseDone(rid, status, {}, **details)  # type: ignore[arg-type]


def busy(create: rt.JSON | None) -> rt.ServerError:
    return rt.ServerError(BUSY, "busy", create["event_id"] if create else None)


def test_gate_releases_one_response_at_a_time() -> None:
    gate = rt.ResponseGate()
    greeting, progress = rt.client_response_create("greeting"), rt.client_response_create("progress")
    assert gate.request(greeting) == [greeting]
    assert gate.pending_create_id == greeting["event_id"]
    assert gate.request(progress) == []  # queued: the greeting is on the wire
    assert gate.on_created(created("r1", "greeting")) == []
    assert gate.kind_of("r1") == "greeting"
    assert gate.on_done(done("r1")) == [progress]
    gate.on_created(created("r2", "progress"))
    assert gate.on_done(done("r2")) == [] and not gate.busy


@pytest.mark.parametrize("echo", [True, False])
def test_gate_retries_a_create_refused_because_vad_answered_first(echo: bool) -> None:
    gate = rt.ResponseGate()
    report = rt.client_response_create("report")
    assert gate.request(report) == [report]
    gate.on_created(created("vad1", None))  # server VAD started a response at the same moment
    assert gate.on_error(busy(report if echo else None)) == []
    (retried,) = gate.on_done(done("vad1"))  # retried once the VAD turn is done, under a new event_id
    assert retried["response"] == report["response"] and retried["event_id"] != report["event_id"]
    assert gate.take_refused() == []
    assert gate.kind_of("vad1") is None  # nothing absorbable: the server's turn stays a plain turn


def test_gate_busy_refusal_without_a_known_active_response_waits_for_the_next_done() -> None:
    gate = rt.ResponseGate()
    report = rt.client_response_create("report")
    gate.request(report)
    assert gate.on_error(busy(None)) == [] and gate.busy  # "unknown" active until some done
    (retried,) = gate.on_done(done("whatever"))
    assert retried["response"] == report["response"]


@pytest.mark.parametrize("echo", [True, False])
def test_gate_hands_over_other_refusals_with_or_without_event_id(echo: bool) -> None:
    gate = rt.ResponseGate()
    greeting, turn = rt.client_response_create("greeting"), rt.client_response_create("turn")
    gate.request(greeting)
    gate.request(turn)
    error = rt.ServerError("server_error", "Sorry", greeting["event_id"] if echo else None, type="server_error")
    assert gate.on_error(error) == [turn]  # freed: the next request goes
    assert gate.take_refused() == [(greeting, error)]
    assert gate.take_refused() == []  # handed over once


def test_gate_ignores_harmless_errors_without_event_id() -> None:
    gate = rt.ResponseGate()
    report = rt.client_response_create("report")
    gate.request(report)
    for code in ("response_cancel_not_active", "item_truncate_invalid_item_id", "session_expired", "invalid_api_key"):
        assert gate.on_error(rt.ServerError(code, "", None)) == []
    assert gate.requested is report and gate.take_refused() == []
    assert gate.on_error(rt.ServerError("invalid_value", "", "tr_5")) == []  # about our truncate
    assert gate.requested is report


def test_gate_session_expired_naming_the_create_leaves_it_for_the_new_session() -> None:
    gate = rt.ResponseGate()
    report = rt.client_response_create("report")
    gate.request(report)
    assert gate.on_error(rt.ServerError("session_expired", "60 min", report["event_id"])) == []
    assert gate.take_refused() == []
    (again,) = gate.on_new_session()
    assert again["response"] == report["response"] and again["event_id"] != report["event_id"]


def test_gate_failed_response_of_ours_is_a_refusal() -> None:
    gate = rt.ResponseGate()
    report = rt.client_response_create("report")
    gate.request(report)
    gate.on_created(created("r1", "report"))
    assert gate.on_done(done("r1", "failed", error_code="insufficient_quota", error_type="insufficient_quota")) == []
    [(create, error)] = gate.take_refused()
    assert create is report and error.code == "insufficient_quota" and error.event_id == report["event_id"]
    assert rt.error_effect(error, pending_create_id=create["event_id"]) is rt.ErrorEffect.FATAL
    assert not gate.busy


@pytest.mark.parametrize(("status", "reason"), [("cancelled", "turn_detected"), ("incomplete", "max_output_tokens"),
                                                ("completed", None)])
def test_gate_cancelled_or_incomplete_are_not_refusals(status: str, reason: str | None) -> None:
    gate = rt.ResponseGate()
    gate.request(rt.client_response_create("report"))
    gate.on_created(created("r1", "report"))
    gate.on_done(rt.ResponseDone("r1", status, {"kind": "report"}, reason=reason))
    assert gate.take_refused() == [] and not gate.busy


def test_gate_failed_server_response_is_not_our_refusal() -> None:
    gate = rt.ResponseGate()
    gate.on_created(created("vad", None))
    gate.on_done(done("vad", "failed", error_code="server_error"))
    assert gate.take_refused() == []


def test_gate_drops_queued_progress_when_the_result_arrives() -> None:
    gate = rt.ResponseGate()
    gate.on_created(created("vad", None))
    gate.request(rt.client_response_create("progress"))
    gate.cancel_kind("progress")
    assert gate.on_done(done("vad")) == []


@pytest.mark.parametrize("error", [busy, lambda c: rt.ServerError("server_error", "", c["event_id"] if c else None)])
def test_gate_cancelled_kind_on_the_wire_is_not_asked_again(error: object) -> None:
    gate = rt.ResponseGate()
    progress, report = rt.client_response_create("progress"), rt.client_response_create("report")
    gate.request(progress)
    gate.cancel_kind("progress")  # the result came in while the update was on the wire
    assert gate.request(report) == []
    gate.on_created(created("vad", None))
    gate.on_error(error(progress))  # type: ignore[operator]
    assert gate.on_done(done("vad")) == [report] and gate.take_refused() == []


def test_gate_cancelled_kind_is_not_asked_again_in_a_new_session() -> None:
    gate = rt.ResponseGate()
    gate.request(rt.client_response_create("greeting"))
    gate.cancel_kind("greeting")
    assert gate.on_new_session() == [] and not gate.busy


def test_gate_out_of_band_creates_pass_and_never_hold_the_conversation() -> None:
    gate = rt.ResponseGate()
    report = rt.client_response_create("report")
    oob = rt.client_response_create("progress", "Di: sigo.", "none", out_of_band=True, input=[])
    gate.on_created(created("vad", None))
    assert gate.request(oob) == [oob]  # beside the active response
    assert gate.request(report) == []
    gate.on_created(created("oob1", "progress", out_of_band="true"))
    assert gate.active_id == "vad" and gate.kind_of("oob1") == "progress"
    assert gate.on_done(done("oob1")) == []  # its end frees nothing
    assert gate.on_done(done("vad")) == [report]


def test_gate_holds_while_the_caller_speaks() -> None:
    gate = rt.ResponseGate()
    assert gate.hold(True) == []
    report = rt.client_response_create("report")
    assert gate.request(report) == [] and gate.waiting
    assert gate.hold(False) == [report]


def test_gate_new_session_asks_again_for_the_create_on_the_wire() -> None:
    gate = rt.ResponseGate()
    greeting = rt.client_response_create("greeting")
    gate.request(greeting)
    (again,) = gate.on_new_session()
    assert again["response"] == greeting["response"] and gate.requested is again
    gate.on_created(created("g", "greeting"))
    assert (gate.active_id, gate.active_kind) == ("g", "greeting")
    assert gate.on_new_session() == [] and not gate.busy  # the response in progress is forgotten


# ---------------------------------------------------------------- absorption: the result is spoken once


def absorbing_gate() -> rt.ResponseGate:
    return rt.ResponseGate(absorbable=frozenset({"report"}))


def reported(gate: rt.ResponseGate, *rids: str) -> list[str]:
    return [rid for rid in rids if gate.kind_of(rid) == "report"]


def test_caller_speaking_when_the_result_comes_in() -> None:
    """The caller speaks while the result comes in: the report waits; when the caller stops, it
    goes out, and the server's answer to the caller (created right after) says it instead."""
    gate = absorbing_gate()
    gate.hold(True)
    report = rt.client_response_create("report")
    assert gate.request(report) == []
    assert gate.hold(False) == [report]
    assert gate.on_created(created("vad", None)) == []
    assert gate.on_error(busy(report)) == []
    assert gate.on_done(done("vad")) == [] and not gate.busy and not gate.waiting
    assert reported(gate, "vad") == ["vad"]


def test_server_response_absorbs_a_report_queued_behind_it() -> None:
    gate = absorbing_gate()
    gate.on_created(created("turn1", None))  # the server answering the caller (before the output)
    report = rt.client_response_create("report")
    assert gate.request(report) == []  # queued behind turn1
    assert gate.on_done(done("turn1")) == [report]  # turn1 started before: it does not absorb it
    gate.on_created(created("r", "report"))
    assert reported(gate, "turn1", "r") == ["r"]


def test_server_response_absorbs_the_queued_report_when_it_is_created_after() -> None:
    gate = absorbing_gate()
    gate.on_created(created("turn1", None))
    progress, report = rt.client_response_create("progress"), rt.client_response_create("report")
    gate.request(progress)
    gate.request(report)
    assert gate.on_done(done("turn1")) == [progress]
    gate.on_created(created("p", "progress"))
    gate.hold(True)  # the caller speaks over the progress update
    assert gate.on_done(done("p", "cancelled", reason="turn_detected")) == []  # held: the report waits
    assert gate.on_created(created("turn2", None)) == []  # the server answers first: it absorbs the report
    assert gate.kind_of("turn2") == "report" and gate.active_kind == "report" and gate.holds("report")
    assert not gate.queue and gate.hold(False) == []
    assert gate.on_done(done("turn2")) == [] and not gate.busy  # nothing is asked again
    assert reported(gate, "turn1", "p", "turn2") == ["turn2"]


@pytest.mark.parametrize("echo", [True, False])
def test_absorbed_create_on_the_wire_refused_as_busy_is_dropped(echo: bool) -> None:
    """Our report is on the wire when the server starts answering by itself (VAD, or the server
    answering the tool output on its own): the server refuses ours; it is not asked again."""
    gate = absorbing_gate()
    report = rt.client_response_create("report")
    assert gate.request(report) == [report]
    assert gate.on_created(created("auto", None)) == []
    assert gate.kind_of("auto") == "report" and gate.pending_create_id is None
    assert gate.on_error(busy(report if echo else None)) == []
    assert gate.on_done(done("auto")) == [] and not gate.busy and not gate.waiting
    assert gate.take_refused() == []
    assert reported(gate, "auto") == ["auto"]


def test_absorbed_create_accepted_after_all_is_cancelled_as_a_duplicate() -> None:
    """The server's response ended before our create reached it, so ours was accepted: it would
    say the result a second time. The gate cancels it."""
    gate = absorbing_gate()
    report = rt.client_response_create("report")
    gate.request(report)
    gate.on_created(created("auto", None))
    assert gate.busy  # our create is still unanswered: nothing else goes out
    assert gate.on_done(done("auto")) == []
    (cancel,) = gate.on_created(created("late", "report"))
    assert cancel == {"type": "response.cancel", "event_id": cancel["event_id"], "response_id": "late"}
    assert gate.kind_of("late") == rt.DUPLICATE and not gate.holds("report")
    assert gate.on_done(rt.ResponseDone("late", "cancelled", {"kind": "report"}, reason="client_cancelled")) == []
    assert gate.take_refused() == [] and not gate.busy
    assert reported(gate, "auto", "late") == ["auto"]


def test_report_created_before_the_server_turn_is_not_absorbed() -> None:
    """Ours was first: VAD cancels it (turn_detected) and answers the caller; nothing is queued,
    so that answer absorbs nothing and the report counts once."""
    gate = absorbing_gate()
    report = rt.client_response_create("report")
    gate.request(report)
    gate.on_created(created("r", "report"))
    gate.on_done(rt.ResponseDone("r", "cancelled", {"kind": "report"}, reason="turn_detected"))
    gate.on_created(created("turn", None))
    assert gate.on_done(done("turn")) == []
    assert reported(gate, "r", "turn") == ["r"]


def test_non_absorbable_kinds_are_not_absorbed() -> None:
    gate = absorbing_gate()
    progress = rt.client_response_create("progress")
    gate.request(progress)
    gate.on_created(created("vad", None))
    assert gate.kind_of("vad") is None
    gate.on_error(busy(progress))
    (again,) = gate.on_done(done("vad"))
    assert again["response"] == progress["response"]


def test_absorption_waits_for_the_tool_output_to_be_in_context() -> None:
    """A response the server created before our output reached it cannot say the result."""
    gate = absorbing_gate()
    report = rt.client_response_create("report")
    assert gate.request(report, after_output="call_1") == [report]
    gate.on_created(created("vad", None))  # created before the output: no item.added yet
    assert gate.kind_of("vad") is None and gate.requested is report
    gate.on_item_added(rt.ItemAdded("item_9", "function_call_output", None, "call_1"))
    gate.on_error(busy(report))
    (again,) = gate.on_done(done("vad"))  # asked again, under a new id, still tied to call_1
    gate.on_created(created("vad2", None))  # after the output: absorbs it
    assert gate.kind_of("vad2") == "report" and gate.requested is None
    gate.on_error(busy(again))
    assert gate.on_done(done("vad2")) == [] and not gate.busy


def test_absorption_needs_the_output_of_the_right_call() -> None:
    gate = absorbing_gate()
    gate.on_item_added(rt.ItemAdded("item_1", "function_call_output", None, "call_other"))
    gate.on_item_added(rt.ItemAdded("item_2", "message", "user", None))
    gate.on_created(created("busy", None))
    gate.request(rt.client_response_create("report"), after_output="call_1")
    gate.on_done(done("busy"))
    gate.on_created(created("vad", None))
    assert gate.kind_of("vad") is None


def test_failed_absorbing_response_hands_the_report_back() -> None:
    gate = absorbing_gate()
    gate.on_created(created("busy", None))
    report = rt.client_response_create("report")
    gate.request(report)
    gate.hold(True)
    gate.on_done(done("busy"))
    gate.on_created(created("vad", None))
    assert gate.kind_of("vad") == "report"
    gate.on_done(done("vad", "failed", error_code="server_error"))
    [(create, error)] = gate.take_refused()
    assert create is report and error.code == "server_error" and error.event_id == report["event_id"]


def test_failed_absorbing_response_hands_back_the_create_on_the_wire_when_refused() -> None:
    gate = absorbing_gate()
    report = rt.client_response_create("report")
    gate.request(report)
    gate.on_created(created("auto", None))
    gate.on_done(done("auto", "failed", error_code="server_error"))
    assert gate.take_refused() == [] and gate.busy  # the server has not answered our create yet
    gate.on_error(busy(report))
    [(create, error)] = gate.take_refused()
    assert create is report and error.code == "server_error"


def test_failed_absorbing_response_lets_the_late_create_speak() -> None:
    gate = absorbing_gate()
    report = rt.client_response_create("report")
    gate.request(report)
    gate.on_created(created("auto", None))
    gate.on_done(done("auto", "failed", error_code="server_error"))
    assert gate.on_created(created("late", "report")) == []  # not cancelled: nothing said it yet
    assert gate.kind_of("late") == "report" and gate.active_kind == "report"
    gate.on_done(done("late", "failed", error_code="server_error"))
    [(create, _)] = gate.take_refused()
    assert create is report

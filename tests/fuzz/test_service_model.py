"""A call whose model service sends hostile events (real sockets, virtual clock).

The model link is the other peer of a call: a broken or hostile Realtime server must not crash
the call either. A minimal server accepts the link, answers ``session.update`` with a faithful
``session.updated`` (so the call goes on), then sends a hypothesis-generated sequence: the real
event shapes with wrong values (unknown response and item ids, odd audio, function calls with
any name and any arguments, ``response.done`` for nothing, errors with every kind of code and
``event_id``, speech events in any order), mutated events, garbage text and binary frames. The
caller hangs up after a while. The call must end without a crash, a bug, or a traceback.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
import trio
from hypothesis import example, given
from hypothesis import strategies as st
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from mikrovoice.config import Settings
from mikrovoice.demo import DEMO_FLEET
from mikrovoice.realtime import protocol as rt
from mikrovoice.service import ServiceStats, serve_calls, start_simulated_peers
from mikrovoice.sim.asterisk import AsteriskCaller, CallerScript
from tests.fuzz.harness import name_of, run_virtual, start_capture
from tests.fuzz.hostile import HOSTILE_JSON_TEXT, JSON_VALUES, socket_settings
from tests.fuzz.test_decoders_realtime import HOSTILE_EVENTS

RESPONSES = st.sampled_from(["resp_1", "resp_2", "resp_3"])
#: The caller's item ids overlap the model's: a server that gives one id to both is logged
#: (model.bad_event), and the call goes on.
ITEMS = st.sampled_from(["item_1", "item_2", "item_3"])
USER_ITEMS = st.sampled_from(["item_u1", "item_u2", "item_1"])
CALLS = st.sampled_from(["call_1", "call_2"])
TOOLS = st.sampled_from(["dispositivos_activos", "trafico_interfaces", "estado_routers", "listar_routers",
                         "cancelar_consulta", "ping", "no_such_tool", ""])
ARGUMENTS = st.one_of(
    st.sampled_from(['{"router":"152.1"}', '{"routers":"todos"}', '{"router":"999.9"}', "{}", "", "{", "null", "[]",
                     '{"router":null}', '{"router":' + "9" * 5000 + "}"]),
    JSON_VALUES.map(json.dumps),
)
#: "greeting" too: a function call inside the greeting's response (against its tool_choice "none")
#: moves the call on, and the greeting's end is then ignored.
KINDS = st.sampled_from(["greeting", "report", "progress", "turn", "farewell", "x"]) | st.none()
ERROR_CODES = st.sampled_from(sorted(rt.FATAL_CODES | rt.HARMLESS_CODES | {
    rt.BUSY_CODE, rt.SESSION_EXPIRED_CODE, "rate_limit_exceeded", "server_error", "invalid_value", "x"}))
EVENT_IDS = st.sampled_from(["su_1", "rc_1", "rc_2", "fco_1", "ap_1", "tr_1", "rx_1", "sn_1", "x"]) | st.none()


def _response(rid: str, kind: str | None, status: str | None = None, output: list[Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"id": rid, "object": "realtime.response", "metadata": {"kind": kind} if kind else None,
                            "output": output or []}
    if status is not None:
        body["status"] = status
    return body


_call_item = st.builds(lambda iid, cid, name, args: {"id": iid, "type": "function_call", "status": "completed",
                                                      "call_id": cid, "name": name, "arguments": args},
                       ITEMS, CALLS, TOOLS, ARGUMENTS)
PLAUSIBLE = st.one_of(
    st.builds(lambda r, k: {"type": "response.created", "response": _response(r, k, "in_progress")}, RESPONSES, KINDS),
    st.builds(lambda r, i, b: {"type": "response.output_audio.delta", "response_id": r, "item_id": i,
                               "delta": base64.b64encode(b).decode()},
              RESPONSES, ITEMS, st.binary(max_size=3000) | st.integers(0, 9).map(lambda n: b"\xff" * n)),
    st.builds(lambda r, i, t: {"type": "response.output_audio_transcript.delta", "response_id": r, "item_id": i,
                               "delta": t}, RESPONSES, ITEMS, st.text(max_size=20)),
    st.builds(lambda r, i, t: {"type": "response.output_audio_transcript.done", "response_id": r, "item_id": i,
                               "transcript": t}, RESPONSES, ITEMS, st.text(max_size=40)),
    st.builds(lambda r, item: {"type": "response.output_item.done", "response_id": r, "item": item}, RESPONSES, _call_item),
    st.builds(lambda r, k, s, out, code: {"type": "response.done", "response": {
        **_response(r, k, s, out), "status_details": {"type": s, "reason": "turn_detected",
                                                      "error": {"type": "server_error", "code": code, "message": "m"}}}},
              RESPONSES, KINDS, st.sampled_from(["completed", "cancelled", "failed", "incomplete", "weird"]),
              st.lists(_call_item, max_size=2), ERROR_CODES),
    st.builds(lambda ms, i: {"type": "input_audio_buffer.speech_started", "audio_start_ms": ms, "item_id": i},
              st.integers(-10**6, 10**12), USER_ITEMS),
    st.builds(lambda ms, i: {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": ms, "item_id": i},
              st.integers(-10**6, 10**12), USER_ITEMS),
    st.builds(lambda code, eid, msg: {"type": "error", "error": {"type": "invalid_request_error", "code": code,
                                                               "message": msg, "param": None, "event_id": eid}},
              ERROR_CODES, EVENT_IDS, st.sampled_from(["m", "Please try again in 1m26.4s", "try again in 99999h"])),
    st.builds(lambda i, t, c: {"type": "conversation.item.added", "item": {"id": i, "type": t, "call_id": c}},
              ITEMS, st.sampled_from(["function_call_output", "message", "function_call", "x"]), CALLS),
    st.builds(lambda i, t: {"type": "conversation.item.input_audio_transcription.completed", "item_id": i,
                            "transcript": t}, USER_ITEMS, st.text(max_size=30)),
).map(json.dumps)
def _sendable(message: str | bytes) -> bool:
    if isinstance(message, bytes):
        return True
    try:
        return len(message.encode("utf-8")) < 1_000_000  # the link's MAX_MESSAGE is 16 MiB
    except UnicodeEncodeError:
        return False  # a lone surrogate: no WebSocket TEXT message can carry it


MODEL_MESSAGES = st.lists(
    st.tuples((PLAUSIBLE | HOSTILE_EVENTS | HOSTILE_JSON_TEXT).filter(_sendable),
              st.sampled_from([0.0, 0.0, 0.05, 0.3, 1.0])),
    max_size=25,
)


def hostile_model(messages: Sequence[tuple[str | bytes, float]], sent: list[int]) -> Any:
    """A Realtime server: a faithful session.updated, then ``messages`` (each after its pause)."""
    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            while True:  # the call's session.update comes first: answer it faithfully, or it ends the call
                update = json.loads(await ws.get_message())
                if update.get("type") == "session.update":
                    break
            await ws.send_message(json.dumps({"type": "session.updated", "event_id": "event_1",
                                              "session": update["session"]}))
            for message, pause in messages:
                await trio.sleep(pause)
                await ws.send_message(message)
                sent.append(1)
            while True:
                await ws.get_message()  # the call's events, until it closes
        except ConnectionClosed:
            pass

    return handler


def call_with(messages: Sequence[tuple[str | bytes, float]], caplog: pytest.LogCaptureFixture) -> ServiceStats:
    """One call whose model is ``hostile_model(messages)``; the caller hangs up after 8 s."""
    start_capture(caplog)
    stats = ServiceStats()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            settings = await start_simulated_peers(nursery, replace(Settings(), listen=("127.0.0.1", 0)), DEMO_FLEET)
            server = await nursery.start(serve_websocket, hostile_model(messages, []), "127.0.0.1", 0, None)
            settings = replace(settings, realtime_url=f"ws://127.0.0.1:{server.port}/v1/realtime")
            port = await nursery.start(serve_calls, settings, stats)
            await AsteriskCaller(CallerScript(hangup_at_s=8.0)).call("127.0.0.1", port)
            with trio.fail_after(30):
                await stats.calls[0].finished.wait()
            nursery.cancel_scope.cancel()

    run_virtual(main)
    return stats


def assert_no_crash(caplog: pytest.LogCaptureFixture, stats: ServiceStats) -> None:
    """No crash, no bug, no traceback (ERROR lines are allowed: the model's fault, logged as such)."""
    for r in caplog.records:
        assert name_of(r) not in ("call.crashed", "call.bug"), r.getMessage()
        assert r.exc_info is None, r.getMessage()
    assert stats.calls[0].ended and stats.calls[0].end_reason


@socket_settings(12)
@given(messages=MODEL_MESSAGES)
@example(messages=[('{"type":"input_audio_buffer.speech_started","audio_start_ms":NaN,"item_id":"i"}', 0.0),
                   ('{"type":"response.output_audio.delta","delta":"é","response_id":"r","item_id":"i"}', 0.0),
                   ('{"type":"session.updated","session":[1]}', 0.0), ("[" * 100_000, 0.0)])  # were crashes
@example(messages=[(json.dumps({"type": "response.output_item.done", "response_id": "resp_1", "item": {
    "id": "item_1", "type": "function_call", "status": "completed", "call_id": "call_1", "name": "dispositivos_activos",
    "arguments": '{"router":' + "9" * 5000 + "}"}}), 0.1)])  # arguments the JSON reader refuses
def test_a_hostile_model_service_never_crashes_the_call(
    messages: list[tuple[str | bytes, float]], caplog: pytest.LogCaptureFixture
) -> None:
    assert_no_crash(caplog, call_with(messages, caplog))


def _event(**fields: Any) -> tuple[str, float]:
    return json.dumps(fields), 0.05


def test_an_item_id_reused_for_the_caller_does_not_crash_the_call(caplog: pytest.LogCaptureFixture) -> None:
    messages = [
        _event(type="response.output_audio_transcript.done", response_id="resp_1", item_id="item_1", transcript="Hola"),
        _event(type="conversation.item.input_audio_transcription.completed", item_id="item_1", transcript="hola"),
    ]
    assert_no_crash(caplog, call_with(messages, caplog))


def test_a_tool_call_inside_the_greeting_does_not_end_the_call(caplog: pytest.LogCaptureFixture) -> None:
    call = {"id": "item_2", "type": "function_call", "status": "completed", "call_id": "call_1",
            "name": "dispositivos_activos", "arguments": '{"router":"152.1"}'}
    messages = [
        _event(type="response.created", response={"id": "resp_1", "status": "in_progress",
                                                   "metadata": {"kind": "greeting"}, "output": []}),
        _event(type="response.output_item.done", response_id="resp_1", item=call),
        _event(type="response.done", response={"id": "resp_1", "status": "completed",
                                                "metadata": {"kind": "greeting"}, "output": [call]}),
    ]
    assert_no_crash(caplog, call_with(messages, caplog))

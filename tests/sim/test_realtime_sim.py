"""The simulated Realtime server: it never crashes whatever the client does, it serves any Trio
stream, its faults look like the real service's failures to the production link, and its ledger
records what each session did."""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    open_websocket_url,
    wrap_client_stream,
)

from mikrovoice.cli import build_parser
from mikrovoice.realtime import protocol as rt
from mikrovoice.realtime.link import RealtimeLink
from mikrovoice.sim import voice
from mikrovoice.sim.brain import HOW_CAN_I_HELP, RESUME_PREFIX, STILL_QUERYING, ScriptedModel
from mikrovoice.sim.realtime import (
    CONNECT_TIMEOUT_S,
    FAULT_NAMES,
    FaultSpecError,
    ModelFaults,
    ModelLedger,
    SimModelConfig,
    TranscriptFile,
    abbreviate_audio,
    alaw_to_slin,
    downsample_24k,
    parse_faults,
    serve_model,
    serve_model_stream,
    slin_to_alaw,
    upsample_24k,
)
from mikrovoice.telephony import g711

AUTH = [(b"Authorization", b"Bearer sk-test")]
RESOURCE = "/v1/realtime?model=gpt-realtime"
GREETING = rt.client_response_create("greeting", 'Saluda. Di exactamente: "Hola, soy el asistente del NOC. ¿Qué quieres consultar?"')
PROBE = {"type": "input_audio_buffer.clear", "event_id": "probe"}
#: A probe whose answer says which event it answers: an error echoing this event_id.
MARKER = {"type": "conversation.item.retrieve", "event_id": "marker-7f3a", "item_id": "item_none"}


def interrupting(update: dict[str, Any]) -> dict[str, Any]:
    """The service leaves barge-in to itself (interrupt_response false); these tests exercise
    the server's own barge-in, as a client that leaves it on (the API's default) gets it."""
    update["session"]["audio"]["input"]["turn_detection"]["interrupt_response"] = True
    return update


def speech(text: str, silence_s: float = 1.0) -> bytes:
    """What a caller saying ``text`` sends: tone-voice speech, then silence so server VAD ends the turn."""
    return g711.slin_to_ulaw(voice.speak(text)) + g711.slin_to_ulaw(bytes(int(16000 * silence_s)))


async def say(ws: WebSocketConnection, text: str) -> None:
    audio = speech(text)
    for i in range(0, len(audio), 160):
        await ws.send_message(json.dumps(rt.client_append_audio(audio[i : i + 160])))


async def next_event(ws: WebSocketConnection, *types: str, within_s: float = 120.0) -> dict[str, Any]:
    """The next event of one of ``types``; fails after ``within_s`` virtual seconds (the server's pings
    would otherwise keep the virtual clock running forever)."""
    with trio.fail_after(within_s):
        while True:
            message = json.loads(await ws.get_message())
            if message["type"] in types:
                return message


@asynccontextmanager
async def memory_client(
    config: SimModelConfig = SimModelConfig(), ledger: ModelLedger | None = None,
    headers: list[tuple[bytes, bytes]] = AUTH, resource: str = RESOURCE,
) -> AsyncIterator[WebSocketConnection]:
    """A trio-websocket client talking to ``serve_model_stream`` over in-memory streams."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_model_stream, server_stream, config, ledger)
        ws = await wrap_client_stream(nursery, client_stream, "sim", resource, extra_headers=headers,
                                      message_queue_size=100_000, max_message_size=16 * 1024 * 1024)
        try:
            yield ws
        finally:
            nursery.cancel_scope.cancel()


def assert_error_shape(message: dict[str, Any], code: str, event_id: str | None, error_type: str = "invalid_request_error") -> None:
    assert message["type"] == "error" and isinstance(message["event_id"], str)
    assert set(message) == {"type", "event_id", "error"}
    error = message["error"]
    assert set(error) == {"type", "code", "message", "param", "event_id"}
    assert (error["type"], error["code"], error["event_id"]) == (error_type, code, event_id)
    assert isinstance(error["message"], str) and error["message"]


# --------------------------------------------------------------------------- section 1: never crash


async def test_hanging_up_during_the_greeting_ends_only_that_session(autojump_clock: trio.testing.MockClock) -> None:
    """The bug: a client closing while the greeting streams made a session task raise ConnectionClosed,
    which escaped the session's nursery as an ExceptionGroup and took the whole listener down.

    The close is timed to land on the server's next 25 ms audio tick (where the race lives) after
    the 1st..5th delta; before the fix about one such call in three killed the server, so 50
    calls on one server never all survived."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_model, "127.0.0.1", 0, SimModelConfig())
        url = f"ws://127.0.0.1:{server.port}{RESOURCE}"
        for i in range(50):
            async with open_websocket_url(url, extra_headers=AUTH) as ws:
                await next_event(ws, "session.created")
                await ws.send_message(json.dumps(GREETING))
                for _ in range(1 + i % 5):
                    await next_event(ws, "response.output_audio.delta")
                await trio.sleep(0.025 * (1 + i % 2))
            # the caller hung up; the next caller is still served
        async with open_websocket_url(url, extra_headers=AUTH) as ws:
            assert (await next_event(ws, "session.created"))["session"]["type"] == "realtime"
        nursery.cancel_scope.cancel()


async def test_every_hang_up_is_recorded_as_the_client_closing(autojump_clock: trio.testing.MockClock) -> None:
    ledger = ModelLedger()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_model, "127.0.0.1", 0, SimModelConfig(), ledger)
        assert server.ledger is ledger
        url = f"ws://127.0.0.1:{server.port}{RESOURCE}"
        for i in range(20):
            async with open_websocket_url(url, extra_headers=AUTH) as ws:
                await ws.send_message(json.dumps(GREETING))
                for _ in range(1 + i % 4):
                    await next_event(ws, "response.output_audio.delta")
                await trio.sleep(0.025)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert len(ledger.sessions) == 20 and ledger.all_crashes() == []
    for session in ledger.sessions:
        assert (session.end_reason, session.close_code) == ("client_closed", 1000)
        assert session.ended_at is not None
        [response] = session.responses.values()
        assert response.kind == "greeting" and response.status is None  # cut off: no response.done was sent


MALFORMED: list[tuple[str | bytes, str, str | None, str | None]] = [
    # (message, error code, param, echoed event_id)
    ("this is not json", "invalid_json", None, None),
    (b"\xff\xfe\x00", "invalid_json", None, None),
    (b'{"type": "input_audio_buffer.clear", "event_id": "b1"}', "invalid_json", None, None),  # a binary frame: never an event
    ('{"type": "input_audio_buffer.clear", "event_id": null}', "invalid_type", "event_id", None),
    ("[1, 2, 3]", "invalid_type", "event", None),
    ('"session.update"', "invalid_type", "event", None),
    ('{"event_id": "e1"}', "missing_required_parameter", "type", "e1"),
    ('{"type": 5, "event_id": "e2"}', "invalid_type", "type", "e2"),
    ('{"type": "session.update", "event_id": 7}', "invalid_type", "event_id", None),
    ('{"type": "no.such.event", "event_id": "e3"}', "invalid_value", "type", "e3"),
    ('{"type": "session_update", "event_id": "e4", "session": {"type": "realtime"}}', "invalid_value", "type", "e4"),
    ('{"type": "session.update", "event_id": "s1"}', "missing_required_parameter", "session", "s1"),
    ('{"type": "session.update", "event_id": "s2", "session": []}', "invalid_type", "session", "s2"),
    ('{"type": "session.update", "event_id": "s3", "session": {"audio": {}}}', "missing_required_parameter", "session.type", "s3"),
    ('{"type": "session.update", "event_id": "s4", "session": {"type": "transcription"}}', "invalid_value", "session.type", "s4"),
    ('{"type": "session.update", "event_id": "s5", "session": {"type": "realtime", "audio": 5}}', "invalid_type", "session.audio", "s5"),
    ('{"type": "session.update", "event_id": "s6", "session": {"type": "realtime", "audio": {"input": []}}}', "invalid_type", "session.audio.input", "s6"),
    ('{"type": "session.update", "event_id": "s7", "session": {"type": "realtime", "input_audio_format": "g711_ulaw"}}', "unknown_parameter", "session.input_audio_format", "s7"),
    ('{"type": "session.update", "event_id": "s8", "session": {"type": "realtime", "audio": {"input": {"format": {"type": "g711_ulaw"}}}}}', "invalid_value", "session.audio.input.format.type", "s8"),
    ('{"type": "session.update", "event_id": "s9", "session": {"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": "high"}}}}}', "invalid_type", "session.audio.input.turn_detection.threshold", "s9"),
    ('{"type": "session.update", "event_id": "s10", "session": {"type": "realtime", "tools": [{"type": "function"}]}}', "missing_required_parameter", "session.tools[0].name", "s10"),
    ('{"type": "input_audio_buffer.append", "event_id": "a1"}', "missing_required_parameter", "audio", "a1"),
    ('{"type": "input_audio_buffer.append", "event_id": "a2", "audio": 5}', "invalid_type", "audio", "a2"),
    ('{"type": "input_audio_buffer.append", "event_id": "a3", "audio": "not base64!!"}', "invalid_value", "audio", "a3"),
    ('{"type": "input_audio_buffer.commit", "event_id": "a4"}', "input_audio_buffer_commit_empty", None, "a4"),
    ('{"type": "conversation.item.create", "event_id": "i1", "item": []}', "invalid_type", "item", "i1"),
    ('{"type": "conversation.item.create", "event_id": "i2", "item": {"type": "function_call_output", "call_id": "call_x", "output": "{}"}}', "invalid_value", "item.call_id", "i2"),
    ('{"type": "conversation.item.create", "event_id": "i3", "item": {"type": "function_call_output", "call_id": "call_x", "output": 5}}', "invalid_type", "item.output", "i3"),
    ('{"type": "conversation.item.create", "event_id": "i4", "item": {"type": "function_call_output", "output": "{}"}}', "missing_required_parameter", "item.call_id", "i4"),
    ('{"type": "conversation.item.create", "event_id": "i5", "item": {"type": "message", "role": "assistant", "content": [{"type": "output_audio"}]}}', "invalid_value", "item.content[0].type", "i5"),
    ('{"type": "conversation.item.truncate", "event_id": "t1", "item_id": "item_x", "content_index": 0, "audio_end_ms": "x"}', "invalid_type", "audio_end_ms", "t1"),
    ('{"type": "conversation.item.truncate", "event_id": "t2", "item_id": "item_x", "content_index": 0, "audio_end_ms": 10}', "invalid_value", "item_id", "t2"),
    ('{"type": "conversation.item.delete", "event_id": "d1", "item_id": "item_x"}', "item_not_found", "item_id", "d1"),
    ('{"type": "response.create", "event_id": "r1", "response": 5}', "invalid_type", "response", "r1"),
    ('{"type": "response.create", "event_id": "r2", "response": {"metadata": {"kind": 5}}}', "invalid_type", "response.metadata.kind", "r2"),
    ('{"type": "response.create", "event_id": "r3", "response": {"modalities": ["audio"]}}', "unknown_parameter", "response.modalities", "r3"),
    ('{"type": "response.create", "event_id": "r4", "response": {"conversation": "other"}}', "invalid_value", "response.conversation", "r4"),
    ('{"type": "response.cancel", "event_id": "c1"}', "response_cancel_not_active", None, "c1"),
    ('{"type": "response.cancel", "event_id": "c2", "response_id": 3}', "invalid_type", "response_id", "c2"),
    # JSON that Python parses but a real server would not, or could not echo back
    ("[" * 100_000 + "]" * 100_000, "invalid_json", None, None),
    ('{"type": "session.update", "event_id": "n1", "session": {"type": "realtime", "tools": [{"type": "function", '
     '"name": "f", "parameters": ' + '{"a": ' * 900 + "1" + "}" * 900 + "}]}}", "invalid_json", None, None),
    ('{"type": "session.update", "event_id": "n2", "session": {"type": "realtime", "audio": {"input": '
     '{"turn_detection": {"type": "server_vad", "threshold": NaN}}}}}', "invalid_json", None, None),
    ('{"type": "session.update", "event_id": "n3", "session": {"type": "realtime", "instructions": "\\ud800"}}',
     "invalid_json", None, None),
    ('{"type": "response.create", "event_id": "n4", "response": {"metadata": {"kind": "\\udfff"}}}', "invalid_json", None, None),
]


async def test_malformed_events_get_error_events_and_the_session_goes_on(autojump_clock: trio.testing.MockClock) -> None:
    ledger = ModelLedger()
    async with memory_client(ledger=ledger) as ws:
        await next_event(ws, "session.created")
        for message, code, param, event_id in MALFORMED:
            await ws.send_message(message)
            error = await next_event(ws, "error")
            assert_error_shape(error, code, event_id)
            assert error["error"]["param"] == param, (message, error)
            await ws.send_message(json.dumps(PROBE))
            assert (await next_event(ws, "input_audio_buffer.cleared", "error"))["type"] == "input_audio_buffer.cleared"
    [session] = ledger.sessions
    assert [e.code for e in session.errors] == [code for _, code, _, _ in MALFORMED]
    assert session.crashes == [] and ledger.all_crashes() == []


# Templates of valid client events and the paths where hypothesis puts arbitrary JSON.
TEMPLATES: list[tuple[dict[str, Any], tuple[str, ...]]] = [
    ({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"},
      "turn_detection": {"type": "server_vad", "threshold": 0.5}}, "output": {"voice": "marin"}}, "tools": [], "tool_choice": "auto"}},
     ("session", "session.type", "session.audio", "session.audio.input", "session.audio.input.format",
      "session.audio.input.turn_detection", "session.audio.input.turn_detection.threshold", "session.audio.output",
      "session.audio.output.voice", "session.tools", "session.tool_choice", "session.instructions",
      "session.max_output_tokens", "session.truncation", "session.output_modalities")),
    ({"type": "input_audio_buffer.append", "audio": "/////w=="}, ("audio",)),
    ({"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": "call_1", "output": "{}"}},
     ("item", "item.type", "item.call_id", "item.output", "item.id", "previous_item_id")),
    ({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hola"}]}},
     ("item.role", "item.content", "item.status")),
    ({"type": "conversation.item.truncate", "item_id": "item_1", "content_index": 0, "audio_end_ms": 0},
     ("item_id", "content_index", "audio_end_ms")),
    ({"type": "response.create", "response": {"instructions": "x", "metadata": {"kind": "turn"}}},
     ("response", "response.metadata", "response.metadata.kind", "response.instructions", "response.conversation",
      "response.tool_choice", "response.max_output_tokens", "response.input")),
    ({"type": "response.cancel"}, ("response_id",)),
    ({"type": "input_audio_buffer.clear"}, ("type", "event_id")),
]

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=8,
)


def _with(template: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    event = json.loads(json.dumps(template))
    *parents, last = path.split(".")
    target = event
    for key in parents:
        target = target[key]
    target[last] = value
    return event


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_json_in_any_field_never_ends_the_session(data: st.DataObject) -> None:
    events = []
    for _ in range(data.draw(st.integers(1, 3))):
        template, paths = data.draw(st.sampled_from(TEMPLATES))
        events.append(_with(template, data.draw(st.sampled_from(paths)), data.draw(JSON_VALUES)))

    async def main() -> None:
        ledger = ModelLedger()
        async with memory_client(ledger=ledger) as ws:
            await next_event(ws, "session.created")
            for i, client_event in enumerate(events):
                client_event.setdefault("event_id", f"ev{i}")
                await ws.send_message(json.dumps(client_event))
                await ws.send_message(json.dumps(MARKER))
                while True:
                    message = await next_event(ws, "error")
                    if message["error"]["event_id"] == MARKER["event_id"]:  # the session is alive
                        assert_error_shape(message, "item_not_found", MARKER["event_id"])
                        break
                    try:
                        json.dumps(client_event, allow_nan=False)
                    except ValueError:  # NaN or Infinity: not JSON, so nothing in it can be echoed
                        assert_error_shape(message, "invalid_json", None)
                        continue
                    echoed = client_event["event_id"] if isinstance(client_event.get("event_id"), str) else None
                    assert_error_shape(message, message["error"]["code"], echoed)
                    assert message["error"]["code"] != "server_error"
        assert ledger.all_crashes() == []
        assert len(ledger.sessions) == 1

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(noise=st.binary(max_size=3000), cut=st.integers(0, 4000), chunk=st.integers(1, 500))
def test_any_audio_never_ends_the_session(noise: bytes, cut: int, chunk: int) -> None:
    """Noise, speech cut short, odd-sized appends: heard or not, the session goes on."""
    audio = speech("Dame el tráfico SFP")[:cut] + noise + speech("ajá")

    async def main() -> None:
        ledger = ModelLedger()
        async with memory_client(ledger=ledger) as ws:
            await ws.send_message(json.dumps(rt.client_session_update(rt.SessionSettings("gpt-realtime", "x", "marin", ()))))
            for i in range(0, len(audio), chunk):
                await ws.send_message(json.dumps(rt.client_append_audio(audio[i : i + chunk])))
            await ws.send_message(json.dumps(MARKER))
            while (await next_event(ws, "error"))["error"]["event_id"] != MARKER["event_id"]:
                pass
        assert ledger.all_crashes() == [] and ledger.sessions[0].end_reason is not None

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_a_simulator_bug_ends_only_its_own_session(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: ScriptedModel, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    ledger = ModelLedger()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_model, "127.0.0.1", 0, SimModelConfig(), ledger)
        url = f"ws://127.0.0.1:{server.port}{RESOURCE}"
        with monkeypatch.context() as patch:
            patch.setattr(ScriptedModel, "decide", broken)
            with pytest.raises(ConnectionClosed) as closed:
                async with open_websocket_url(url, extra_headers=AUTH) as ws:
                    await ws.send_message(json.dumps(GREETING))
                    while True:
                        await ws.get_message()
            assert closed.value.reason.code == 1006  # the crashed session's connection is just closed
        async with open_websocket_url(url, extra_headers=AUTH) as ws:  # the listener is alive
            await ws.send_message(json.dumps(GREETING))
            assert (await next_event(ws, "response.done"))["response"]["status"] == "completed"
        nursery.cancel_scope.cancel()
    crashed = [r for r in caplog.records if "sim.model.crashed" in r.getMessage()]
    assert len(crashed) == 1 and crashed[0].levelno == logging.ERROR and "boom" in crashed[0].getMessage()
    assert ledger.sessions[0].crashes == ["RuntimeError('boom')"] and ledger.sessions[0].end_reason == "crashed"
    assert ledger.sessions[1].crashes == [] and ledger.all_crashes() == ["RuntimeError('boom')"]


async def test_cancelling_the_server_is_never_swallowed(autojump_clock: trio.testing.MockClock) -> None:
    ledger = ModelLedger()
    client_stream, server_stream = trio.testing.memory_stream_pair()
    outcome: list[str] = []

    async def client(nursery: trio.Nursery) -> None:
        ws = await wrap_client_stream(nursery, client_stream, "sim", RESOURCE, extra_headers=AUTH)
        try:
            while True:
                await ws.get_message()
        except ConnectionClosed as exc:
            outcome.append(f"closed {exc.reason.code} at {trio.current_time():g}")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client, nursery)
        with trio.move_on_after(7) as scope:
            await serve_model_stream(server_stream, SimModelConfig(), ledger)
        assert scope.cancelled_caught and trio.current_time() == pytest.approx(7)
    assert outcome == ["closed 1006 at 7"]  # the stream was closed on the way out
    assert ledger.sessions[0].end_reason == "server_shutdown" and ledger.sessions[0].ended_at == pytest.approx(7)


# --------------------------------------------------------------------------- section 2: any stream


async def test_serve_model_stream_serves_a_memory_stream_and_closes_it(autojump_clock: trio.testing.MockClock) -> None:
    ledger = ModelLedger()
    client_stream, server_stream = trio.testing.memory_stream_pair()
    returned = trio.Event()

    async def server() -> None:
        await serve_model_stream(server_stream, SimModelConfig(), ledger)
        returned.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        ws = await wrap_client_stream(nursery, client_stream, "sim", RESOURCE, extra_headers=AUTH)
        created = await next_event(ws, "session.created")
        assert created["session"]["object"] == "realtime.session"
        await ws.send_message(json.dumps(GREETING))
        done = await next_event(ws, "response.done")
        assert done["response"]["status"] == "completed" and done["response"]["metadata"] == {"kind": "greeting"}
        await trio.sleep(3)
        await ws.aclose()
        with trio.fail_after(1):
            await returned.wait()
        nursery.cancel_scope.cancel()
    with pytest.raises(trio.ClosedResourceError):
        await server_stream.send_all(b"x")  # serve_model_stream closed its stream
    [session] = ledger.sessions
    assert (session.end_reason, session.close_code) == ("client_closed", 1000)
    assert session.started_at == 0 and session.ended_at == pytest.approx(trio.current_time())


@pytest.mark.parametrize("client_bytes", [b"", b"garbage that is not HTTP\r\n\r\n", b"GET /v1/realtime HTTP/1.1\r\n"])
async def test_a_client_that_never_upgrades_is_let_go(autojump_clock: trio.testing.MockClock, client_bytes: bytes) -> None:
    ledger = ModelLedger()
    client_stream, server_stream = trio.testing.memory_stream_pair()
    await client_stream.send_all(client_bytes)
    if not client_bytes:
        await client_stream.aclose()
    with trio.fail_after(CONNECT_TIMEOUT_S + 1):
        await serve_model_stream(server_stream, SimModelConfig(), ledger)
    assert ledger.sessions == [] and ledger.all_crashes() == []
    [handshake] = ledger.handshakes
    assert handshake.outcome == "timed_out"
    if not client_bytes:  # the client went away: no need to wait for the timeout
        assert handshake.reason == "client_gone" and trio.current_time() == 0


@pytest.mark.parametrize(("headers", "resource", "status", "code"), [
    ([], RESOURCE, 401, None),
    ([(b"Authorization", b"Bearer sk-wrong")], RESOURCE, 401, "invalid_api_key"),
    (AUTH, "/v1/other", 404, None),
])
async def test_refused_upgrades(
    autojump_clock: trio.testing.MockClock, headers: list[tuple[bytes, bytes]], resource: str, status: int, code: str | None,
) -> None:
    ledger = ModelLedger()
    refusals: list[ConnectionRejected] = []
    try:
        async with memory_client(SimModelConfig(api_key="sk-test"), ledger, headers, resource):
            pass
    except* ConnectionRejected as group:  # raised by the client's reader task, in its nursery
        refusals.extend(group.exceptions)  # type: ignore[arg-type]
    [refused] = refusals
    assert refused.status_code == status
    error = json.loads(refused.body or b"")["error"]
    assert set(error) == {"message", "type", "code", "param"} and error["code"] == code
    assert ledger.sessions == [] and [(h.outcome, h.status) for h in ledger.handshakes] == [("refused", status)]


async def test_the_beta_header_is_refused_after_the_upgrade(autojump_clock: trio.testing.MockClock) -> None:
    ledger = ModelLedger()
    async with memory_client(ledger=ledger, headers=AUTH + [(b"OpenAI-Beta", b"realtime=v1")]) as ws:
        error = json.loads(await ws.get_message())
        assert error["error"]["code"] == "beta_api_shape_disabled"
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason.code == 4000
    assert ledger.sessions[0].end_reason == "beta_refused"


# --------------------------------------------------------------------------- section 3: faults, seen by the production link


async def run_link(
    config: SimModelConfig, *, until: float = 120.0, actions: list[tuple[float, rt.JSON]] = (),  # type: ignore[assignment]
    api_key: str = "sk-test",
) -> tuple[Any, list[tuple[float, rt.ServerEvent]], ModelLedger]:
    """Run a RealtimeLink against ``serve_model`` (TCP) with ``config``; send ``actions`` at their times.

    Returns how the link closed (None: still up after ``until`` seconds), the events it delivered, the ledger."""
    ledger = ModelLedger()
    seen: list[tuple[float, rt.ServerEvent]] = []
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_model, "127.0.0.1", 0, config, ledger)
        link = RealtimeLink(f"ws://127.0.0.1:{server.port}{RESOURCE}", api_key, ping_interval_s=15, pong_timeout_s=10)
        send, receive = trio.open_memory_channel[rt.ServerEvent](100_000)

        async def collect() -> None:
            async for server_event in receive:
                seen.append((trio.current_time(), server_event))

        async def act() -> None:
            for at, client_event in actions:
                await trio.sleep_until(at)
                link.send(client_event)

        nursery.start_soon(collect)
        nursery.start_soon(act)
        closed = None  # still up at ``until``
        with trio.move_on_after(until):
            closed = await link.run(send)
        await trio.sleep(3)  # let the server notice
        nursery.cancel_scope.cancel()
    return closed, seen, ledger


async def test_silent_server_is_declared_dead_by_the_link(autojump_clock: trio.testing.MockClock) -> None:
    closed, seen, ledger = await run_link(SimModelConfig(faults=ModelFaults(silent_after_s=3.0)),
                                          actions=[(4.0, rt.client_response_create("turn"))])
    assert closed.reason == "no pong within 10 s: link dead" and not closed.by_us
    assert all(at <= 3.0 for at, _ in seen)  # nothing after the silence, not even the response asked at 4 s
    assert not any(isinstance(e, rt.ResponseCreated) for _, e in seen)
    [session] = ledger.sessions
    assert session.silenced_at == pytest.approx(session.started_at + 3.0)
    assert session.ended_at is not None  # the link's close ended the dead session: no task hangs
    assert session.end_reason == "connection_lost" and session.creates == []


async def test_dropped_connection_is_a_close_not_by_us(autojump_clock: trio.testing.MockClock) -> None:
    closed, seen, ledger = await run_link(SimModelConfig(faults=ModelFaults(drop_after_s=4.0)))
    assert not closed.by_us and "1006" in closed.reason, closed
    [session] = ledger.sessions
    assert session.end_reason == "dropped_by_fault"
    assert session.ended_at == pytest.approx(session.started_at + 4.0)


@pytest.mark.parametrize(("status", "code"), [
    (401, "invalid_api_key"), (403, "unsupported_country_region_territory"), (404, "model_not_found"),
    (429, "rate_limit_exceeded"), (500, "server_error"), (503, "server_error"),
])
async def test_refused_handshake_is_reported_by_the_link(autojump_clock: trio.testing.MockClock, status: int, code: str) -> None:
    closed, seen, ledger = await run_link(SimModelConfig(faults=ModelFaults(handshake_status=status)))
    assert f"HTTP {status} {code}" in closed.reason and not closed.by_us, closed
    assert seen == [] and ledger.sessions == []
    assert [(h.outcome, h.status, h.reason) for h in ledger.handshakes] == [("refused", status, "fault")]


async def test_stalled_handshake_times_out_in_the_link(autojump_clock: trio.testing.MockClock) -> None:
    closed, seen, ledger = await run_link(SimModelConfig(faults=ModelFaults(stall_handshake=True)))
    assert closed.reason == "no WebSocket handshake within 10 s" and not closed.by_us
    assert [(h.outcome, h.reason) for h in ledger.handshakes] == [("stalled", "fault")] and ledger.sessions == []


async def test_stalled_handshake_ends_when_the_client_leaves(autojump_clock: trio.testing.MockClock) -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    config = SimModelConfig(faults=ModelFaults(stall_handshake=True))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_model_stream, server_stream, config)
        await client_stream.send_all(b"GET /v1/realtime HTTP/1.1\r\nHost: sim\r\n\r\n")
        await trio.sleep(500)
        assert await _nothing_received(client_stream)  # never answered
        closed_at = trio.current_time()
        await client_stream.aclose()
    assert trio.current_time() == closed_at  # serve_model_stream returned as soon as the client closed


async def _nothing_received(stream: trio.abc.ReceiveStream) -> bool:
    with trio.move_on_after(1):
        await stream.receive_some()
        return False
    return True


@pytest.mark.parametrize("echo", [True, False])
async def test_refused_create_is_a_server_error(autojump_clock: trio.testing.MockClock, echo: bool) -> None:
    first, second = rt.client_response_create("greeting", 'Di exactamente: "Hola."'), rt.client_response_create("turn")
    faults = ModelFaults(refuse_creates=frozenset({1}), refusal_echoes_event_id=echo)
    closed, seen, ledger = await run_link(SimModelConfig(faults=faults), until=10, actions=[(1.0, first), (2.0, second)])
    errors = [e for _, e in seen if isinstance(e, rt.ServerError)]
    assert errors == [rt.ServerError("server_error", "The server had an error while processing your request. Sorry about that!",
                                     first["event_id"] if echo else None)]
    created = [e for _, e in seen if isinstance(e, rt.ResponseCreated)]
    assert [c.metadata for c in created] == [{"kind": "turn"}]
    [session] = ledger.sessions
    assert [(c.kind, c.outcome) for c in session.creates] == [("greeting", "refused"), ("turn", "started")]
    assert [(e.code, e.event_id) for e in session.errors] == [("server_error", first["event_id"] if echo else None)]


async def test_spurious_error_and_the_session_carries_on(autojump_clock: trio.testing.MockClock) -> None:
    create = rt.client_response_create("turn")
    closed, seen, ledger = await run_link(SimModelConfig(faults=ModelFaults(spurious_error_after_s=2.0)),
                                          until=10, actions=[(3.0, create)])
    [(at, error)] = [(at, e) for at, e in seen if isinstance(e, rt.ServerError)]
    assert at == pytest.approx(2.0, abs=0.01) and error.code == "invalid_value" and error.event_id is None
    assert any(isinstance(e, rt.ResponseDone) and e.status == "completed" for _, e in seen)
    assert closed is None  # the link is still up
    assert [(e.code, e.event_id) for e in ledger.sessions[0].errors] == [("invalid_value", None)]


async def test_no_fault_keeps_the_link_up(autojump_clock: trio.testing.MockClock) -> None:
    """Control for the fault tests: the same link, no fault, two minutes: still up."""
    closed, seen, ledger = await run_link(SimModelConfig(), until=120)
    assert closed is None and isinstance(seen[0][1], rt.SessionCreated)
    assert (ledger.sessions[0].end_reason, ledger.sessions[0].close_code) == ("client_closed", 1000)  # the link closed cleanly
    assert ledger.all_crashes() == []


# --------------------------------------------------------------------------- section 4/5: the ledger, and the brain in a session


async def test_the_ledger_records_calls_outputs_creates_responses_and_errors(autojump_clock: trio.testing.MockClock) -> None:
    ledger = ModelLedger()
    async with memory_client(ledger=ledger) as ws:
        await ws.send_message(json.dumps(rt.client_session_update(rt.SessionSettings("gpt-realtime", "x", "marin", ()))))
        await say(ws, "Dame los dispositivos activos del router 152 punto 1")
        call = await next_event(ws, "response.function_call_arguments.done")
        assert (call["name"], json.loads(call["arguments"])) == ("dispositivos_activos", {"router": "152.1"})
        issued_at = trio.current_time()
        await next_event(ws, "response.done")
        await trio.sleep(5)
        output = json.dumps({"router": "152.1", "dispositivos_activos": 2, "dispositivos": [{"nombre": "a"}, {"ip": "10.0.0.2"}]})
        await ws.send_message(json.dumps(rt.client_tool_output(call["call_id"], output)))
        await ws.send_message(json.dumps(rt.client_tool_output(call["call_id"], output)))  # a duplicate
        await ws.send_message(json.dumps(rt.client_tool_output("call_unknown", output)))
        report = rt.client_response_create("report", "Resume la salida.")
        await ws.send_message(json.dumps(report))
        await ws.send_message(json.dumps(rt.client_response_create("report")))  # one too many
        transcript = await next_event(ws, "response.output_audio_transcript.done")
        assert transcript["transcript"] == "El router 152.1 tiene 2 dispositivos activos, por ejemplo a, 10.0.0.2."
        await next_event(ws, "response.done")
    [session] = ledger.sessions
    [(call_id, record)] = session.calls.items()
    assert call_id == call["call_id"] and record.name == "dispositivos_activos"
    assert json.loads(record.arguments) == {"router": "152.1"} and record.issued_at == pytest.approx(issued_at)
    assert record.outputs == [pytest.approx(issued_at + 5)] * 2
    assert [(r.call_id, r.code) for r in session.rejected_outputs] == [(call["call_id"], "invalid_value"), ("call_unknown", "invalid_value")]
    assert [(c.kind, c.outcome, c.event_id) for c in session.creates] == [
        ("report", "started", report["event_id"]), ("report", "rejected", session.creates[1].event_id)]
    assert [(r.trigger, r.kind, r.status) for r in session.responses.values()] == [("vad", None, "completed"), ("create", "report", "completed")]
    assert [e.code for e in session.errors] == ["invalid_value", "invalid_value", "conversation_already_has_active_response"]


async def test_an_interrupted_answer_resumes_after_a_backchannel(autojump_clock: trio.testing.MockClock) -> None:
    """The caller says "ajá" over the model's preamble: the response is cancelled (turn_detected) before
    its function call; the model then says it again ("Como te decía: ...") and issues the call."""
    ledger = ModelLedger()
    async with memory_client(ledger=ledger) as ws:
        await ws.send_message(json.dumps(interrupting(rt.client_session_update(rt.SessionSettings("gpt-realtime", "x", "marin", ())))))
        await say(ws, "Dame los dispositivos activos del router 152 punto 1")
        await next_event(ws, "response.output_audio.delta")
        await say(ws, "ajá")
        cancelled = await next_event(ws, "response.done")
        assert cancelled["response"]["status"] == "cancelled"
        assert cancelled["response"]["status_details"]["reason"] == "turn_detected"
        assert not [i for i in cancelled["response"]["output"] if i["type"] == "function_call"]
        transcript = await next_event(ws, "response.output_audio_transcript.done")
        assert transcript["transcript"] == RESUME_PREFIX + "Un momento, consulto los dispositivos activos del router 152.1."
        call = await next_event(ws, "response.function_call_arguments.done")
        assert json.loads(call["arguments"]) == {"router": "152.1"}
        assert (await next_event(ws, "response.done"))["response"]["status"] == "completed"
    statuses = [(r.status, r.reason) for r in ledger.sessions[0].responses.values()]
    assert statuses == [("cancelled", "turn_detected"), ("completed", None)]
    assert [c.name for c in ledger.sessions[0].calls.values()] == ["dispositivos_activos"]


async def test_out_of_band_responses_run_beside_the_conversation(autojump_clock: trio.testing.MockClock) -> None:
    async with memory_client() as ws:
        await ws.send_message(json.dumps(GREETING))
        oob = {"type": "response.create", "event_id": "oob", "response": {
            "conversation": "none", "instructions": 'Di exactamente: "Un momento."', "metadata": {"kind": "progress"}}}
        await ws.send_message(json.dumps(oob))
        created = [await next_event(ws, "response.created"), await next_event(ws, "response.created")]
        assert [c["response"]["metadata"]["kind"] for c in created] == ["greeting", "progress"]
        await ws.send_message(json.dumps(GREETING))  # the default conversation is still busy
        error = await next_event(ws, "error")
        assert_error_shape(error, "conversation_already_has_active_response", GREETING["event_id"])


# --------------------------------------------------------------------------- a malformed session.update never takes anything down


BAD_SESSION_UPDATES = [
    {"type": "session.update", "session": 5},
    {"type": "session.update", "session": {"type": "realtime", "bogus": 1}},
    {"type": "session.update", "session": {"type": "realtime", "input_audio_format": "g711_ulaw", "voice": "alloy"}},
    {"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"format": "audio/pcmu"}}}},
    {"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad",
                                                                                                      "threshold": 1e400}}}}},
    {"type": "session.update", "session": {"type": "realtime", "tools": [{"type": "function", "name": "f", "parameters": 5}]}},
    {"type": "session.update", "session": {"type": "realtime", "audio": {"output": {"voice": {"id": 5}}}}},
    {"type": "session.update", "session": None},
    {"type": "session.update"},
]


async def test_malformed_session_updates_never_take_the_server_down(autojump_clock: trio.testing.MockClock) -> None:
    """Over TCP, as ``mikrovoice sim model`` serves: each malformed session.update gets its error,
    the session answers the next event, the listener serves the next caller, nothing crashed."""
    ledger = ModelLedger()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_model, "127.0.0.1", 0, SimModelConfig(), ledger)
        url = f"ws://127.0.0.1:{server.port}{RESOURCE}"
        async with open_websocket_url(url, extra_headers=AUTH) as ws:
            await next_event(ws, "session.created")
            for i, update in enumerate(BAD_SESSION_UPDATES):
                await ws.send_message(json.dumps({**update, "event_id": f"bad{i}"}).replace("Infinity", "1e400"))
                error = await next_event(ws, "error", "session.updated")
                echoed = None if error.get("error", {}).get("code") == "invalid_json" else f"bad{i}"  # 1e400: not parsed
                assert error["type"] == "error" and error["error"]["event_id"] == echoed, (update, error)
                await ws.send_message(json.dumps(PROBE))
                assert (await next_event(ws, "input_audio_buffer.cleared", "error"))["type"] == "input_audio_buffer.cleared"
            await ws.send_message(json.dumps(rt.client_session_update(rt.SessionSettings("gpt-realtime", "x", "marin", ()))))
            assert (await next_event(ws, "session.updated", "error"))["type"] == "session.updated"  # still configurable
        async with open_websocket_url(url, extra_headers=AUTH) as ws:
            await ws.send_message(json.dumps(GREETING))
            assert (await next_event(ws, "response.done"))["response"]["status"] == "completed"
        nursery.cancel_scope.cancel()
    assert ledger.all_crashes() == [] and len(ledger.sessions) == 2
    assert [e.code for e in ledger.sessions[0].errors] == [
        "invalid_type", "unknown_parameter", "unknown_parameter", "invalid_type", "invalid_json", "invalid_type",
        "invalid_type", "invalid_type", "missing_required_parameter"]


# --------------------------------------------------------------------------- audio formats


def collected_audio(events: list[dict[str, Any]], response_id: str | None = None) -> bytes:
    return b"".join(base64.b64decode(e["delta"]) for e in events
                    if e["type"] == "response.output_audio.delta" and response_id in (None, e["response_id"]))


async def events_until(ws: WebSocketConnection, *types: str, within_s: float = 120.0) -> list[dict[str, Any]]:
    """Every event up to and including the next one of ``types``."""
    seen = []
    with trio.fail_after(within_s):
        while True:
            seen.append(json.loads(await ws.get_message()))
            if seen[-1]["type"] in types:
                return seen


async def send_audio(ws: WebSocketConnection, audio: bytes, frame: int) -> None:
    for i in range(0, len(audio), frame):
        await ws.send_message(json.dumps({"type": "input_audio_buffer.append",
                                          "audio": base64.b64encode(audio[i : i + frame]).decode()}))


QUESTION = "Dame los dispositivos activos del router 152 punto 1"
PREAMBLE = "Un momento, consulto los dispositivos activos del router 152.1."


async def test_a_client_that_sets_no_format_gets_pcm16_at_24_khz_both_ways(autojump_clock: trio.testing.MockClock) -> None:
    async with memory_client() as ws:
        created = await next_event(ws, "session.created")
        assert created["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        pcm = voice.speak(QUESTION) + bytes(16000)
        await send_audio(ws, upsample_24k(pcm), 960)  # 20 ms of PCM16 at 24 kHz per append
        events = await events_until(ws, "response.done")
        done = events[-1]["response"]
        assert done["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
        [call] = [i for i in done["output"] if i["type"] == "function_call"]
        assert json.loads(call["arguments"]) == {"router": "152.1"}  # it understood the 24 kHz question
        audio = collected_audio(events)
        assert len(audio) == 48 * round(voice.duration_s(PREAMBLE) * 1000)  # 48 bytes per ms
        assert voice.hear(downsample_24k(audio)) == PREAMBLE


async def test_mu_law_sent_to_a_pcm16_session_is_noise_to_it(autojump_clock: trio.testing.MockClock) -> None:
    """The other side of the default: audio is taken in the negotiated format, not guessed."""
    async with memory_client() as ws:
        await send_audio(ws, speech(QUESTION), 160)
        await ws.send_message(json.dumps(MARKER))
        events = await events_until(ws, "error")
        assert not [e for e in events if e["type"] == "response.function_call_arguments.done"]
        assert not [e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed"]


async def test_a_law_both_ways(autojump_clock: trio.testing.MockClock) -> None:
    async with memory_client() as ws:
        await ws.send_message(json.dumps({"type": "session.update", "session": {"type": "realtime", "audio": {
            "input": {"format": {"type": "audio/pcma"}}, "output": {"format": {"type": "audio/pcma"}}}}}))
        updated = await next_event(ws, "session.updated")
        assert updated["session"]["audio"]["output"]["format"] == {"type": "audio/pcma"}
        await send_audio(ws, slin_to_alaw(voice.speak(QUESTION) + bytes(16000)), 160)
        events = await events_until(ws, "response.done")
        audio = collected_audio(events)
        assert len(audio) == 8 * round(voice.duration_s(PREAMBLE) * 1000)
        assert voice.hear(alaw_to_slin(audio)) == PREAMBLE


async def test_the_format_is_the_last_accepted_session_updates_and_a_response_may_choose_its_own(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_client() as ws:
        await ws.send_message(json.dumps(rt.client_session_update(rt.SessionSettings("gpt-realtime", "x", "marin", ()))))
        await next_event(ws, "session.updated")  # mu-law both ways
        await ws.send_message(json.dumps({"type": "session.update", "event_id": "bad", "session": {"type": "realtime", "audio": {
            "output": {"format": {"type": "audio/pcm"}}, "input": {"format": {"type": "audio/pcma"}, "vad": {}}}}}))
        assert (await next_event(ws, "error"))["error"]["event_id"] == "bad"  # refused: nothing of it applies
        await ws.send_message(json.dumps(rt.client_response_create("greeting", 'Di exactamente: "Hola."')))
        events = await events_until(ws, "response.done")
        assert events[-1]["response"]["audio"]["output"]["format"] == {"type": "audio/pcmu"}
        assert voice.hear(g711.ulaw_to_slin(collected_audio(events))) == "Hola."
        await ws.send_message(json.dumps({"type": "response.create", "response": {
            "instructions": 'Di exactamente: "Chao."', "audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000}}}}}))
        events = await events_until(ws, "response.done")
        assert voice.hear(downsample_24k(collected_audio(events))) == "Chao."
        await say(ws, QUESTION)  # and the input is still mu-law
        assert json.loads((await next_event(ws, "response.function_call_arguments.done"))["arguments"]) == {"router": "152.1"}


# --------------------------------------------------------------------------- items and cancelled responses


async def test_response_items_are_added_to_the_conversation_in_order(autojump_clock: trio.testing.MockClock) -> None:
    async with memory_client() as ws:
        await ws.send_message(json.dumps(rt.client_session_update(rt.SessionSettings("gpt-realtime", "x", "marin", ()))))
        await say(ws, QUESTION)
        events = await events_until(ws, "response.done")
        added = [e for e in events if e["type"] == "conversation.item.added"]
        done = [e for e in events if e["type"] == "conversation.item.done"]
        user, message, call = (e["item"] for e in added)
        assert (user["role"], message["role"], call["type"]) == ("user", "assistant", "function_call")
        assert [e["previous_item_id"] for e in added] == [None, user["id"], message["id"]]
        assert [e["item"]["id"] for e in done] == [user["id"], message["id"], call["id"]]
        assert message["status"] == "in_progress" and done[1]["item"]["status"] == "completed"
        assert done[1]["item"]["content"] == [{"type": "output_audio", "transcript": PREAMBLE}]
        kinds = [e["type"] for e in events if e.get("item_id") == message["id"] or e.get("item", {}).get("id") == message["id"]]
        assert kinds[:3] == ["response.output_item.added", "conversation.item.added", "response.content_part.added"]
        assert kinds[-5:] == ["response.output_audio.done", "response.output_audio_transcript.done",
                              "response.content_part.done", "response.output_item.done", "conversation.item.done"]


@pytest.mark.parametrize("how", ["barge_in", "cancel"])
async def test_a_cancelled_response_closes_what_it_opened(autojump_clock: trio.testing.MockClock, how: str) -> None:
    text = "Esta es una respuesta larga que nadie va a escuchar entera porque la van a cortar."
    async with memory_client() as ws:
        await ws.send_message(json.dumps(interrupting(rt.client_session_update(rt.SessionSettings("gpt-realtime", "x", "marin", ())))))
        await ws.send_message(json.dumps({"type": "response.create", "response": {"instructions": f'Di exactamente: "{text}"'}}))
        before = await events_until(ws, "response.output_audio_transcript.delta")
        if how == "barge_in":
            await say(ws, "espera")
        else:
            await ws.send_message(json.dumps({"type": "response.cancel"}))
        after = await events_until(ws, "response.done")
    item_id = next(e for e in before if e["type"] == "response.output_item.added")["item"]["id"]
    closing = [e for e in after if e.get("item_id") == item_id or e.get("item", {}).get("id") == item_id]
    assert [e["type"] for e in closing if "delta" not in e["type"]] == [
        "response.output_audio.done", "response.output_audio_transcript.done", "response.content_part.done",
        "response.output_item.done", "conversation.item.done"]
    heard = "".join(e["delta"] for e in before + after
                    if e["type"] == "response.output_audio_transcript.delta" and e["item_id"] == item_id)
    transcript = next(e for e in closing if e["type"] == "response.output_audio_transcript.done")["transcript"]
    assert transcript == heard and text.startswith(transcript) and len(transcript) < len(text)
    item = next(e for e in closing if e["type"] == "response.output_item.done")["item"]
    assert item["status"] == "incomplete" and item["content"] == [{"type": "output_audio", "transcript": transcript}]
    done = after[-1]["response"]
    reason = "turn_detected" if how == "barge_in" else "client_cancelled"
    assert (done["status"], done["status_details"]) == ("cancelled", {"type": "cancelled", "reason": reason})
    assert done["output"] == [item]


async def test_out_of_band_responses_read_their_input_and_stay_out_of_the_conversation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_client() as ws:
        await ws.send_message(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": QUESTION}]}}))
        question = (await next_event(ws, "conversation.item.done"))["item"]["id"]
        await ws.send_message(json.dumps({"type": "response.create", "response": {"instructions": 'Di exactamente: "Hola."'}}))
        await ws.send_message(json.dumps({"type": "response.create", "event_id": "oob", "response": {
            "conversation": "none", "input": [{"type": "item_reference", "id": question}], "metadata": {"kind": "aside"}}}))
        await ws.send_message(json.dumps({"type": "response.create", "event_id": "busy"}))
        events = await events_until(ws, "response.done")
        events += await events_until(ws, "response.done")
        created = [e["response"] for e in events if e["type"] == "response.created"]
        assert [c["conversation_id"] is None for c in created] == [False, True]  # both ran at once
        [error] = [e for e in events if e["type"] == "error"]
        assert_error_shape(error, "conversation_already_has_active_response", "busy")
        oob = next(e["response"] for e in events if e["type"] == "response.done" and e["response"]["metadata"] == {"kind": "aside"})
        oob_ids = {i["id"] for i in oob["output"]}
        assert [i["type"] for i in oob["output"]] == ["message", "function_call"]  # it answered the referenced question
        assert not [e for e in events if e["type"].startswith("conversation.item.") and e["item"]["id"] in oob_ids]
        await ws.send_message(json.dumps({"type": "conversation.item.retrieve", "event_id": "r", "item_id": sorted(oob_ids)[0]}))
        assert_error_shape(await next_event(ws, "error"), "item_not_found", "r")
        await ws.send_message(json.dumps({"type": "response.create", "event_id": "ref", "response": {
            "conversation": "none", "input": [{"type": "item_reference", "id": "item_nope"}]}}))
        error = await next_event(ws, "error")
        assert_error_shape(error, "item_not_found", "ref")
        assert error["error"]["param"] == "response.input[0].id"


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize(("spec", "faults"), [
    ("handshake=401", ModelFaults(handshake_status=401)),
    ("stall-handshake", ModelFaults(stall_handshake=True)),
    ("drop-at=12.5", ModelFaults(drop_after_s=12.5)),
    ("drop-on=response.done#2", ModelFaults(drop_on=("response.done", 2))),
    ("drop-on=conversation.item.create", ModelFaults(drop_on=("conversation.item.create", 1))),
    ("silent-at=3", ModelFaults(silent_after_s=3.0)),
    ("deaf-pings", ModelFaults(deaf_pings_after_s=0.0)),
    ("deaf-pings=7", ModelFaults(deaf_pings_after_s=7.0)),
    ("refuse-session-update", ModelFaults(refuse_every_session_update=True)),
    ("refuse-session-update=1,3", ModelFaults(refuse_session_updates=frozenset({1, 3}))),
    ("refuse-create=2", ModelFaults(refuse_creates=frozenset({2}))),
    ("error-at=30:server_error", ModelFaults(errors_at=((30.0, "server_error"),))),
    ("expire-at=.5", ModelFaults(expire_after_s=0.5)),
    ("respond-after-output", ModelFaults(respond_after_output=True)),
])
def test_fault_specs(spec: str, faults: ModelFaults) -> None:
    assert parse_faults([spec]) == faults


def test_fault_specs_combine() -> None:
    faults = parse_faults(["error-at=9:rate_limit_exceeded", "drop-at=20", "error-at=3:server_error", "deaf-pings=1"])
    assert faults == ModelFaults(drop_after_s=20.0, deaf_pings_after_s=1.0,
                                 errors_at=((3.0, "server_error"), (9.0, "rate_limit_exceeded")))


@pytest.mark.parametrize("spec", ["", "nope", "drop-at", "drop-at=x", "drop-at=-1", "handshake=200", "handshake=abc",
                                  "drop-on=response.don", "drop-on=response.done#0", "drop-on=response.done#x",
                                  "refuse-create=0", "refuse-create=a,b", "error-at=5", "error-at=x:server_error",
                                  "error-at=5:Bad Code", "stall-handshake=1", "respond-after-output=yes", "refuse-session-update=",
                                  "expire-at=soon"])
def test_bad_fault_specs_say_why_in_one_line(spec: str) -> None:
    with pytest.raises(FaultSpecError) as error:
        parse_faults([spec])
    message = str(error.value)
    assert message and "\n" not in message


def test_the_cli_refuses_a_bad_fault_with_one_line_and_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["sim", "model", "--listen", "127.0.0.1:0", "--fault", "drop-at=20",
                                      "--fault", "drop-at=soon"])
    assert args.run(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "drop-at" in err and "Traceback" not in err


def test_the_cli_help_explains_every_fault(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["sim", "model", "--help"])
    assert exited.value.code == 0
    help_text = capsys.readouterr().out
    for name in FAULT_NAMES:
        assert f"\n  {name}" in help_text, name
    assert "--transcript FILE" in help_text and "<N bytes base64>" in help_text


async def test_drop_on_a_server_event(autojump_clock: trio.testing.MockClock) -> None:
    ledger = ModelLedger()
    config = SimModelConfig(faults=ModelFaults(drop_on=("response.done", 2)))
    async with memory_client(config, ledger) as ws:
        for _ in range(2):
            await ws.send_message(json.dumps(GREETING))
            await next_event(ws, "response.done")  # the second one is sent, then the line drops
        with pytest.raises(ConnectionClosed) as closed:
            await next_event(ws, "response.done")
        assert closed.value.reason.code == 1006
    [session] = ledger.sessions
    assert session.end_reason == "dropped_by_fault" and len(session.responses) == 2


async def test_drop_on_a_client_event(autojump_clock: trio.testing.MockClock) -> None:
    ledger = ModelLedger()
    config = SimModelConfig(faults=ModelFaults(drop_on=("conversation.item.create", 2)))
    item = {"type": "conversation.item.create", "item": {"type": "message", "role": "system",
                                                         "content": [{"type": "input_text", "text": "nota"}]}}
    async with memory_client(config, ledger) as ws:
        await ws.send_message(json.dumps(item))
        await next_event(ws, "conversation.item.done")
        await ws.send_message(json.dumps(item))  # never answered: the line drops as it arrives
        with pytest.raises(ConnectionClosed):
            await next_event(ws, "conversation.item.done")
    assert ledger.sessions[0].end_reason == "dropped_by_fault"


async def test_a_deaf_server_answers_no_pings_but_still_talks(autojump_clock: trio.testing.MockClock) -> None:
    async with memory_client(SimModelConfig(faults=ModelFaults(deaf_pings_after_s=3.0))) as ws:
        with trio.fail_after(1):
            await ws.ping()  # answered before 3 s
        await trio.sleep(3)
        with trio.move_on_after(30) as waited:
            await ws.ping()
        assert waited.cancelled_caught  # no pong
        await ws.send_message(json.dumps(GREETING))
        assert (await next_event(ws, "response.done"))["response"]["status"] == "completed"  # events still flow


async def test_a_refused_session_update_keeps_the_previous_config(autojump_clock: trio.testing.MockClock) -> None:
    ledger = ModelLedger()
    config = SimModelConfig(faults=ModelFaults(refuse_session_updates=frozenset({1})))
    update = rt.client_session_update(rt.SessionSettings("gpt-realtime", "x", "coral", ()))
    async with memory_client(config, ledger) as ws:
        await ws.send_message(json.dumps(update))
        error = await next_event(ws, "error", "session.updated")
        assert_error_shape(error, "invalid_value", update["event_id"])
        assert error["error"]["param"] == "session.audio.output.voice" and "'coral'" in error["error"]["message"]
        await ws.send_message(json.dumps(rt.client_response_create("turn", "x", tool_choice="none")))
        done = await next_event(ws, "response.done")  # the defaults still hold: PCM16 24 kHz, marin
        assert done["response"]["audio"]["output"] == {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"}
        await ws.send_message(json.dumps({**update, "session": {**update["session"], "audio": {
            **update["session"]["audio"], "output": {"format": {"type": "audio/pcmu"}}}}}))  # the second one goes through
        updated = await next_event(ws, "session.updated", "error")
        assert updated["type"] == "session.updated" and updated["session"]["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    assert (ledger.sessions[0].session_updates, ledger.sessions[0].refused_session_updates) == (1, 1)


async def test_every_session_update_refused(autojump_clock: trio.testing.MockClock) -> None:
    config = SimModelConfig(faults=ModelFaults(refuse_every_session_update=True))
    async with memory_client(config) as ws:
        for _ in range(3):
            await ws.send_message(json.dumps(rt.client_session_update(rt.SessionSettings("gpt-realtime", "x", "marin", ()))))
            assert (await next_event(ws, "error", "session.updated"))["type"] == "error"


async def test_errors_at_given_times_and_the_session_goes_on(autojump_clock: trio.testing.MockClock) -> None:
    faults = ModelFaults(errors_at=((2.0, "server_error"), (4.0, "rate_limit_exceeded")))
    async with memory_client(SimModelConfig(faults=faults)) as ws:
        first, second = await next_event(ws, "error"), await next_event(ws, "error")
        assert trio.current_time() == pytest.approx(4.0)
        assert_error_shape(first, "server_error", None, error_type="server_error")
        assert_error_shape(second, "rate_limit_exceeded", None)
        await ws.send_message(json.dumps(GREETING))
        assert (await next_event(ws, "response.done"))["response"]["status"] == "completed"


@pytest.mark.parametrize(("config", "at", "minutes"), [
    (SimModelConfig(), 3600.0, "60"),
    (SimModelConfig(max_session_s=120.0), 120.0, "2"),
    (SimModelConfig(faults=ModelFaults(expire_after_s=12.5)), 12.5, "60"),
])
async def test_the_session_expires(autojump_clock: trio.testing.MockClock, config: SimModelConfig, at: float, minutes: str) -> None:
    ledger = ModelLedger()
    async with memory_client(config, ledger) as ws:
        error = await next_event(ws, "error", within_s=at + 10)
        assert trio.current_time() == pytest.approx(at)
        assert_error_shape(error, "session_expired", None)
        assert error["error"]["message"] == f"Your session hit the maximum duration of {minutes} minutes."
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason.code == 1001
    [session] = ledger.sessions
    assert (session.end_reason, session.close_code) == ("expired", 1001)


async def test_a_function_call_output_may_start_a_response_by_itself(autojump_clock: trio.testing.MockClock) -> None:
    ledger = ModelLedger()
    async with memory_client(SimModelConfig(faults=ModelFaults(respond_after_output=True)), ledger) as ws:
        await ws.send_message(json.dumps(rt.client_session_update(rt.SessionSettings("gpt-realtime", "x", "marin", ()))))
        await say(ws, QUESTION)
        call = await next_event(ws, "response.function_call_arguments.done")
        await next_event(ws, "response.done")
        output = json.dumps({"router": "152.1", "dispositivos_activos": 2, "dispositivos": [{"nombre": "a"}]})
        await ws.send_message(json.dumps(rt.client_tool_output(call["call_id"], output)))
        report = rt.client_response_create("report")
        await ws.send_message(json.dumps(report))  # as a client would: it collides with the server's own
        events = await events_until(ws, "response.done")
    assert events[-1]["response"]["metadata"] is None  # the server's response, not the client's
    assert [e["error"]["code"] for e in events if e["type"] == "error"] == ["conversation_already_has_active_response"]
    transcript = next(e for e in events if e["type"] == "response.output_audio_transcript.done")["transcript"]
    assert transcript == "El router 152.1 tiene 2 dispositivos activos, por ejemplo a."
    assert [r.trigger for r in ledger.sessions[0].responses.values()] == ["vad", "output"]


# --------------------------------------------------------------------------- the transcript


async def test_the_transcript_has_every_event_in_and_out(autojump_clock: trio.testing.MockClock, tmp_path: Any) -> None:
    records: list[dict[str, Any]] = []
    writer = TranscriptFile(tmp_path / "model.jsonl")

    def both(record: dict[str, Any]) -> None:
        records.append(record)
        writer(record)

    async with memory_client(SimModelConfig(transcript=both)) as ws:
        created = await next_event(ws, "session.created")
        await ws.send_message(json.dumps(rt.client_append_audio(b"\xff" * 160)))
        await ws.send_message("not json")
        await ws.send_message(json.dumps(GREETING))
        await next_event(ws, "response.done")
    writer.close()
    session_id = created["session"]["id"]
    assert {r["session"] for r in records} == {session_id}
    assert records[0]["dir"] == "out" and records[0]["event"]["type"] == "session.created" and records[0]["t"] == 0
    ins = [r for r in records if r["dir"] == "in"]
    assert [r["event"] and r["event"]["type"] for r in ins] == ["input_audio_buffer.append", None, "response.create"]
    assert ins[1]["raw"] == "not json"
    times = [r["t"] for r in records]
    assert times == sorted(times) and times[-1] > 0.35
    lines = [json.loads(line) for line in (tmp_path / "model.jsonl").read_text().splitlines()]
    assert len(lines) == len(records)
    assert lines[1]["event"]["audio"] == "<160 bytes base64>"
    deltas = [line["event"]["delta"] for line in lines if line["event"] and line["event"]["type"] == "response.output_audio.delta"]
    assert deltas and all(re.fullmatch(r"<\d+ bytes base64>", d) for d in deltas)
    assert deltas[0] == "<4800 bytes base64>"  # 100 ms of PCM16 at 24 kHz
    assert [abbreviate_audio(r["event"]) for r in records] == [line["event"] for line in lines]  # nothing else changed


async def test_a_transcript_of_what_comes_in_only(autojump_clock: trio.testing.MockClock) -> None:
    records: list[dict[str, Any]] = []
    async with memory_client(SimModelConfig(transcript=records.append, transcript_out=False)) as ws:
        await next_event(ws, "session.created")
        await ws.send_message(json.dumps(rt.client_append_audio(b"\xff" * 160)))
        await ws.send_message(json.dumps(GREETING))
        await next_event(ws, "response.done")
    assert [(r["dir"], r["event"]["type"]) for r in records] == [("in", "input_audio_buffer.append"),
                                                                 ("in", "response.create")]


# --------------------------------------------------------------------------- a replayed conversation goes on


def replay_of(question: str, preamble: str, call: dict[str, Any], assistant_as: str = "output_text") -> list[dict[str, Any]]:
    """What a reconnecting client sends into the new session (mikrovoice.realtime.conversation's shape)."""
    said = ({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": preamble}]}
            if assistant_as == "output_text" else
            {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "El asistente dijo: " + preamble}]})
    items = [
        {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "Llamada en curso."}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": question}]},
        said,
        {"type": "function_call", "call_id": call["call_id"], "name": call["name"], "arguments": call["arguments"]},
    ]
    return [{"type": "conversation.item.create", "event_id": f"rp_{i}", "item": item} for i, item in enumerate(items)]


@pytest.mark.parametrize("assistant_as", ["output_text", "system"])
async def test_a_conversation_replayed_into_a_new_session_reports_the_pending_result_once(
    autojump_clock: trio.testing.MockClock, assistant_as: str,
) -> None:
    ledger = ModelLedger()
    settings = rt.client_session_update(rt.SessionSettings("gpt-realtime", "x", "marin", ()))
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_model, "127.0.0.1", 0, SimModelConfig(), ledger)
        url = f"ws://127.0.0.1:{server.port}{RESOURCE}"
        async with open_websocket_url(url, extra_headers=AUTH) as a:  # session A: a question, a call, then the line drops
            await a.send_message(json.dumps(settings))
            await say(a, QUESTION)
            first = await events_until(a, "response.done")
            call = next(e for e in first if e["type"] == "response.function_call_arguments.done")
            preamble = next(e for e in first if e["type"] == "response.output_audio_transcript.done")["transcript"]
        async with open_websocket_url(url, extra_headers=AUTH) as b:  # session B: the replay, later the result
            await b.send_message(json.dumps(settings))
            for client_event in replay_of(QUESTION, preamble, call, assistant_as):
                await b.send_message(json.dumps(client_event))
            events = await events_until(b, "session.updated")
            for _ in range(4):
                events += await events_until(b, "conversation.item.done")
            await b.send_message(json.dumps(rt.client_response_create("progress")))  # while the query still runs
            events += await events_until(b, "response.done")
            output = json.dumps({"router": "152.1", "dispositivos_activos": 3, "dispositivos": [{"nombre": "cam"}]})
            await b.send_message(json.dumps(rt.client_tool_output(call["call_id"], output)))
            await b.send_message(json.dumps(rt.client_response_create("report", "Resume la salida.")))
            events += await events_until(b, "response.done")
            await b.send_message(json.dumps(rt.client_response_create("turn")))  # nothing new: nothing repeated
            events += await events_until(b, "response.done")
        nursery.cancel_scope.cancel()
    assert not [e for e in events if e["type"] == "error"]
    said = [e["transcript"] for e in events if e["type"] == "response.output_audio_transcript.done"]
    report = "El router 152.1 tiene 3 dispositivos activos, por ejemplo cam."
    assert said == [STILL_QUERYING, report, HOW_CAN_I_HELP]
    assert not [e for e in events if e["type"] == "response.function_call_arguments.done"]  # no second query
    a, b = ledger.sessions
    assert list(b.client_calls) == [call["call_id"]] and b.client_calls[call["call_id"]].outputs != []
    assert not set(a.responses) & set(b.responses)  # the new session's ids are its own
